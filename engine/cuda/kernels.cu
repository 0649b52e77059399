// CUDA kernels of the bitplane backend. The layout they read is gpu_layout.h's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "engine/cuda/kernels.h"

namespace anyprec::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
// Widest batch width up to which the kernel looks up two columns at once in a table of
// column pairs (2^(2b) float2 per width); wider ones look up single columns.
constexpr int kMaxPairWidth = 4;

struct GemvArgs {
  const uint32_t* planes;
  size_t plane_words;  // words from one plane to the next
  int rows;
  int chunks;
  const float* luts;
  const void* x;  // fp16 or bf16 [batch][padded_cols]
  int padded_cols;
  float* y;  // fp32 [batch][rows]
  int batch;
  // Tokens in the order the kernel visits them: sorted by width, so that each run of equal
  // widths shares one set of table lookups.
  int token_row[kMaxGemvBatch];    // the token's row in x and y
  int token_width[kMaxGemvBatch];  // index into the width arrays below
  int widths;                      // distinct widths in the batch
  int width_bits[kMaxBits];
  int width_table[kMaxBits];       // where the width's table starts in the warp's shared floats
  size_t width_lut[kMaxBits];      // where the width's LUTs start in `luts`
  int table_floats;                // shared floats per warp
};

template <typename T>
struct Activations;

template <>
struct Activations<__half> {
  using Pair = __half2;
  static __device__ float2 Widen(Pair p) { return __half22float2(p); }
};

template <>
struct Activations<__nv_bfloat16> {
  using Pair = __nv_bfloat162;
  static __device__ float2 Widen(Pair p) { return __bfloat1622float2(p); }
};

// The 8 activations at `from` (16 bytes) as fp32.
template <typename T>
__device__ inline void Widen8(const T* from, float* to) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(from));
  const auto* pairs = reinterpret_cast<const typename Activations<T>::Pair*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = Activations<T>::Widen(pairs[i]);
    to[2 * i] = f.x;
    to[2 * i + 1] = f.y;
  }
}

// Byte r of pair_index[q] is the pair index of columns 2q, 2q+1 in group r (columns
// 256r + 8 lane + 2q, +1): bits 2p and 2p+1 are plane p's bits of the two columns. The
// low 2b bits are the pair index at width b < kWidth.
template <int kWidth>
__device__ inline void PairIndices(const uint32_t* plane, uint32_t* pair_index) {
  constexpr uint32_t kEven = 0x33333333u;  // bits 2k and 2k+1 of pairs k = 0, 2, 4, ...
  const uint32_t w0 = plane[0];
  const uint32_t w1 = kWidth > 1 ? plane[1] : 0u;
  const uint32_t w2 = kWidth > 2 ? plane[2] : 0u;
  const uint32_t w3 = kWidth > 3 ? plane[3] : 0u;
  // Nibble i of a*: planes 0 and 1 of pair 2i (a0) or 2i+1 (a1); of c*, planes 2 and 3.
  const uint32_t a0 = (w0 & kEven) | ((w1 & kEven) << 2);
  const uint32_t a1 = ((w0 >> 2) & kEven) | (w1 & (kEven << 2));
  const uint32_t c0 = (w2 & kEven) | ((w3 & kEven) << 2);
  const uint32_t c1 = ((w2 >> 2) & kEven) | (w3 & (kEven << 2));
  pair_index[0] = (a0 & 0x0F0F0F0Fu) | ((c0 & 0x0F0F0F0Fu) << 4);  // pairs 4r
  pair_index[1] = (a1 & 0x0F0F0F0Fu) | ((c1 & 0x0F0F0F0Fu) << 4);  // pairs 4r + 1
  pair_index[2] = ((a0 >> 4) & 0x0F0F0F0Fu) | (c0 & 0xF0F0F0F0u);  // pairs 4r + 2
  pair_index[3] = ((a1 >> 4) & 0x0F0F0F0Fu) | (c1 & 0xF0F0F0F0u);  // pairs 4r + 3
}

// The kWidth-bit indices of the 8 columns of group g (256g + 8 lane + i), byte i of
// index[0] (i < 4) and of index[1] (i >= 4): an 8x8 bit transpose of the planes' byte g.
template <int kWidth>
__device__ inline void ColumnIndices(const uint32_t* plane, int g, uint32_t* index) {
  // Plane p's byte g goes to byte kWidth-1-p, so that after the transpose column i's byte
  // holds plane 0 in its highest used bit: the index itself.
  uint64_t x = 0;
#pragma unroll
  for (int p = 0; p < kWidth; ++p) x |= static_cast<uint64_t>((plane[p] >> (8 * g)) & 0xFFu) << (8 * (kWidth - 1 - p));
  // Hacker's Delight's transpose8: bit (row r, column c) = bit 8r + c moves to 8c + r.
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
  x ^= t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
  x ^= t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
  x ^= t ^ (t << 28);
  index[0] = static_cast<uint32_t>(x);
  index[1] = static_cast<uint32_t>(x >> 32);
}

// Rows a warp computes: activations loaded (and widened) once serve that many rows. A
// tuning knob: on an H200, 4 rows a warp (2 at batch 16) ran 3-10% slower than 1 on
// 11008 x 4096 at batch 1 (faster only on 8192 x 28672), since the kernel is bound by its
// shared-memory table lookups rather than by activation traffic (docs/BENCHMARKS.md).
template <int kBatch>
constexpr int kRowsPerWarp = 1;

// Each warp computes kRowsPerWarp output rows. Each lane loads one word per plane and row
// for each 1024-column chunk, planes up to the batch's widest width only. For each run of
// tokens of one width it looks the columns' weights up in that width's table (staged in
// shared memory per row) once, then accumulates weight x activation in fp32 for every token
// of the run. Up to kMaxPairWidth a table entry holds two columns' weights (a float2 per
// pair index), halving the lookups. Each lane reads a token's activations as four 16-byte
// loads per chunk, which the warp makes into four contiguous 512-byte spans. kWidth and
// kBatch bound the loops at compile time so that words, weights and accumulators stay in
// registers.
template <typename T, int kWidth, int kBatch>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) BitplaneGemvKernel(const GemvArgs a) {
  constexpr bool kPairs = kWidth <= kMaxPairWidth;
  constexpr int kRows = kRowsPerWarp<kBatch>;
  extern __shared__ float2 shared_tables[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int first_row = (blockIdx.x * kWarpsPerBlock + warp) * kRows;
  if (first_row >= a.rows) return;  // whole warps only: nothing below waits on the block
  // Rows past the matrix repeat its last row; their results are not written.
  int rows[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) rows[r] = min(first_row + r, a.rows - 1);
  float* tables = reinterpret_cast<float*>(shared_tables) + warp * kRows * a.table_floats;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    for (int w = 0; w < a.widths; ++w) {
      const int bits = a.width_bits[w];
      const float* lut = a.luts + a.width_lut[w] + (static_cast<size_t>(rows[r]) << bits);
      float* table = tables + r * a.table_floats + a.width_table[w];
      if (kPairs) {
        for (int e = lane; e < (1 << (2 * bits)); e += 32) {
          int first = 0;
          int second = 0;
          for (int p = 0; p < bits; ++p) {
            first |= ((e >> (2 * p)) & 1) << (bits - 1 - p);
            second |= ((e >> (2 * p + 1)) & 1) << (bits - 1 - p);
          }
          table[2 * e] = __ldg(lut + first);
          table[2 * e + 1] = __ldg(lut + second);
        }
      } else {
        for (int e = lane; e < (1 << bits); e += 32) table[e] = __ldg(lut + e);
      }
    }
  }
  __syncwarp();

  float acc[kRows][kBatch];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kBatch; ++m) acc[r][m] = 0.0f;
  }
  for (int chunk = 0; chunk < a.chunks; ++chunk) {
    uint32_t plane[kRows][kWidth];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const uint32_t* words = a.planes + (static_cast<size_t>(rows[r]) * a.chunks + chunk) * 32 + lane;
#pragma unroll
      for (int p = 0; p < kWidth; ++p) plane[r][p] = __ldg(words + p * a.plane_words);
    }
    uint32_t pair_index[kRows][4];
    if (kPairs) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) PairIndices<kWidth>(plane[r], pair_index[r]);
    }
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      uint32_t index[kRows][2];
      if (!kPairs) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) ColumnIndices<kWidth>(plane[r], g, index[r]);
      }
      const int column = chunk * kChunkColumns + 256 * g + 8 * lane;
      float weight[kRows][8];
#pragma unroll
      for (int m = 0; m < kBatch; ++m) {
        if (m >= a.batch) break;
        const int w = a.token_width[m];
        if (m == 0 || w != a.token_width[m - 1]) {  // a new run of widths: look its weights up
          const int bits = a.width_bits[w];
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            const float* table = tables + r * a.table_floats + a.width_table[w];
            if (kPairs) {
              const uint32_t mask = (1u << (2 * bits)) - 1;
#pragma unroll
              for (int q = 0; q < 4; ++q) {
                const float2 pair = reinterpret_cast<const float2*>(table)[(pair_index[r][q] >> (8 * g)) & mask];
                weight[r][2 * q] = pair.x;
                weight[r][2 * q + 1] = pair.y;
              }
            } else {
              const int shift = kWidth - bits;
#pragma unroll
              for (int i = 0; i < 8; ++i) weight[r][i] = table[((index[r][i / 4] >> (8 * (i % 4))) & 0xFFu) >> shift];
            }
          }
        }
        float xs[8];
        Widen8<T>(static_cast<const T*>(a.x) + static_cast<size_t>(a.token_row[m]) * a.padded_cols + column, xs);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[r][m] = fmaf(weight[r][i], xs[i], acc[r][m]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kBatch; ++m) {
      if (m >= a.batch) break;
      float sum = acc[r][m];
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
      if (lane == 0 && first_row + r < a.rows) a.y[static_cast<size_t>(a.token_row[m]) * a.rows + first_row + r] = sum;
    }
  }
}

template <typename T, int kWidth, int kBatch>
cudaError_t Launch(const GemvArgs& args, cudaStream_t stream) {
  constexpr int kRowsPerBlock = kWarpsPerBlock * kRowsPerWarp<kBatch>;
  const dim3 grid((args.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const size_t shared = sizeof(float) * kRowsPerBlock * args.table_floats;
  BitplaneGemvKernel<T, kWidth, kBatch><<<grid, kWarpsPerBlock * 32, shared, stream>>>(args);
  return cudaGetLastError();
}

template <typename T, int kWidth>
cudaError_t LaunchForBatch(const GemvArgs& args, cudaStream_t stream) {
  if (args.batch <= 1) return Launch<T, kWidth, 1>(args, stream);
  if (args.batch <= 4) return Launch<T, kWidth, 4>(args, stream);
  return Launch<T, kWidth, 16>(args, stream);
}

template <typename T>
cudaError_t LaunchForWidth(int max_width, const GemvArgs& a, cudaStream_t stream) {
  switch (max_width) {
    case 1: return LaunchForBatch<T, 1>(a, stream);
    case 2: return LaunchForBatch<T, 2>(a, stream);
    case 3: return LaunchForBatch<T, 3>(a, stream);
    case 4: return LaunchForBatch<T, 4>(a, stream);
    case 5: return LaunchForBatch<T, 5>(a, stream);
    case 6: return LaunchForBatch<T, 6>(a, stream);
    case 7: return LaunchForBatch<T, 7>(a, stream);
    default: return LaunchForBatch<T, 8>(a, stream);
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
    max_width = std::max(max_width, bits[m]);
    a.token_row[m] = m;
  }
  std::stable_sort(a.token_row, a.token_row + batch, [&](int i, int j) { return bits[i] < bits[j]; });
  const bool pairs = max_width <= kMaxPairWidth;
  for (int m = 0; m < batch; ++m) {
    const int b = bits[a.token_row[m]];
    if (a.widths == 0 || a.width_bits[a.widths - 1] != b) {
      a.width_bits[a.widths] = b;
      a.width_table[a.widths] = a.table_floats;
      a.width_lut[a.widths] = w.lut_offset[b];
      a.table_floats += pairs ? 2 << (2 * b) : 1 << b;
      ++a.widths;
    }
    a.token_width[m] = a.widths - 1;
  }
  // Per row at most 682 floats of pair tables (widths 1..4) or 510 of single ones (1..8):
  // the rows of a block stay well within the default 48 KiB of shared memory.
  return type == Activation::kF16 ? LaunchForWidth<__half>(max_width, a, stream) : LaunchForWidth<__nv_bfloat16>(max_width, a, stream);
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
