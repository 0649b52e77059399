// What a forward step asks of the hardware that runs it. The graph walk (Transformer,
// engine/runtime/transformer.cc) calls these operators in order, the same walk for every
// device; a device holds one model's weights in its own layout, prepared from the model's
// canonical form when it is made (cpu_device.h, cuda_device.h), and the step's activations in
// its own memory. The walk sizes activation buffers and offsets the pointers a device hands
// out, but reads them only where host_visible() says it may.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/device/kv_cache.h"
#include "engine/model/arch.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

// The token rows of one forward step: every sequence's rows one after another, each at its
// sequence's width and position.
struct StepRows {
  struct Sequence {
    int first = 0;  // its first row
    int count = 0;
    KvCache* cache = nullptr;  // positions cache->length() onwards
  };
  std::vector<TokenId> ids;
  std::vector<int> positions;
  std::vector<int> bits;
  std::vector<Sequence> sequences;
  int rows() const { return static_cast<int>(ids.size()); }
};

// The activation buffers of a step.
enum class Activations { kX, kNormed, kQ, kK, kV, kAttention, kGate, kUp, kProjected };
constexpr int kActivationBuffers = 9;

using arch::Norm;

// The weights a device holds, by kind, in its own layout.
struct WeightBytes {
  size_t planes = 0;
  size_t luts = 0;
  size_t dense = 0;
  size_t total() const { return planes + luts + dense; }
};

class Device {
 public:
  virtual ~Device() = default;

  virtual WeightBytes weight_bytes() const = 0;

  // Whether the walk may read activation buffers on the host (to show them to an observer).
  virtual bool host_visible() const = 0;

  // `floats` floats of buffer `which`, valid until the next call for the same buffer.
  virtual absl::StatusOr<float*> Buffer(Activations which, size_t floats) = 0;
  // Takes the step's rows; the operators below run on them until the next step.
  virtual absl::Status BeginStep(const StepRows& rows) = 0;

  // x[t] = the embedding row of the step's token t, times the config's embedding_scale.
  virtual absl::Status Embed(float* x) = 0;
  // out[t] = RmsNorm(x[t]) * norm's weight (of `layer` but for the final norm) for `rows` rows
  // of the norm's width; out may be x.
  virtual absl::Status RmsNorm(Norm norm, int layer, const float* x, int rows, float* out) = 0;
  // y = x * W^T + bias for linear `id` of `layer`, every row at its width: the device picks
  // its kernel (GEMV or GEMM, int8 or exact).
  virtual absl::Status Linear(int layer, arch::LinearId id, const float* x, float* y) = 0;
  // Rotary embedding in place on every row of [rows][heads * head_dim], at the rows' positions,
  // with the config's frequencies (engine/model/rope.h) for each sequence's length.
  virtual absl::Status Rope(float* x, int heads) = 0;
  // Writes sequence `sequence`'s key and value rows (its rows of k and v) into its cache's
  // `layer` at its positions.
  virtual absl::Status AppendKv(int layer, int sequence, const float* k, const float* v) = 0;
  // Causal attention of the sequence's query rows over its cache's `layer`, within the layer's
  // sliding window if it has one.
  virtual absl::Status Attention(int layer, int sequence, const float* q, float* out) = 0;
  // gate = act(gate) * up with the config's activation; x += delta: `count` elements.
  virtual absl::Status Glu(float* gate, const float* up, size_t count) = 0;
  virtual absl::Status Add(float* x, const float* delta, size_t count) = 0;
  // The head over `rows` rows of normed hidden states, into host memory [rows][vocab].
  virtual absl::Status Head(const float* normed, int rows, std::span<float> logits) = 0;
};

}  // namespace anyprec
