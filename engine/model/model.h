// A Llama-family model loaded from a Hugging Face folder or an anyprec image: its config and
// its weights (fp32; an image's bitplanes, and its head and embedding in fp32 or int8 rows).
// F32 and I8 tensors stay memory-mapped; F16/BF16 tensors are widened once at load, and
// their mapped pages handed back. A quantizer may hold one decoder layer at a time.
#pragma once

#include <array>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/arch.h"
#include "engine/model/model_config.h"

namespace anyprec {

// Row-major [rows, cols]; rows are output features, as in PyTorch's Linear.weight. fp32, or
// int8 with one scale per row (an image's head and embedding stored with dense_dtype int8):
// w[r][c] = scales[r] * q[r * cols + c].
struct Matrix {
  int rows = 0;
  int cols = 0;
  std::span<const float> values;  // empty when int8
  std::span<const int8_t> q;      // empty when fp32
  std::span<const float> scales;  // [rows], with q

  bool is_int8() const { return !q.empty(); }
  // fp32 rows only.
  std::span<const float> Row(int r) const { return values.subspan(static_cast<size_t>(r) * cols, cols); }
  // Row r in fp32, whatever the storage.
  void CopyRow(int r, std::span<float> out) const;
  // The whole matrix in fp32 (a copy), for devices that take fp32 weights.
  std::vector<float> ToF32() const;
  // Bytes the matrix takes as stored.
  size_t bytes() const { return is_int8() ? q.size() + sizeof(float) * scales.size() : sizeof(float) * values.size(); }
  // Whether two matrices are one (a tied head and embedding).
  bool SameAs(const Matrix& other) const { return values.data() == other.values.data() && q.data() == other.q.data(); }
};

// A quantized weight as its image stores it (docs/FORMAT.md): max_bits planes in the
// canonical layout of engine/model/bitplanes.h, mapped, and per width b one LUT [rows][2^b],
// widened to fp32 at load. Each device prepares its own layout from this (engine/device).
struct QuantizedMatrix {
  int seed_bits = 0;
  int max_bits = 0;
  std::span<const uint8_t> planes;  // empty when dense
  std::vector<const float*> luts;   // luts[b - seed_bits]
};

// A linear layer's weight [rows, cols]: dense fp32, or bitplanes readable at any width in
// [seed_bits, max_bits] of an anyprec image.
struct Linear {
  int rows = 0;
  int cols = 0;
  std::span<const float> dense;  // empty when quantized
  QuantizedMatrix quantized;
  std::span<const float> bias;   // empty when the layer has none

  bool is_quantized() const { return !quantized.planes.empty(); }
};

// Norm weights are the gains the forward pass multiplies by: a Gemma checkpoint's 1 + w.
struct LayerWeights {
  std::span<const float> attn_norm;
  std::span<const float> ffn_norm;
  std::span<const float> q_norm;  // [head_dim], Qwen3 only
  std::span<const float> k_norm;
  Linear wq, wk, wv, wo;
  Linear w_gate, w_up, w_down;

  // In the order of arch::kLinears.
  std::array<Linear*, arch::kLinearsPerLayer> linears() { return {&wq, &wk, &wv, &wo, &w_gate, &w_up, &w_down}; }
  std::array<const Linear*, arch::kLinearsPerLayer> linears() const { return {&wq, &wk, &wv, &wo, &w_gate, &w_up, &w_down}; }
};

struct ModelWeights {
  Matrix embedding;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::span<const float> final_norm;
  Matrix head;  // [vocab, hidden]; aliases `embedding` when tied

  // The weight of `norm` (of `layer`, but for the final norm).
  std::span<const float> NormWeight(arch::Norm norm, int layer) const {
    switch (norm) {
      case arch::Norm::kAttention: return layers[layer].attn_norm;
      case arch::Norm::kMlp: return layers[layer].ffn_norm;
      case arch::Norm::kFinal: return final_norm;
      case arch::Norm::kQuery: return layers[layer].q_norm;
      case arch::Norm::kKey: return layers[layer].k_norm;
    }
    return {};
  }
};

struct LoadOptions {
  // false: only the config, the embedding, the head and the final norm; each decoder layer's
  // weights() stay empty until LoadLayer (a quantizer streaming a checkpoint larger than memory).
  bool layers = true;
};

class Model {
 public:
  // Loads a Hugging Face folder (config.json and model.safetensors, or the shards that
  // model.safetensors.index.json names), or an anyprec image (config.json with an "anyprec"
  // section and anyprec.safetensors, every tensor checked against its checksum).
  static absl::StatusOr<Model> Load(const std::string& dir, const LoadOptions& options = {});

  // Loads decoder layer `layer`'s weights, checked as Load checks them; nothing if loaded.
  absl::Status LoadLayer(int layer);
  // Forgets them: widened copies freed, mapped pages handed back, weights().layers[layer]
  // empty. Views of them, and devices made since LoadLayer, must not be used after.
  void ReleaseLayer(int layer);
  bool layer_loaded(int layer) const;

  // Moves keep every tensor where it is: what weights() views may be held across them.
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const std::string& dir() const { return dir_; }
  // The model's name, e.g. "TinyStories-656K": the folder's base name, or for an image the
  // name of the model it was quantized from.
  std::string name() const;
  // The logical model served at `bits`: "TinyStories-656K@3"; the plain name for 0.
  std::string LogicalName(int bits) const;
  // Switches the head and the embedding between fp32 and int8 rows with one scale each (the
  // form an image with dense_dtype int8 stores; each scale is the row's largest magnitude /
  // 127), so that a quantizer can measure the choice before it writes. The int8 rows are made
  // at the first switch; a model loaded with int8 rows cannot switch to fp32.
  absl::Status SetDenseInt8(bool int8);

  // Bytes one token's forward pass at `bits` reads as an image stores them: planes 0..b-1
  // and LUT_b (fp16) of every quantized layer, and the dense tensors (fp32, or int8 with row
  // scales), of which the embedding counts one row unless it is also the head.
  uint64_t BytesReadPerToken(int bits) const;

 private:
  struct Storage;
  Model() = default;

  std::string dir_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Storage> storage_;  // owns the mappings and widened tensors that weights_ views
};

}  // namespace anyprec
