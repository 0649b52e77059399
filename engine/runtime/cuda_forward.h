// The forward pass on a GPU through the CUDA backend's operators, step for step the one in
// transformer.cc: embedding, then per layer RMSNorm, the bitplane (or dense) linears, RoPE,
// the paged KV cache and attention, SwiGLU and residuals, then the final norm and the head.
// Weights are uploaded once; keys and values live in a device mirror of each KvBlockPool,
// at the same block ids as the host's bookkeeping, whose own memory stays untouched.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/model/model.h"
#include "engine/runtime/kv_cache.h"

namespace anyprec {

struct SequenceStep;

class CudaForward {
 public:
  // Uploads `model`'s weights; `backend` must outlive the result. The result keeps no
  // reference to `model`, which may move afterwards (as a loaded bundle does).
  static absl::StatusOr<std::unique_ptr<CudaForward>> Create(const Model& model, cuda::Backend& backend);
  ~CudaForward();

  // Transformer::ForwardBatch's contract, on the GPU; steps are already validated.
  absl::Status Forward(std::span<const SequenceStep> steps, std::span<float> logits);

  // Runs a short prompt at the narrowest and the widest width of `model` (the one uploaded)
  // on the GPU and on the CPU and compares the logits: an error when the GPU fails or
  // disagrees, so that a start-up can fall back to the CPU rather than serve wrong answers.
  absl::Status CheckAgainstCpu(const Model& model);

 private:
  struct DeviceLinear {
    int rows = 0;
    int cols = 0;
    cuda::DeviceBitplaneMatrix quantized;  // planes == nullptr when dense
    const float* dense = nullptr;
    const float* bias = nullptr;
  };
  struct DeviceLayer {
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    DeviceLinear wq, wk, wv, wo, w_gate, w_up, w_down;
  };
  struct DeviceKv {
    float* keys = nullptr;  // [layer][block][position in block][kv_dim], like KvBlockPool
    float* values = nullptr;
    size_t layer_floats = 0;
  };

  // Rows of one width from which a linear layer runs as a dequantized GEMM, not the GEMV.
  static constexpr int kGemmRows = 32;

  CudaForward(const ModelConfig& config, cuda::Backend& backend) : config_(config), backend_(backend) {}
  absl::StatusOr<const float*> UploadFloats(std::span<const float> host);
  absl::StatusOr<DeviceLinear> UploadLinear(const Linear& linear);
  absl::StatusOr<void*> Scratch(const std::string& name, size_t bytes);
  absl::StatusOr<DeviceKv*> KvFor(const KvBlockPool& pool);
  absl::Status Linear(const DeviceLinear& w, const float* x, int n, std::span<const int> bits, float* y);

  const ModelConfig config_;
  cuda::Backend& backend_;
  std::vector<void*> owned_;  // every device allocation, freed with the object
  const float* embedding_ = nullptr;
  const float* final_norm_ = nullptr;
  const float* head_ = nullptr;
  std::vector<DeviceLayer> layers_;
  std::map<std::string, std::pair<void*, size_t>> scratch_;
  std::map<const KvBlockPool*, DeviceKv> kv_;
};

}  // namespace anyprec
