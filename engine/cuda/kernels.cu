// CUDA kernels of the bitplane backend. The layout they read is gpu_layout.h's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "engine/cuda/kernels.h"

namespace anyprec::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kLutFloatsPerWarp = (1 << 3) + (1 << 4) + (1 << 5) + (1 << 6) + (1 << 7) + (1 << 8);

struct GemvArgs {
  const uint32_t* planes;
  size_t plane_words;  // words from one plane to the next
  int rows;
  int chunks;
  const float* luts;
  const void* x;  // fp16 or bf16 [batch][padded_cols]
  int padded_cols;
  float* y;        // fp32 [batch][rows]
  int batch;
  int shift[kMaxGemvBatch];       // max_bits - bits[m]: turns a max-width index into token m's
  int lut_at[kMaxGemvBatch];      // token m's table in the warp's shared LUTs
  int widths;                     // distinct widths in the batch
  int width_bits[kMaxBits];       // each distinct width,
  int width_shared[kMaxBits];     // where its table starts in the warp's shared LUTs,
  size_t width_global[kMaxBits];  // and where its tables start in `luts`
  int lut_floats;                 // shared floats per warp
};

// One warp per output row. Each lane loads one word per plane for each 1024-column chunk
// (planes up to the widest token's width only), rebuilds 32 max-width indices from them,
// and for every token looks up the top bits of each in that token's LUT (staged in shared
// memory) and accumulates LUT value x activation in fp32. kMaxWidth and kBatch bound the
// loops at compile time so that the words and accumulators stay in registers. Each lane
// reads a token's activations as four 16-byte loads per chunk (8 consecutive columns each),
// which the warp makes into four contiguous 512-byte spans.
template <typename T>
__device__ inline void Widen8(const T* from, float* to);

template <>
__device__ inline void Widen8<__half>(const __half* from, float* to) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(from));
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    to[2 * i] = f.x;
    to[2 * i + 1] = f.y;
  }
}

template <>
__device__ inline void Widen8<__nv_bfloat16>(const __nv_bfloat16* from, float* to) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(from));
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    to[2 * i] = f.x;
    to[2 * i + 1] = f.y;
  }
}

template <typename T, int kMaxWidth, int kBatch>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) BitplaneGemvKernel(const GemvArgs a) {
  extern __shared__ float shared_luts[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarpsPerBlock + warp;
  if (row >= a.rows) return;  // whole warps only: nothing below waits on the block
  float* luts = shared_luts + warp * a.lut_floats;
  for (int w = 0; w < a.widths; ++w) {
    const int entries = 1 << a.width_bits[w];
    const float* from = a.luts + a.width_global[w] + (static_cast<size_t>(row) << a.width_bits[w]);
    for (int e = lane; e < entries; e += 32) luts[a.width_shared[w] + e] = from[e];
  }
  __syncwarp();

  float acc[kBatch];
#pragma unroll
  for (int m = 0; m < kBatch; ++m) acc[m] = 0.0f;
  const uint32_t* words = a.planes + static_cast<size_t>(row) * a.chunks * 32 + lane;
  for (int chunk = 0; chunk < a.chunks; ++chunk) {
    uint32_t plane[kMaxWidth];
#pragma unroll
    for (int p = 0; p < kMaxWidth; ++p) plane[p] = __ldg(words + p * a.plane_words + chunk * 32);
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      uint32_t index[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        uint32_t v = 0;
#pragma unroll
        for (int p = 0; p < kMaxWidth; ++p) v = (v << 1) | ((plane[p] >> (8 * g + i)) & 1u);
        index[i] = v;
      }
      const int column = chunk * kChunkColumns + 256 * g + 8 * lane;
#pragma unroll
      for (int m = 0; m < kBatch; ++m) {
        if (m >= a.batch) break;
        float xs[8];
        Widen8<T>(static_cast<const T*>(a.x) + static_cast<size_t>(m) * a.padded_cols + column, xs);
        const float* lut = luts + a.lut_at[m];
        const int shift = a.shift[m];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[m] = fmaf(lut[index[i] >> shift], xs[i], acc[m]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < kBatch; ++m) {
    if (m >= a.batch) break;
    float sum = acc[m];
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) a.y[static_cast<size_t>(m) * a.rows + row] = sum;
  }
}

template <typename T, int kMaxWidth>
cudaError_t LaunchForBatch(const GemvArgs& args, dim3 grid, dim3 block, size_t shared, cudaStream_t stream) {
  if (args.batch <= 1) {
    BitplaneGemvKernel<T, kMaxWidth, 1><<<grid, block, shared, stream>>>(args);
  } else if (args.batch <= 4) {
    BitplaneGemvKernel<T, kMaxWidth, 4><<<grid, block, shared, stream>>>(args);
  } else {
    BitplaneGemvKernel<T, kMaxWidth, 16><<<grid, block, shared, stream>>>(args);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchForWidth(int max_width, const GemvArgs& a, dim3 grid, dim3 block, size_t shared, cudaStream_t stream) {
  switch (max_width) {
    case 1: return LaunchForBatch<T, 1>(a, grid, block, shared, stream);
    case 2: return LaunchForBatch<T, 2>(a, grid, block, shared, stream);
    case 3: return LaunchForBatch<T, 3>(a, grid, block, shared, stream);
    case 4: return LaunchForBatch<T, 4>(a, grid, block, shared, stream);
    case 5: return LaunchForBatch<T, 5>(a, grid, block, shared, stream);
    case 6: return LaunchForBatch<T, 6>(a, grid, block, shared, stream);
    case 7: return LaunchForBatch<T, 7>(a, grid, block, shared, stream);
    default: return LaunchForBatch<T, 8>(a, grid, block, shared, stream);
  }
}

// One thread per plane word position: 32 weights of one row.
__global__ void DequantizeKernel(const uint32_t* planes, size_t plane_words, int rows, int cols, int chunks, const float* lut,
                                 int bits, __half* out) {
  const size_t word = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (word >= plane_words) return;
  const int lane = static_cast<int>(word % 32);
  const int chunk = static_cast<int>((word / 32) % chunks);
  const int row = static_cast<int>(word / 32 / chunks);
  uint32_t plane[kMaxBits];
  for (int p = 0; p < bits; ++p) plane[p] = planes[p * plane_words + word];
  const float* row_lut = lut + (static_cast<size_t>(row) << bits);
  for (int bit = 0; bit < 32; ++bit) {
    const int col = chunk * kChunkColumns + 256 * (bit / 8) + 8 * lane + bit % 8;
    if (col >= cols) continue;
    uint32_t index = 0;
    for (int p = 0; p < bits; ++p) index = (index << 1) | ((plane[p] >> bit) & 1u);
    out[static_cast<size_t>(row) * cols + col] = __float2half(row_lut[index]);
  }
}

}  // namespace

cudaError_t LaunchBitplaneGemv(const DeviceBitplaneMatrix& w, const void* x, Activation type, const int* bits, int batch, float* y,
                               cudaStream_t stream) {
  if (batch < 1 || batch > kMaxGemvBatch) return cudaErrorInvalidValue;
  GemvArgs a{};
  a.planes = w.planes;
  a.plane_words = static_cast<size_t>(w.rows) * w.padded_cols / 32;
  a.rows = w.rows;
  a.chunks = w.padded_cols / kChunkColumns;
  a.luts = w.luts;
  a.x = x;
  a.padded_cols = w.padded_cols;
  a.y = y;
  a.batch = batch;
  int max_width = 0;
  for (int m = 0; m < batch; ++m) {
    if (bits[m] < w.seed_bits || bits[m] > w.max_bits) return cudaErrorInvalidValue;
    max_width = max_width > bits[m] ? max_width : bits[m];
  }
  for (int m = 0; m < batch; ++m) {
    int w_index = 0;
    while (w_index < a.widths && a.width_bits[w_index] != bits[m]) ++w_index;
    if (w_index == a.widths) {
      a.width_bits[w_index] = bits[m];
      a.width_shared[w_index] = a.lut_floats;
      a.width_global[w_index] = w.lut_offset[bits[m]];
      a.lut_floats += 1 << bits[m];
      ++a.widths;
    }
    a.shift[m] = max_width - bits[m];
    a.lut_at[m] = a.width_shared[w_index];
  }
  const dim3 grid((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const dim3 block(kWarpsPerBlock * 32);
  const size_t shared = sizeof(float) * kWarpsPerBlock * a.lut_floats;
  static_assert(sizeof(float) * kWarpsPerBlock * kLutFloatsPerWarp <= 48 * 1024, "LUTs fit the default shared memory");
  return type == Activation::kF16 ? LaunchForWidth<__half>(max_width, a, grid, block, shared, stream)
                                  : LaunchForWidth<__nv_bfloat16>(max_width, a, grid, block, shared, stream);
}

cudaError_t LaunchDequantize(const DeviceBitplaneMatrix& w, int bits, void* out_f16, cudaStream_t stream) {
  if (bits < w.seed_bits || bits > w.max_bits) return cudaErrorInvalidValue;
  const size_t plane_words = static_cast<size_t>(w.rows) * w.padded_cols / 32;
  const int threads = 256;
  const size_t blocks = (plane_words + threads - 1) / threads;
  DequantizeKernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(w.planes, plane_words, w.rows, w.cols,
                                                                          w.padded_cols / kChunkColumns, w.luts + w.lut_offset[bits],
                                                                          bits, static_cast<__half*>(out_f16));
  return cudaGetLastError();
}

}  // namespace anyprec::cuda
