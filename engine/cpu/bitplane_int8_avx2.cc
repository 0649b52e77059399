// The integer bitplane-LUT kernels for x86 CPUs with AVX2, compiled twice: for AVX2 and FMA
// (namespace avx2), and with ANYPREC_INT8_VNNI for 256-bit vpdpbusd from AVX-512 VL and VNNI
// (namespace avx2_vnni). Per row, per tile of 256 columns, per width b in the batch:
// - Byte i of a plane's 32 bytes holds bit j of column 8 i + j. A bit transpose of the four
//   lowest planes of the width (b-4..b-1; a zero plane stands in below plane 0) makes eight
//   vectors of nibbles, vector j holding in lane i the nibble of column 8 i + j: 44 logic
//   ops per 256 columns, where assembling each index from its planes would take 3 or more
//   per plane per 32 columns.
// - vpshufb looks the nibbles up in the row's 16-entry int8 table. Widths above 4 look them
//   up in 2^(b-4) tables and choose by the higher planes with vpblendvb (each such plane
//   shifted so that bit j lands in bit 7, which is all vpblendvb reads).
// - The looked-up weights of kGemmRows rows go to a buffer that stays in L1, in the
//   bit-sliced order in which the activations come too (ActivationOrder::kBitSliced), and
//   a micro-kernel meets them lane by lane with every token row of that width, a tile of
//   rows by tokens at a time: vpsignb + vpmaddubsw + vpmaddwd (signed tables, |w| times x
//   with w's sign; pairs of 127 x 127 cannot saturate), or vpdpbusd on the u8 tables.
// This batched form is the only one: measured against decoding in registers for passes of
// up to 16 tokens (anyprec-bench-kernels --schedules), it was faster at every batch size
// from one token on, by 8-28%, the decode of a pair of rows running ahead of the products.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "engine/cpu/int8_kernels.h"
#include "engine/model/bitplanes.h"

// Only the functions below this line are compiled for the target, so that inline functions
// of the headers above, which other files share, never carry its instructions (as Highway's
// HWY_BEFORE_NAMESPACE does: clang applies an attribute to each function, GCC a pragma).
#if ANYPREC_INT8_VNNI
#define ANYPREC_INT8_NAMESPACE avx2_vnni
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512vl,avx512vnni")
#endif
#else
#define ANYPREC_INT8_NAMESPACE avx2
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#endif

namespace anyprec::cpu::int8::ANYPREC_INT8_NAMESPACE {
namespace {

constexpr int kTileCols = 256;
constexpr size_t kTileBytes = kTileCols / 8;

inline __m256i Bytes(int value) { return _mm256_set1_epi8(static_cast<char>(value)); }

// One plane's bytes of a tile; the last tile of a row of 128-column blocks may be half.
inline __m256i LoadPlane(const uint8_t* p, bool half) {
  return half ? _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))
              : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Byte i of nibbles[j] = (bit j of q0[i]) << 3 | (bit j of q1[i]) << 2 | (bit j of q2[i]) << 1
// | bit j of q3[i]. Shifts move whole 16-bit words; the masks drop what crosses a byte.
inline void TransposeNibbles(__m256i q0, __m256i q1, __m256i q2, __m256i q3, __m256i nibbles[8]) {
  const __m256i m55 = Bytes(0x55), mAA = Bytes(0xAA), m33 = Bytes(0x33), mCC = Bytes(0xCC), m0F = Bytes(0x0F);
  // Bits 2k+1, 2k hold two planes' bits of column 2k+1 (odd) or 2k (even).
  const auto pair_odd = [&](__m256i x, __m256i y) {
    return _mm256_or_si256(_mm256_and_si256(x, mAA), _mm256_and_si256(_mm256_srli_epi16(y, 1), m55));
  };
  const auto pair_even = [&](__m256i x, __m256i y) {
    return _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(x, 1), mAA), _mm256_and_si256(y, m55));
  };
  // Bits 4m+3..4m hold the four planes' bits of column 4m + 3 (high) or 4m + 1 (low) from
  // odd pairs, of 4m + 2 or 4m from even pairs.
  const auto quad_high = [&](__m256i x, __m256i y) {
    return _mm256_or_si256(_mm256_and_si256(x, mCC), _mm256_and_si256(_mm256_srli_epi16(y, 2), m33));
  };
  const auto quad_low = [&](__m256i x, __m256i y) {
    return _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(x, 2), mCC), _mm256_and_si256(y, m33));
  };
  const __m256i odd01 = pair_odd(q0, q1), even01 = pair_even(q0, q1);
  const __m256i odd23 = pair_odd(q2, q3), even23 = pair_even(q2, q3);
  const __m256i n37 = quad_high(odd01, odd23), n15 = quad_low(odd01, odd23);
  const __m256i n26 = quad_high(even01, even23), n04 = quad_low(even01, even23);
  const __m256i quads[4] = {n04, n15, n26, n37};
  for (int r = 0; r < 4; ++r) {
    nibbles[r] = _mm256_and_si256(quads[r], m0F);
    nibbles[r + 4] = _mm256_and_si256(_mm256_srli_epi16(quads[r], 4), m0F);
  }
}

inline __m256i Table(const uint8_t* entries) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(entries)));
}

// The int8 weights of one tile at width B, weights[j] in the bit-sliced order. `tables` is
// the row's table of 2^B entries (at least 16 bytes), int8 in the signed kernel and u8 in
// the VNNI one.
template <int B>
inline void TileWeights(const uint8_t* planes, size_t plane_stride, bool half, const uint8_t* tables, __m256i weights[8]) {
  constexpr int kLowest = B - 4;  // the nibble's most significant plane
  __m256i q[4];
  for (int i = 0; i < 4; ++i) q[i] = kLowest + i < 0 ? _mm256_setzero_si256() : LoadPlane(planes + (kLowest + i) * plane_stride, half);
  __m256i nibbles[8];
  TransposeNibbles(q[0], q[1], q[2], q[3], nibbles);
  if constexpr (B <= 4) {
    const __m256i table = Table(tables);
    for (int j = 0; j < 8; ++j) weights[j] = _mm256_shuffle_epi8(table, nibbles[j]);
  } else {
    constexpr int kTables = 1 << (B - 4);
    __m256i high[B - 4];
    for (int p = 0; p < B - 4; ++p) high[p] = LoadPlane(planes + p * plane_stride, half);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      __m256i found[kTables];
      for (int k = 0; k < kTables; ++k) found[k] = _mm256_shuffle_epi8(Table(tables + 16 * k), nibbles[j]);
      // Table k's index bits are planes 0..B-5, plane B-5 the lowest: halve by it first.
      for (int p = B - 5, live = kTables; p >= 0; --p, live /= 2) {
        const __m256i select = _mm256_slli_epi16(high[p], 7 - j);
        for (int m = 0; m < live / 2; ++m) found[m] = _mm256_blendv_epi8(found[2 * m], found[2 * m + 1], select);
      }
      weights[j] = found[0];
    }
  }
}

// sum + the dot products of 32 weights with 32 activations, per group of four lanes. The
// signed form multiplies |w| by x with w's sign, so that |w|, the unsigned operand of
// vpmaddubsw, is worked out once for every token of a tile.
#if ANYPREC_INT8_VNNI
inline __m256i Dot(__m256i sum, __m256i weights, __m256i, __m256i x) { return _mm256_dpbusd_epi32(sum, weights, x); }
#else
inline __m256i Dot(__m256i sum, __m256i weights, __m256i magnitudes, __m256i x) {
  const __m256i products = _mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(x, weights));
  return _mm256_add_epi32(sum, _mm256_madd_epi16(products, _mm256_set1_epi16(1)));
}
#endif

inline float SumOfLanes(__m256 v) {
  const __m128 quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
  return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
}

// The row's table at width b as the dot products want it: the u8 entries for vpdpbusd; for
// vpsignb and vpmaddubsw, the entries less 128 (int8), written to `signed_storage`.
inline const uint8_t* KernelTable(const BitplaneView& w, int b, int n, uint8_t* signed_storage) {
  const uint8_t* u8 = w.LutU8(b, n);
  if (ANYPREC_INT8_VNNI) return u8;
  const size_t entries = size_t{1} << (b < 4 ? 4 : b);
  for (size_t e = 0; e < entries; e += 16) {
    const __m128i entry = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u8 + e));
    _mm_store_si128(reinterpret_cast<__m128i*>(signed_storage + e), _mm_xor_si128(entry, _mm_set1_epi8(static_cast<char>(0x80))));
  }
  return signed_storage;
}

inline void PrefetchPlanes(const uint8_t* tile_planes, size_t plane_stride, int planes) {
  for (int p = 0; p < planes; ++p) _mm_prefetch(reinterpret_cast<const char*>(tile_planes + p * plane_stride) + 2048, _MM_HINT_T0);
}

// Tiles of kGemmRows rows by kGemmTokens tokens: their accumulators and operands fit the 16
// registers.
constexpr int kGemmRows = 2;
constexpr int kGemmTokens = 2;

template <int B>
void DecodeRow(const BitplaneView& w, int n, const uint8_t* table, size_t tiles, uint8_t* out) {
  const uint8_t* row_planes = w.planes + static_cast<size_t>(n) * w.row_stride;
  const bool half_tile = w.row_stride % kTileBytes != 0;
  for (size_t tile = 0; tile < tiles; ++tile) {
    const uint8_t* tile_planes = row_planes + tile * kTileBytes;
    if (tile % 2 == 0) PrefetchPlanes(tile_planes, w.plane_stride, B);
    __m256i weights[8];
    TileWeights<B>(tile_planes, w.plane_stride, half_tile && tile + 1 == tiles, table, weights);
    for (int j = 0; j < 8; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + tile * kTileCols + 32 * j), weights[j]);
  }
}
using DecodeRowKernel = void (*)(const BitplaneView&, int, const uint8_t*, size_t, uint8_t*);
constexpr DecodeRowKernel kDecodeRow[kMaxBits + 1] = {nullptr,       &DecodeRow<1>, &DecodeRow<2>, &DecodeRow<3>, &DecodeRow<4>,
                                                      &DecodeRow<5>, &DecodeRow<6>, &DecodeRow<7>, &DecodeRow<8>};

// sums[r][t] = sum over blocks of scale(t, block) * (decoded row r . activations of token t).
template <int kRows, int kTokens>
void GemmTile(const uint8_t* weights, const Int8Activations& a, const int* tokens, float sums[kGemmRows][kGemmTokens]) {
  __m256 acc[kRows][kTokens];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  for (size_t tile = 0; tile < a.padded_cols / kTileCols; ++tile) {
    __m256i sum[kRows][kTokens];
    for (int r = 0; r < kRows; ++r) {
      for (int t = 0; t < kTokens; ++t) sum[r][t] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 8; ++j) {
      __m256i x[kTokens];
      for (int t = 0; t < kTokens; ++t) {
        const int8_t* row = a.Row(tokens[t]);
        x[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + tile * kTileCols + 32 * j));
      }
      for (int r = 0; r < kRows; ++r) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weights + r * a.padded_cols + tile * kTileCols + 32 * j));
        const __m256i magnitude = ANYPREC_INT8_VNNI ? w : _mm256_abs_epi8(w);
        for (int t = 0; t < kTokens; ++t) sum[r][t] = Dot(sum[r][t], w, magnitude, x[t]);
      }
    }
    for (int t = 0; t < kTokens; ++t) {
      // Lanes 0-3 hold block 2 tile, lanes 4-7 block 2 tile + 1.
      const float* scale = a.Scales(tokens[t]) + 2 * tile;
      const __m256 scales = _mm256_set_m128(_mm_set1_ps(scale[1]), _mm_set1_ps(scale[0]));
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][t]), scales, acc[r][t]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) sums[r][t] = SumOfLanes(acc[r][t]);
  }
}
void DecodeRows(const BitplaneView& w, int bits, int n, int rows, size_t padded_cols, uint8_t* out) {
  alignas(32) uint8_t signed_table[1 << kMaxBits];
  for (int r = 0; r < rows; ++r) {
    kDecodeRow[bits](w, n + r, KernelTable(w, bits, n + r, signed_table), padded_cols / kTileCols, out + r * padded_cols);
  }
}

constexpr GemmPieces<kGemmRows, kGemmTokens> kGemm = {
    &DecodeRows, {{&GemmTile<1, 1>, &GemmTile<1, 2>}, {&GemmTile<2, 1>, &GemmTile<2, 2>}}, ANYPREC_INT8_VNNI == 1};

}  // namespace

void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out) {
  RunGemm(kGemm, a, w, tokens, bits, count, row_begin, row_end, out);
}

}  // namespace anyprec::cpu::int8::ANYPREC_INT8_NAMESPACE

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
