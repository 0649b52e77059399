// The decoder layer of the families the engine runs, described once: its linear layers in
// the order the engine runs them, their shapes from the config, the activations that feed
// them, its norms, and their names in a checkpoint and an image. What differs by family
// (biases, q/k norms, windows, RoPE scaling, activations) is in ModelConfig. The image format, the quantizer (calibration, Fisher,
// anyprec-synthesize), the model loader and the gradient pass read it; a new family's layer
// is added here, not to each of them.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "engine/model/model_config.h"

namespace anyprec::arch {

// A dimension of the config that a linear layer's rows or columns take.
enum class Dim { kHidden, kQ, kKv, kIntermediate };

inline int Size(const ModelConfig& c, Dim dim) {
  switch (dim) {
    case Dim::kHidden: return c.hidden_size;
    case Dim::kQ: return c.q_dim();
    case Dim::kKv: return c.kv_dim();
    case Dim::kIntermediate: return c.intermediate_size;
  }
  return 0;
}

// Which activations feed a group of linear layers (calibration gathers statistics per group).
enum class LinearInput {
  kAttention,        // normed hidden state: q, k and v
  kAttentionOutput,  // attention output: o
  kMlp,              // normed hidden state: gate and up
  kMlpHidden,        // silu(gate) * up: down
};
constexpr int kLinearInputs = 4;
// The width of each group's rows: the columns of the linear layers it feeds.
constexpr std::array<Dim, kLinearInputs> kInputDims = {Dim::kHidden, Dim::kQ, Dim::kHidden, Dim::kIntermediate};

enum class LinearId { kQ, kK, kV, kO, kGate, kUp, kDown };

struct LinearSpec {
  LinearId id;
  std::string_view name;  // under "model.layers.<layer>."
  Dim rows;               // output features, as PyTorch's Linear.weight [out, in]
  LinearInput input;      // its columns are this group's width
  std::string_view fused;  // the tensor it is a part of where a family fuses it (Phi-3), under "model.layers.<layer>."
};

// The linear layers of each decoder layer, in the order the engine runs them (and an image
// and Fisher's accumulators index them).
constexpr std::array<LinearSpec, 7> kLinears = {{
    {LinearId::kQ, "self_attn.q_proj", Dim::kQ, LinearInput::kAttention, "self_attn.qkv_proj"},
    {LinearId::kK, "self_attn.k_proj", Dim::kKv, LinearInput::kAttention, "self_attn.qkv_proj"},
    {LinearId::kV, "self_attn.v_proj", Dim::kKv, LinearInput::kAttention, "self_attn.qkv_proj"},
    {LinearId::kO, "self_attn.o_proj", Dim::kHidden, LinearInput::kAttentionOutput, ""},
    {LinearId::kGate, "mlp.gate_proj", Dim::kIntermediate, LinearInput::kMlp, "mlp.gate_up_proj"},
    {LinearId::kUp, "mlp.up_proj", Dim::kIntermediate, LinearInput::kMlp, "mlp.gate_up_proj"},
    {LinearId::kDown, "mlp.down_proj", Dim::kHidden, LinearInput::kMlpHidden, ""},
}};
constexpr int kLinearsPerLayer = static_cast<int>(kLinears.size());

constexpr int Index(LinearId id) { return static_cast<int>(id); }
static_assert([] {
  for (int i = 0; i < kLinearsPerLayer; ++i) {
    if (Index(kLinears[i].id) != i) return false;
  }
  return true;
}(), "kLinears lists each LinearId at its own index");

// Position of a layer's linear in per-model arrays (e.g. Fisher's accumulators).
constexpr size_t FlatIndex(int layer, int linear) { return static_cast<size_t>(layer) * kLinearsPerLayer + linear; }

// {rows, cols} of linear `linear` (an index into kLinears).
inline std::pair<int, int> Shape(const ModelConfig& c, int linear) {
  const LinearSpec& spec = kLinears[linear];
  return {Size(c, spec.rows), Size(c, kInputDims[static_cast<int>(spec.input)])};
}

// Whether linear `id` carries a bias: q, k and v in Qwen2 or with attention_bias, o with
// attention_bias.
inline bool HasBias(const ModelConfig& c, LinearId id) {
  if (id == LinearId::kO) return c.o_bias;
  return (id == LinearId::kQ || id == LinearId::kK || id == LinearId::kV) && c.qkv_bias;
}

// Where linear `linear` lies in its fused tensor: {rows before it, the fused tensor's rows}.
// The parts follow each other in kLinears' order.
inline std::pair<int, int> FusedRows(const ModelConfig& c, int linear) {
  int before = 0;
  int total = 0;
  for (int j = 0; j < kLinearsPerLayer; ++j) {
    if (kLinears[j].fused.empty() || kLinears[j].fused != kLinears[linear].fused) continue;
    if (j < linear) before += Size(c, kLinears[j].rows);
    total += Size(c, kLinears[j].rows);
  }
  return {before, total};
}

// Weights of one decoder layer's linear layers together.
inline size_t LayerLinearWeights(const ModelConfig& c) {
  size_t weights = 0;
  for (int j = 0; j < kLinearsPerLayer; ++j) {
    const auto [rows, cols] = Shape(c, j);
    weights += static_cast<size_t>(rows) * cols;
  }
  return weights;
}

// The RMSNorms: a layer's two and the final one over rows of hidden_size; Qwen3's over each
// head of q and of k (rows of head_dim).
enum class Norm { kAttention, kMlp, kFinal, kQuery, kKey };

// Tensor names, as a Hugging Face checkpoint and an image hold them.
constexpr std::string_view kEmbeddingTensor = "model.embed_tokens.weight";
constexpr std::string_view kHeadTensor = "lm_head.weight";
constexpr std::string_view kFinalNormTensor = "model.norm.weight";
constexpr std::string_view kAttentionNorm = "input_layernorm";
constexpr std::string_view kMlpNorm = "post_attention_layernorm";
constexpr std::string_view kQueryNorm = "self_attn.q_norm";
constexpr std::string_view kKeyNorm = "self_attn.k_norm";

// "model.layers.3.mlp.up_proj" for (3, "mlp.up_proj").
inline std::string LayerTensor(int layer, std::string_view name) {
  return "model.layers." + std::to_string(layer) + "." + std::string(name);
}

}  // namespace anyprec::arch
