// The architecture hyper-parameters of a decoder-only model of the families the engine runs
// (Llama 2/3.x, Mistral, Qwen2/2.5, Qwen3, Gemma, Phi-3), read from Hugging Face config.json.
// What a config asks for that the engine cannot do is refused, naming the field.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/activation.h"

namespace anyprec {

// How positions rotate q and k: Hugging Face's rope_scaling, resolved (modeling_rope_utils).
struct RopeScaling {
  enum class Type { kNone, kLinear, kDynamic, kLlama3, kYarn };
  Type type = Type::kNone;
  double factor = 1;
  int original_max_positions = 0;  // llama3 and yarn
  double low_freq_factor = 0;      // llama3
  double high_freq_factor = 0;     // llama3
  double beta_fast = 32;           // yarn
  double beta_slow = 1;            // yarn
  bool truncate = true;            // yarn: the correction range rounded outwards
  double attention_factor = 1;     // yarn: cos and sin are multiplied by it
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;  // as the config says; RoPE's dynamic scaling computes with it
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  int bos_token_id = -1;        // -1: the model names none
  std::vector<int> eos_token_ids;

  // What each family's layer does beyond Llama's (the list is in ARCHITECTURE.md).
  int rotary_dim = 0;  // the leading dims of each head that RoPE rotates (Phi-3's partial_rotary_factor)
  RopeScaling rope_scaling;
  int sliding_window = 0;               // 0: none; else a query sees itself and the window - 1 positions before it
  int sliding_window_first_layer = 0;   // layers before it attend to everything (Qwen's max_window_layers)
  bool qkv_bias = false;                // q, k and v projections carry a bias (Qwen2, attention_bias)
  bool o_bias = false;                  // so does o (attention_bias)
  bool qk_norm = false;                 // RMSNorm over each head of q and of k before RoPE (Qwen3)
  bool fused_projections = false;       // a checkpoint holds qkv_proj and gate_up_proj (Phi-3), split at load
  float norm_weight_offset = 0;         // RMSNorm multiplies by (offset + w) (Gemma: 1), folded in at load
  float embedding_scale = 1;            // the embedding's rows are multiplied by it (Gemma: sqrt(hidden_size))
  MlpActivation mlp_activation = MlpActivation::kSilu;

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
  // The positions a sequence may take: max_position_embeddings, times the factor for dynamic
  // NTK scaling, which exists to run past it.
  int context_length() const {
    if (rope_scaling.type != RopeScaling::Type::kDynamic || rope_scaling.factor <= 1) return max_position_embeddings;
    return static_cast<int>(std::min<double>(max_position_embeddings * rope_scaling.factor, 1 << 24));
  }
  // The sliding window of `layer`, 0 for none.
  int WindowOf(int layer) const { return layer >= sliding_window_first_layer ? sliding_window : 0; }
};

// Parses config.json text; `source` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, const std::string& source);

// Adds what generation_config.json says to `config`: its eos_token_id (an id or a list) to
// eos_token_ids, its bos_token_id where config.json gives none.
absl::Status MergeGenerationConfig(std::string_view json_text, const std::string& source, ModelConfig& config);

}  // namespace anyprec
