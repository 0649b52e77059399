// Launchers of the CUDA kernels (kernels.cu), callable from host C++ compiled by g++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engine/cuda/device_matrix.h"
#include "engine/model/activation.h"

namespace anyprec::cuda {

// Backend::BitplaneGemv.
cudaError_t LaunchBitplaneGemv(const DeviceBitplaneMatrix& w, const void* x, Activation type, const int* bits, int batch, float* y,
                               cudaStream_t stream);

// The layer operators of the Backend, on device pointers (cuda_backend.h says what each does).
cudaError_t LaunchRmsNorm(const float* x, int rows, int width, const float* weight, float eps, float* out, cudaStream_t stream);
cudaError_t LaunchRope(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                       double attention_factor, cudaStream_t stream);
cudaError_t LaunchGlu(MlpActivation act, float* gate, const float* up, size_t count, cudaStream_t stream);
cudaError_t LaunchAdd(float* x, const float* delta, size_t count, cudaStream_t stream);
cudaError_t LaunchEmbed(const float* table, int width, const int* ids, int tokens, float scale, float* out, cudaStream_t stream);
cudaError_t LaunchToHalf(const float* x, int rows, int cols, int padded_cols, void* out, cudaStream_t stream);
cudaError_t LaunchAddBias(float* x, const float* bias, int rows, int cols, cudaStream_t stream);
cudaError_t LaunchKvAppend(const float* k, const float* v, int tokens, const int* positions, const DeviceKvLayer& kv, cudaStream_t stream);
// `max_position`: the largest of `positions` (host side), which sizes the scores in shared memory.
cudaError_t LaunchAttention(const float* q, int tokens, const int* positions, int max_position, const DeviceKvLayer& kv, int heads,
                            int kv_heads, int head_dim, int window, float* out, cudaStream_t stream);

// Backend::Dequantize.
cudaError_t LaunchDequantize(const DeviceBitplaneMatrix& w, int bits, void* out_f16, cudaStream_t stream);

}  // namespace anyprec::cuda
