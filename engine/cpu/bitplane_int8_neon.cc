// The integer bitplane-LUT kernel for ARMv8.2 CPUs with NEON's dot-product extension
// (namespace neon_dotprod). Per row, per width b in the batch, per block of 128 columns (16
// bytes of each plane):
// - Byte i of a plane's 16 bytes holds bit j of column 8 i + j. An 8 x 8 bit transpose
//   within every byte lane of planes 0..b-1 makes eight vectors of indices, vector j holding
//   in lane i the b-bit index of column 8 i + j: 40 shifts, bit selects and shift-inserts
//   per 128 columns at 8 bits, 24 at 4 (registers b..7 start as zeros, whose exchanges are
//   cheaper or drop out at compile time), where assembling each index from its planes would
//   take two per plane per vector.
// - tbl looks the indices up in the row's int8 table, up to 64 entries (four registers) at
//   once; 7 and 8 bits chain tbx over the further 64-entry chunks with the index xor 64 k,
//   which is in range only in the lanes whose index lies in chunk k: the others keep what
//   an earlier chunk found.
// - The activations come in ActivationOrder::kBitSliced: per 256 columns, position
//   32 j + i holds column 8 i + j, so the weights of vector j meet their activations at
//   positions 32 j + 0..15 in the tile's first block and 32 j + 16..31 in its second, lane
//   by lane. sdot multiplies them with the signed tables (u8 entries less 128, which drops
//   the +128 offset instead of subtracting it at the end) into int32 per block, which the
//   block's scale turns into fp32.
// Both schedules (ops.h, Int8Schedule) share these steps. Per token (Rows), the weights of a
// block stay in registers, met by the tokens of one width in a pass of at most kPassTokens.
// Batched (Gemm), they go to a buffer of kGemmRows rows in the same bit-sliced order, which a
// register tile of rows by tokens meets with every token row of that width.
#include <arm_neon.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "engine/cpu/int8_kernels.h"
#include "engine/model/bitplanes.h"

// Only the functions below this line are compiled for the extension, so that inline
// functions of the headers above, which other files share, never carry its instructions
// and the rest of the binary runs on ARMv8.0. GCC's arm_neon.h defines the dot product
// for armv8.2-a+dotprod and will not inline it into a function with only +dotprod. Clang's
// declares it for a target attribute in recent releases only (19 compiles this file; 14
// declares it only in files compiled for the extension as a whole).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

namespace anyprec::cpu::int8::neon_dotprod {
namespace {

constexpr int kTileCols = 256;
constexpr size_t kBlockBytes = kInt8Block / 8;

// One exchange of the bit transpose between registers K and K + S (S is 1, 2 or 4, and K
// lacks it): bit j of r[K] trades places with bit j - S of r[K + S], for every j with S in
// it. Done holds the S of the stages already made, after which register k mixes the planes
// that registers equal to k outside Done held: it is zero while the first of those,
// k & ~Done, is not below the width W.
template <int W, int S, int Done, int K>
inline void Exchange(uint8x16_t r[8]) {
  constexpr bool kPair = (K & S) == 0;
  constexpr bool kLowLive = (K & ~Done) < W, kHighLive = ((K + S) & ~Done) < W;
  constexpr uint8_t kHighBits = S == 1 ? 0xAA : S == 2 ? 0xCC : 0xF0;  // the bits j with S in j
  if constexpr (!kPair || !kLowLive) {
    return;
  } else if constexpr (!kHighLive) {  // r[K + S] is zero: split r[K]
    r[K + S] = S == 4 ? vshrq_n_u8(r[K], S) : vbicq_u8(vshrq_n_u8(r[K], S), vdupq_n_u8(kHighBits));
    r[K] = vbicq_u8(r[K], vdupq_n_u8(kHighBits));
  } else if constexpr (S == 4) {  // whole nibbles: the shift-inserts keep the other one
    const uint8x16_t low = r[K];
    r[K] = vsliq_n_u8(low, r[K + S], S);
    r[K + S] = vsriq_n_u8(r[K + S], low, S);
  } else {
    const uint8x16_t low = r[K];
    r[K] = vbslq_u8(vdupq_n_u8(kHighBits), vshlq_n_u8(r[K + S], S), low);
    r[K + S] = vbslq_u8(vdupq_n_u8(kHighBits), r[K + S], vshrq_n_u8(low, S));
  }
}

template <int W, int S, int Done>
inline void Stage(uint8x16_t r[8]) {
  [&]<int... K>(std::integer_sequence<int, K...>) { (Exchange<W, S, Done, K>(r), ...); }(std::make_integer_sequence<int, 8>());
}

// index[j], lane i: the W-bit index of column 8 i + j of one block, from planes 0..W-1.
// Register k starts as index bit k, plane W - 1 - k, and ends as column j's index.
template <int W>
inline void BlockIndices(const uint8_t* planes, size_t plane_stride, uint8x16_t index[8]) {
  for (int k = 0; k < W; ++k) index[k] = vld1q_u8(planes + (W - 1 - k) * plane_stride);
  Stage<W, 1, 0>(index);
  Stage<W, 2, 1>(index);
  Stage<W, 4, 3>(index);
}

// The int8 weights of one block at width B: its indices looked up in the row's signed table
// of max(2^B, 16) entries.
template <int B>
inline void BlockWeights(const uint8_t* planes, size_t plane_stride, const int8_t* table, int8x16_t weights[8]) {
  uint8x16_t index[8];
  BlockIndices<B>(planes, plane_stride, index);
  if constexpr (B <= 4) {
    const int8x16_t entries = vld1q_s8(table);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) weights[j] = vqtbl1q_s8(entries, index[j]);
  } else if constexpr (B == 5) {
    const int8x16x2_t entries = vld1q_s8_x2(table);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) weights[j] = vqtbl2q_s8(entries, index[j]);
  } else {
    // Chunk by chunk, so that one chunk's four registers are live beside the indices and the
    // weights.
    int8x16x4_t chunk = vld1q_s8_x4(table);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) weights[j] = vqtbl4q_s8(chunk, index[j]);
#pragma GCC unroll 4
    for (int k = 1; k < 1 << (B - 6); ++k) {
      chunk = vld1q_s8_x4(table + 64 * k);
      const uint8x16_t offset = vdupq_n_u8(static_cast<uint8_t>(64 * k));
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) weights[j] = vqtbx4q_s8(weights[j], chunk, veorq_u8(index[j], offset));
    }
  }
}

// Block 2 m + h of a row is half h of tile m: its weights and activations of vector j sit at
// 32 j + 16 h + 0..15 from here, in the activations as in the decoded rows.
inline size_t BlockOffset(size_t block) { return block / 2 * kTileCols + block % 2 * kBlockBytes; }

// Row n's table at width b: the u8 entries less 128, at least the 16 that tbl reads (rows
// hold at least 64).
inline void SignedTable(const BitplaneView& w, int b, int n, int8_t* table) {
  const uint8_t* lut = w.LutU8(b, n);
  for (size_t e = 0; e < size_t{1} << std::max(b, 4); e += 16) {
    vst1q_s8(table + e, vreinterpretq_s8_u8(veorq_u8(vld1q_u8(lut + e), vdupq_n_u8(0x80))));
  }
}

// The weights of one block of a row at width B, prefetching the planes of the blocks ahead.
template <int B>
inline void DecodeBlock(const uint8_t* row_planes, size_t plane_stride, size_t block, const int8_t* table, int8x16_t weights[8]) {
  const uint8_t* planes = row_planes + block * kBlockBytes;
  if (block % 4 == 0) {
    for (int p = 0; p < B; ++p) __builtin_prefetch(planes + p * plane_stride + 2048);
  }
  BlockWeights<B>(planes, plane_stride, table, weights);
}

// acc + a block's int32 dot products in fp32 at the block's activation scale. Both schedules
// round this way, block by block in order, so that they agree to the bit.
inline float32x4_t AddScaled(float32x4_t acc, int32x4_t sum, float scale) { return vfmaq_n_f32(acc, vcvtq_f32_s32(sum), scale); }

// One row at width B for the tokens [first, last) of the pass that want it: acc[t] gathers
// token t's sum per lane.
template <int B>
void GroupRow(const Int8Activations& a, const uint8_t* row_planes, size_t plane_stride, size_t blocks, const int8_t* table,
              const int* tokens, int first, int last, float32x4_t* acc) {
  for (size_t block = 0; block < blocks; ++block) {
    int8x16_t weights[8];
    DecodeBlock<B>(row_planes, plane_stride, block, table, weights);
    for (int t = first; t < last; ++t) {
      const int8_t* x = a.Row(tokens[t]) + BlockOffset(block);
      // Two chains of dot products: each sdot waits for the one two before it, not the last.
      int32x4_t even = vdupq_n_s32(0), odd = vdupq_n_s32(0);
#pragma GCC unroll 4
      for (int j = 0; j < 8; j += 2) {
        even = vdotq_s32(even, weights[j], vld1q_s8(x + 32 * j));
        odd = vdotq_s32(odd, weights[j + 1], vld1q_s8(x + 32 * (j + 1)));
      }
      acc[t] = AddScaled(acc[t], vaddq_s32(even, odd), a.Scales(tokens[t])[block]);
    }
  }
}
using GroupRowKernel = void (*)(const Int8Activations&, const uint8_t*, size_t, size_t, const int8_t*, const int*, int, int, float32x4_t*);
constexpr GroupRowKernel kGroupRow[kMaxBits + 1] = {nullptr,      &GroupRow<1>, &GroupRow<2>, &GroupRow<3>, &GroupRow<4>,
                                                    &GroupRow<5>, &GroupRow<6>, &GroupRow<7>, &GroupRow<8>};

// The batched schedule's register tile of kGemmRows rows by kGemmTokens tokens: 8 fp32
// accumulators, 8 int32 ones for the block at hand, one vector of each token's activations,
// the row vector being read and the tokens' 2 scales take 21 of NEON's 32 registers, the
// rest holding loads in flight; it reads 6 vectors per 8 sdots. 4 x 3 (7 per 12) would take
// 31 and left GCC 12, which hoists the loads, spilling accumulators every block; 4 x 4 would
// need 32 accumulators alone.
constexpr int kGemmRows = 4;
constexpr int kGemmTokens = 2;

// Row n at width B as padded_cols int8 weights in the bit-sliced order. The block that pads
// the row to whole tiles gets zeros, which its zero activations meet.
template <int B>
void DecodeRow(const BitplaneView& w, int n, size_t padded_cols, int8_t* out) {
  alignas(16) int8_t table[1 << kMaxBits];
  SignedTable(w, B, n, table);
  const uint8_t* row_planes = w.planes + static_cast<size_t>(n) * w.row_stride;
  const size_t blocks = w.row_stride / kBlockBytes;
  for (size_t block = 0; block < padded_cols / kInt8Block; ++block) {
    int8x16_t weights[8];
    if (block < blocks) {
      DecodeBlock<B>(row_planes, w.plane_stride, block, table, weights);
    } else {
      std::fill_n(weights, 8, vdupq_n_s8(0));
    }
    for (int j = 0; j < 8; ++j) vst1q_s8(out + BlockOffset(block) + 32 * j, weights[j]);
  }
}
using DecodeRowKernel = void (*)(const BitplaneView&, int, size_t, int8_t*);
constexpr DecodeRowKernel kDecodeRow[kMaxBits + 1] = {nullptr,       &DecodeRow<1>, &DecodeRow<2>, &DecodeRow<3>, &DecodeRow<4>,
                                                      &DecodeRow<5>, &DecodeRow<6>, &DecodeRow<7>, &DecodeRow<8>};

void DecodeRows(const BitplaneView& w, int bits, int n, int rows, size_t padded_cols, uint8_t* out) {
  for (int r = 0; r < rows; ++r) kDecodeRow[bits](w, n + r, padded_cols, reinterpret_cast<int8_t*>(out + r * padded_cols));
}

// sums[r][t] = sum over blocks of scale(t, block) * (decoded row r . activations of token t),
// each block's dot products gathered per lane as GroupRow gathers them.
template <int kRows, int kTokens>
void GemmTile(const uint8_t* weights, const Int8Activations& a, const int* tokens, float sums[kGemmRows][kGemmTokens]) {
  const size_t blocks = a.padded_cols / kInt8Block;
  const int8_t* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = reinterpret_cast<const int8_t*>(weights) + r * a.padded_cols;
  const int8_t* x[kTokens];
  const float* scales[kTokens];
  for (int t = 0; t < kTokens; ++t) {
    x[t] = a.Row(tokens[t]);
    scales[t] = a.Scales(tokens[t]);
  }
  float32x4_t acc[kRows][kTokens];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) acc[r][t] = vdupq_n_f32(0.0f);
  }
  for (size_t block = 0; block < blocks; ++block) {
    const size_t offset = BlockOffset(block);
    int32x4_t sum[kRows][kTokens];
    for (int r = 0; r < kRows; ++r) {
      for (int t = 0; t < kTokens; ++t) sum[r][t] = vdupq_n_s32(0);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      int8x16_t values[kTokens];
      for (int t = 0; t < kTokens; ++t) values[t] = vld1q_s8(x[t] + offset + 32 * j);
      for (int r = 0; r < kRows; ++r) {
        const int8x16_t row = vld1q_s8(rows[r] + offset + 32 * j);
        for (int t = 0; t < kTokens; ++t) sum[r][t] = vdotq_s32(sum[r][t], row, values[t]);
      }
    }
    for (int t = 0; t < kTokens; ++t) {
      const float scale = scales[t][block];
      for (int r = 0; r < kRows; ++r) acc[r][t] = AddScaled(acc[r][t], sum[r][t], scale);
    }
  }
  // Unrolled, or GCC 12 keeps acc in memory for this loop's variable index and stores it
  // every block.
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) sums[r][t] = vaddvq_f32(acc[r][t]);
  }
}

constexpr GemmPieces<kGemmRows, kGemmTokens> kGemm = {&DecodeRows,
                                                      {{&GemmTile<1, 1>, &GemmTile<1, 2>},
                                                       {&GemmTile<2, 1>, &GemmTile<2, 2>},
                                                       {&GemmTile<3, 1>, &GemmTile<3, 2>},
                                                       {&GemmTile<4, 1>, &GemmTile<4, 2>}},
                                                      false};

}  // namespace

void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out) {
  const size_t blocks = w.row_stride / kBlockBytes;
  alignas(16) int8_t table[1 << kMaxBits];
  for (int n = row_begin; n < row_end; ++n) {
    float32x4_t acc[kPassTokens];
    for (int t = 0; t < count; ++t) acc[t] = vdupq_n_f32(0.0f);
    const uint8_t* row_planes = w.planes + static_cast<size_t>(n) * w.row_stride;
    // Width by width, each over the whole row: the row's planes stay in L1 for the next.
    ForEachWidth(bits, count, [&](int first, int last) {
      SignedTable(w, bits[first], n, table);
      kGroupRow[bits[first]](a, row_planes, w.plane_stride, blocks, table, tokens, first, last, acc);
    });
    for (int t = 0; t < count; ++t) {
      const double sum = vaddvq_f32(acc[t]);
      out[static_cast<size_t>(tokens[t]) * w.rows + n] = static_cast<float>(w.LutScale(bits[t], n) * sum);
    }
  }
}

void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out) {
  RunGemm(kGemm, a, w, tokens, bits, count, row_begin, row_end, out);
}

}  // namespace anyprec::cpu::int8::neon_dotprod

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
