// What the CUDA kernels and the backend interface share: a bitplane matrix in device memory
// and the activation types. C++17, for nvcc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace anyprec::cuda {

// Columns per chunk of the GPU layout (gpu_layout.h), and the widest index.
inline constexpr int kChunkColumns = 1024;
inline constexpr int kMaxBits = 8;
inline constexpr int kMaxGemvBatch = 16;

enum class Activation { kF16, kBF16 };

// A GpuBitplaneMatrix (gpu_layout.h) resident on the device.
struct DeviceBitplaneMatrix {
  int rows = 0;
  int cols = 0;
  int padded_cols = 0;
  int seed_bits = 0;
  int max_bits = 0;
  const uint32_t* planes = nullptr;  // device memory, GpuBitplaneMatrix::planes' layout
  const float* luts = nullptr;       // device memory, GpuBitplaneMatrix::luts' layout
  size_t lut_offset[kMaxBits + 1] = {};
};

// One layer of a sequence's paged KV cache in device memory, laid out like the CPU's
// KvBlockPool: position p is row p % block_tokens of block blocks[p / block_tokens].
struct DeviceKvLayer {
  const float* keys = nullptr;    // block 0 of the layer
  const float* values = nullptr;
  size_t block_stride = 0;        // floats from one block id to the next
  int block_tokens = 0;
  int row_width = 0;              // kv_heads * head_dim
  const int* blocks = nullptr;    // device memory
};

}  // namespace anyprec::cuda
