// The decoder layer of the Llama family, described once: its linear layers in the order the
// engine runs them, their shapes from the config, the activations that feed them, and their
// names in a checkpoint and an image. The image format, the quantizer (calibration, Fisher,
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
};

// The linear layers of each decoder layer, in the order the engine runs them (and an image
// and Fisher's accumulators index them).
constexpr std::array<LinearSpec, 7> kLinears = {{
    {LinearId::kQ, "self_attn.q_proj", Dim::kQ, LinearInput::kAttention},
    {LinearId::kK, "self_attn.k_proj", Dim::kKv, LinearInput::kAttention},
    {LinearId::kV, "self_attn.v_proj", Dim::kKv, LinearInput::kAttention},
    {LinearId::kO, "self_attn.o_proj", Dim::kHidden, LinearInput::kAttentionOutput},
    {LinearId::kGate, "mlp.gate_proj", Dim::kIntermediate, LinearInput::kMlp},
    {LinearId::kUp, "mlp.up_proj", Dim::kIntermediate, LinearInput::kMlp},
    {LinearId::kDown, "mlp.down_proj", Dim::kHidden, LinearInput::kMlpHidden},
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

// Weights of one decoder layer's linear layers together.
inline size_t LayerLinearWeights(const ModelConfig& c) {
  size_t weights = 0;
  for (int j = 0; j < kLinearsPerLayer; ++j) {
    const auto [rows, cols] = Shape(c, j);
    weights += static_cast<size_t>(rows) * cols;
  }
  return weights;
}

// Tensor names, as a Hugging Face checkpoint and an image hold them.
constexpr std::string_view kEmbeddingTensor = "model.embed_tokens.weight";
constexpr std::string_view kHeadTensor = "lm_head.weight";
constexpr std::string_view kFinalNormTensor = "model.norm.weight";
constexpr std::string_view kAttentionNorm = "input_layernorm";
constexpr std::string_view kMlpNorm = "post_attention_layernorm";

// "model.layers.3.mlp.up_proj" for (3, "mlp.up_proj").
inline std::string LayerTensor(int layer, std::string_view name) {
  return "model.layers." + std::to_string(layer) + "." + std::string(name);
}

}  // namespace anyprec::arch
