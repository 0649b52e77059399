// The CUDA backend's interface carried out on the host with the CPU's operators: "device"
// memory is host memory and every op is the CPU reference of its kernel. It lets CI run the
// GPU forward pass's orchestration (the CUDA device: uploads, scratch, block tables, the order
// of ops) on machines without a GPU, against the CPU forward pass.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "engine/cuda/cuda_backend.h"

namespace anyprec::testing {

class HostBackend final : public cuda::Backend {
 public:
  // Allocations above `max_bytes` fail as cudaMalloc would when memory runs out.
  explicit HostBackend(size_t max_bytes = size_t{1} << 32);

  const cuda::DeviceInfo& info() const override { return info_; }
  size_t largest_allocation() const { return largest_; }

  void* Allocate(size_t bytes, std::string& error) override;
  void Free(void* device) override;
  std::string Upload(void* device, const void* host, size_t bytes) override;
  std::string Download(void* host, const void* device, size_t bytes) override;
  std::string Fill(void* device, uint8_t byte, size_t bytes) override;
  std::string CopyOnDevice(void* to, const void* from, size_t bytes) override;
  std::string Synchronize() override { return {}; }
  std::string BitplaneGemv(const cuda::DeviceBitplaneMatrix& w, const void* x, cuda::Activation type, std::span<const int> bits,
                           float* y) override;
  std::string Dequantize(const cuda::DeviceBitplaneMatrix& w, int bits, void* out_f16) override;
  std::string GemmF16(const void* x, int tokens, const void* w, int rows, int k, float* y) override;
  std::string RmsNorm(const float* x, int rows, int width, const float* weight, float eps, float* out) override;
  std::string Rope(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                   double attention_factor) override;
  std::string Glu(MlpActivation act, float* gate, const float* up, size_t count) override;
  std::string Add(float* x, const float* delta, size_t count) override;
  std::string Embed(const float* table, int width, const int* ids, int tokens, float scale, float* out) override;
  std::string Attention(const float* q, int tokens, const int* positions, int max_position, const cuda::DeviceKvLayer& kv, int heads,
                        int kv_heads, int head_dim, int window, float* out) override;
  std::string ToHalf(const float* x, int rows, int cols, int padded_cols, void* out) override;
  std::string AddBias(float* x, const float* bias, int rows, int cols) override;
  std::string KvAppend(const float* k, const float* v, int tokens, const int* positions, const cuda::DeviceKvLayer& kv) override;
  std::string GemmF32(const float* x, int tokens, const float* w, int rows, int k, float* y) override;
  std::string StartTimer() override { return {}; }
  std::string ElapsedMs(float& ms) override {
    ms = 0;
    return {};
  }

 private:
  cuda::DeviceInfo info_;
  size_t max_bytes_;
  size_t largest_ = 0;
  std::map<void*, std::unique_ptr<std::byte[]>> blocks_;
};

}  // namespace anyprec::testing
