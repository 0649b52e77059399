// The rotary embedding's frequencies for a config: Hugging Face's default RoPE and its
// rope_scaling types (linear, dynamic NTK, llama3, YaRN), as modeling_rope_utils.py computes
// them, in double. Every device and the gradient pass rotate with these.
#pragma once

#include <vector>

#include "engine/model/model_config.h"

namespace anyprec {

struct RopeFrequencies {
  std::vector<double> inv_freq;  // rotary_dim / 2 of them: dims i and i + rotary_dim / 2 turn by position * inv_freq[i]
  double attention_factor = 1;   // cos and sin are multiplied by it (YaRN)
};

// The frequencies of a sequence whose last position is `sequence_length` - 1. Only dynamic
// scaling depends on the length: a step takes them from each sequence's largest position (as
// Hugging Face does for a batch of one), and keys cached earlier keep the rotation they got
// then.
RopeFrequencies RopeFrequenciesFor(const ModelConfig& config, int sequence_length);

// The frequencies a device rotates with: computed once, or for dynamic scaling again when a
// sequence's length changes them.
class RopeTable {
 public:
  explicit RopeTable(ModelConfig config);
  // Valid until the next call.
  const RopeFrequencies& For(int sequence_length);
  // Whether For's answer depends on the length.
  bool dynamic() const { return config_.rope_scaling.type == RopeScaling::Type::kDynamic; }
  // How many times the frequencies were computed: a device that copies them elsewhere copies
  // again when this changes.
  int computed() const { return computed_; }

 private:
  ModelConfig config_;
  int length_ = 0;  // what `frequencies_` were computed for, past the context (dynamic only)
  RopeFrequencies frequencies_;
  int computed_ = 1;
};

}  // namespace anyprec
