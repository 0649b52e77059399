// The forward pass of a Llama-family model, one graph walk for every device, readable top to
// bottom in transformer.cc: embedding, then per layer RMSNorm, attention with RoPE and a
// paged KV cache, SwiGLU MLP and residuals, then the final norm and the head. Each operator
// runs on a Device (engine/device), which holds the weights in its own layout.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/device/cpu_device.h"
#include "engine/device/device.h"
#include "engine/device/kv_cache.h"
#include "engine/model/arch.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

enum class LogitsFor { kLastToken, kAllTokens };

using LinearInput = arch::LinearInput;

// Sees every linear layer's input rows as the forward pass runs (e.g. to gather
// calibration statistics for quantization).
class LinearInputObserver {
 public:
  virtual ~LinearInputObserver() = default;
  // `rows` holds tokens x width activations.
  virtual void Observe(int layer, LinearInput input, std::span<const float> rows, int width) = 0;
};

struct ForwardOptions {
  // The width to run at, one of ModelWidths (engine/model/width.h): 0 for an unquantized model.
  int bits = 0;
  // Needs a device whose activations the host can read (the CPU).
  LinearInputObserver* observer = nullptr;
  // Part of the pass, for a quantizer that holds one decoder layer at a time: layers
  // [first_layer, end_layer) only (end_layer -1: to the last). With first_layer > 0 the rows'
  // hidden states are read from `hidden` instead of embedded. Given `hidden` and an empty
  // logits span, the pass writes the hidden states after its last layer back to `hidden`
  // instead of making logits (which a pass stopping short of the last layer must do). `hidden`
  // holds rows x hidden_size floats, the steps' rows in order. Needs a host-readable device.
  // The caches advance as after a whole pass.
  int first_layer = 0;
  int end_layer = -1;
  std::span<float> hidden = {};
};

// One sequence's share of a batched forward step.
struct SequenceStep {
  std::span<const TokenId> tokens;  // run at positions cache->length() onwards
  KvCache* cache;
  int bits = 0;                      // this sequence's width (see ForwardOptions::bits)
  LogitsFor which = LogitsFor::kLastToken;
};

class Transformer {
 public:
  // Runs `model` on `device`, which was made for it and must outlive the transformer.
  Transformer(const Model& model, Device& device) : config_(model.config()), device_(&device) {}
  // Runs `model` on a CPU device of its own.
  explicit Transformer(const Model& model, const CpuDeviceOptions& cpu = {})
      : config_(model.config()), own_device_(MakeCpuDevice(model, cpu)), device_(own_device_.get()) {}

  const ModelConfig& config() const { return config_; }

  // Runs `tokens` at positions cache.length() onwards (a whole prompt at once, or one
  // decode step), appends their keys and values to `cache`, and writes logits into
  // `logits`: vocab_size floats for the last token, or tokens x vocab_size for all.
  absl::Status Forward(std::span<const TokenId> tokens, KvCache& cache, LogitsFor which, std::span<float> logits,
                       const ForwardOptions& options = {});

  // Several sequences in one step (continuous batching): each with its own cache, tokens
  // (a prompt chunk or one decode token) and width; the linear layers run once over all
  // their rows, mixing widths. `logits` holds each step's rows in order (one, or one per
  // token for kAllTokens). options.bits is ignored; each step carries its own.
  absl::Status ForwardBatch(std::span<const SequenceStep> steps, std::span<float> logits, const ForwardOptions& options = {});

 private:
  const ModelConfig config_;
  std::unique_ptr<Device> own_device_;  // set when the transformer made its device
  Device* device_;
  StepRows rows_;  // kept between steps to avoid reallocating
};

}  // namespace anyprec
