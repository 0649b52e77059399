// The architecture hyper-parameters of a Llama-family model, read from Hugging Face config.json.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace anyprec {

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  int bos_token_id = -1;        // -1: the model names none
  std::vector<int> eos_token_ids;

  // Set for an anyprec image: the widths its bitplanes serve, and how it was made.
  struct Quantization {
    int seed_bits = 0;
    int max_bits = 0;
    std::string mode;          // "anyprec", "independent" or "rtn"
    std::string weights_file;
    std::string source_model;  // name of the quantized model, e.g. "TinyStories-656K"
  };
  std::optional<Quantization> quantization;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
};

// Parses config.json text; `source` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, const std::string& source);

}  // namespace anyprec
