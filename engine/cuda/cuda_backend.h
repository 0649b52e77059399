// The CUDA backend as the engine sees it: an interface implemented by the plugin
// libanyprec_cuda.so, which the engine loads only when a GPU is there (cuda_loader.h), so
// that no binary depends on CUDA or cuBLAS at load time. Plain C++, no CUDA headers; errors
// are returned as text (empty: success), since absl types would be two copies across the
// plugin boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engine/cuda/device_matrix.h"
#include "engine/cuda/gpu_layout.h"
#include "engine/model/activation.h"

namespace anyprec::cuda {

inline constexpr int kPluginAbiVersion = 4;
struct DeviceInfo {
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  size_t memory_bytes = 0;
  size_t l2_bytes = 0;
  int driver_version = 0;
  int runtime_version = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const DeviceInfo& info() const = 0;

  // Device memory; nullptr with `error` set when it cannot be had.
  virtual void* Allocate(size_t bytes, std::string& error) = 0;
  virtual void Free(void* device) = 0;
  virtual std::string Upload(void* device, const void* host, size_t bytes) = 0;
  virtual std::string Download(void* host, const void* device, size_t bytes) = 0;
  virtual std::string Fill(void* device, uint8_t byte, size_t bytes) = 0;
  virtual std::string CopyOnDevice(void* to, const void* from, size_t bytes) = 0;
  virtual std::string Synchronize() = 0;

  // y[m][n] = sum over k of LUT_{bits[m]}[n][index_{bits[m]}(n, k)] * x[m][k], accumulated
  // in fp32, for m < bits.size() <= kMaxGemvBatch: one pass over the planes up to the
  // largest width, each token row at its own width. x: bits.size() rows of padded_cols
  // fp16 or bf16 activations, zero past cols; y: fp32 [bits.size()][rows].
  virtual std::string BitplaneGemv(const DeviceBitplaneMatrix& w, const void* x, Activation type, std::span<const int> bits,
                                   float* y) = 0;
  // The b-bit weights as fp16 [rows][cols], for prefill through GemmF16.
  virtual std::string Dequantize(const DeviceBitplaneMatrix& w, int bits, void* out_f16) = 0;
  // y[t][n] = sum over k of x[t][k] * w[n][k]: fp16 inputs, fp32 accumulation and output,
  // by cuBLAS.
  virtual std::string GemmF16(const void* x, int tokens, const void* w, int rows, int k, float* y) = 0;

  // The rest of a transformer layer, on device memory, in fp32, as engine/cpu/ops.h does it:
  // RMSNorm of each of `rows` rows of `width` (out may be x); RoPE in place on
  // [tokens][heads * head_dim] at `positions` (device memory), pair (i, i + rotary_dim / 2)
  // of each head turned by position * inv_freq[i] (device memory, rotary_dim / 2 of them) and
  // multiplied by attention_factor, dims past rotary_dim untouched; gate = act(gate) * up;
  // x += delta; rows `ids` (device memory) of an embedding table times `scale`; causal
  // attention of q [tokens][heads * head_dim] at `positions` over a paged cache, whose
  // largest position is `max_position`, each query seeing the `window` positions up to its
  // own (all when 0).
  virtual std::string RmsNorm(const float* x, int rows, int width, const float* weight, float eps, float* out) = 0;
  virtual std::string Rope(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                           double attention_factor) = 0;
  virtual std::string Glu(MlpActivation act, float* gate, const float* up, size_t count) = 0;
  virtual std::string Add(float* x, const float* delta, size_t count) = 0;
  virtual std::string Embed(const float* table, int width, const int* ids, int tokens, float scale, float* out) = 0;
  virtual std::string Attention(const float* q, int tokens, const int* positions, int max_position, const DeviceKvLayer& kv, int heads,
                                int kv_heads, int head_dim, int window, float* out) = 0;
  // fp32 [rows][cols] to fp16 [rows][padded_cols] (zero past cols), the GEMV's input.
  virtual std::string ToHalf(const float* x, int rows, int cols, int padded_cols, void* out) = 0;
  // x[r][c] += bias[c].
  virtual std::string AddBias(float* x, const float* bias, int rows, int cols) = 0;
  // Writes the key and value rows of `tokens` tokens into the cache rows of their positions.
  virtual std::string KvAppend(const float* k, const float* v, int tokens, const int* positions, const DeviceKvLayer& kv) = 0;
  // y[t][n] = sum over k of x[t][k] * w[n][k] in fp32, by cuBLAS (no TF32).
  virtual std::string GemmF32(const float* x, int tokens, const float* w, int rows, int k, float* y) = 0;

  // Times work on the backend's stream with CUDA events: Start, then the work, then
  // ElapsedMs, which waits for it.
  virtual std::string StartTimer() = 0;
  virtual std::string ElapsedMs(float& ms) = 0;
};

}  // namespace anyprec::cuda

// What the plugin exports: its ABI version; a backend on a device (null, with `error`
// filled, when there is none); and the backend's end, so that the plugin frees what it made.
extern "C" {
using AnyprecCudaAbiVersionFn = int (*)();
using AnyprecCudaCreateFn = anyprec::cuda::Backend* (*)(int device, char* error, size_t error_size);
using AnyprecCudaDestroyFn = void (*)(anyprec::cuda::Backend* backend);
}
