// libanyprec_cuda.so: the Backend on one CUDA device, over the CUDA runtime (linked
// statically) and cuBLAS, exported through the C functions the loader looks up.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/kernels.h"

namespace anyprec::cuda {
namespace {

std::string Error(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return {};
  return std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
}

std::string Error(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return {};
  return std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(status));
}

class CudaBackend final : public Backend {
 public:
  // Empty when the device is ready; what failed otherwise.
  std::string Open(int device) {
    int count = 0;
    if (std::string e = Error(cudaGetDeviceCount(&count), "no usable CUDA driver"); !e.empty()) return e;
    if (device < 0 || device >= count) return "no CUDA device " + std::to_string(device) + " (" + std::to_string(count) + " found)";
    if (std::string e = Error(cudaSetDevice(device), "cudaSetDevice"); !e.empty()) return e;
    cudaDeviceProp props{};
    if (std::string e = Error(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties"); !e.empty()) return e;
    info_.name = props.name;
    info_.compute_major = props.major;
    info_.compute_minor = props.minor;
    info_.multiprocessors = props.multiProcessorCount;
    info_.memory_bytes = props.totalGlobalMem;
    info_.l2_bytes = props.l2CacheSize;
    cudaDriverGetVersion(&info_.driver_version);
    cudaRuntimeGetVersion(&info_.runtime_version);
    if (std::string e = Error(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); !e.empty()) return e;
    if (std::string e = Error(cudaEventCreate(&start_), "cudaEventCreate"); !e.empty()) return e;
    if (std::string e = Error(cudaEventCreate(&stop_), "cudaEventCreate"); !e.empty()) return e;
    if (std::string e = Error(cublasCreate(&cublas_), "cublasCreate"); !e.empty()) return e;
    return Error(cublasSetStream(cublas_, stream_), "cublasSetStream");
  }

  ~CudaBackend() override {
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stop_ != nullptr) cudaEventDestroy(stop_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  const DeviceInfo& info() const override { return info_; }

  void* Allocate(size_t bytes, std::string& error) override {
    void* p = nullptr;
    error = Error(cudaMalloc(&p, bytes), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
    return error.empty() ? p : nullptr;
  }
  void Free(void* device) override { cudaFree(device); }
  std::string Upload(void* device, const void* host, size_t bytes) override {
    return Error(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_), "upload");
  }
  std::string Download(void* host, const void* device, size_t bytes) override {
    if (std::string e = Error(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_), "download"); !e.empty()) return e;
    return Synchronize();
  }
  std::string Fill(void* device, uint8_t byte, size_t bytes) override {
    return Error(cudaMemsetAsync(device, byte, bytes, stream_), "fill");
  }
  std::string CopyOnDevice(void* to, const void* from, size_t bytes) override {
    return Error(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, stream_), "device copy");
  }
  std::string Synchronize() override { return Error(cudaStreamSynchronize(stream_), "synchronize"); }

  std::string BitplaneGemv(const DeviceBitplaneMatrix& w, const void* x, Activation type, std::span<const int> bits,
                           float* y) override {
    if (bits.empty() || bits.size() > static_cast<size_t>(kMaxGemvBatch)) {
      return "BitplaneGemv: batch of " + std::to_string(bits.size()) + " outside 1.." + std::to_string(kMaxGemvBatch);
    }
    return Error(LaunchBitplaneGemv(w, x, type, bits.data(), static_cast<int>(bits.size()), y, stream_), "bitplane GEMV");
  }

  std::string Dequantize(const DeviceBitplaneMatrix& w, int bits, void* out_f16) override {
    return Error(LaunchDequantize(w, bits, out_f16, stream_), "dequantize");
  }

  std::string GemmF16(const void* x, int tokens, const void* w, int rows, int k, float* y) override {
    const float one = 1.0f;
    const float zero = 0.0f;
    // Row-major y[tokens][rows] is column-major rows x tokens: W^T (k x rows, column-major
    // W) transposed, times x^T.
    return Error(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, rows, tokens, k, &one, w, CUDA_R_16F, k, x, CUDA_R_16F, k, &zero, y,
                              CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

  std::string RmsNorm(const float* x, int rows, int width, const float* weight, float eps, float* out) override {
    return Error(LaunchRmsNorm(x, rows, width, weight, eps, out, stream_), "RMSNorm");
  }
  std::string Rope(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                   double attention_factor) override {
    return Error(LaunchRope(x, tokens, positions, heads, head_dim, inv_freq, rotary_dim, attention_factor, stream_), "RoPE");
  }
  std::string Glu(MlpActivation act, float* gate, const float* up, size_t count) override {
    return Error(LaunchGlu(act, gate, up, count, stream_), "gated activation");
  }
  std::string Add(float* x, const float* delta, size_t count) override { return Error(LaunchAdd(x, delta, count, stream_), "add"); }
  std::string Embed(const float* table, int width, const int* ids, int tokens, float scale, float* out) override {
    return Error(LaunchEmbed(table, width, ids, tokens, scale, out, stream_), "embedding");
  }
  std::string Attention(const float* q, int tokens, const int* positions, int max_position, const DeviceKvLayer& kv, int heads,
                        int kv_heads, int head_dim, int window, float* out) override {
    return Error(LaunchAttention(q, tokens, positions, max_position, kv, heads, kv_heads, head_dim, window, out, stream_), "attention");
  }

  std::string ToHalf(const float* x, int rows, int cols, int padded_cols, void* out) override {
    return Error(LaunchToHalf(x, rows, cols, padded_cols, out, stream_), "to fp16");
  }
  std::string AddBias(float* x, const float* bias, int rows, int cols) override {
    return Error(LaunchAddBias(x, bias, rows, cols, stream_), "bias");
  }
  std::string KvAppend(const float* k, const float* v, int tokens, const int* positions, const DeviceKvLayer& kv) override {
    return Error(LaunchKvAppend(k, v, tokens, positions, kv, stream_), "KV append");
  }
  std::string GemmF32(const float* x, int tokens, const float* w, int rows, int k, float* y) override {
    const float one = 1.0f;
    const float zero = 0.0f;
    return Error(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, rows, tokens, k, &one, w, k, x, k, &zero, y, rows), "cublasSgemm");
  }

  std::string StartTimer() override { return Error(cudaEventRecord(start_, stream_), "cudaEventRecord"); }
  std::string ElapsedMs(float& ms) override {
    if (std::string e = Error(cudaEventRecord(stop_, stream_), "cudaEventRecord"); !e.empty()) return e;
    if (std::string e = Error(cudaEventSynchronize(stop_), "cudaEventSynchronize"); !e.empty()) return e;
    return Error(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
  }

 private:
  DeviceInfo info_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

}  // namespace
}  // namespace anyprec::cuda

extern "C" {

__attribute__((visibility("default"))) int anyprec_cuda_abi_version() { return anyprec::cuda::kPluginAbiVersion; }

__attribute__((visibility("default"))) anyprec::cuda::Backend* anyprec_cuda_create(int device, char* error, size_t error_size) {
  auto backend = std::make_unique<anyprec::cuda::CudaBackend>();
  const std::string why = backend->Open(device);
  if (why.empty()) return backend.release();
  std::snprintf(error, error_size, "%s", why.c_str());
  return nullptr;
}

__attribute__((visibility("default"))) void anyprec_cuda_destroy(anyprec::cuda::Backend* backend) {
  std::unique_ptr<anyprec::cuda::Backend> owned(backend);
}

}
