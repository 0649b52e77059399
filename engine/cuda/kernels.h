// Launchers of the CUDA kernels (kernels.cu), callable from host C++ compiled by g++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engine/cuda/device_matrix.h"

namespace anyprec::cuda {

// Backend::BitplaneGemv.
cudaError_t LaunchBitplaneGemv(const DeviceBitplaneMatrix& w, const void* x, Activation type, const int* bits, int batch, float* y,
                               cudaStream_t stream);

// Backend::Dequantize.
cudaError_t LaunchDequantize(const DeviceBitplaneMatrix& w, int bits, void* out_f16, cudaStream_t stream);

}  // namespace anyprec::cuda
