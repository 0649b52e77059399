// The integer bitplane-LUT kernel for x86 CPUs with AVX-512 VBMI, VNNI and GFNI. Per row and
// per 128 columns: 16 bytes per plane become 128 byte-indices (a byte permute and a bit
// transpose by gf2p8affine per 64 columns), one byte permute per 64 columns looks up the
// row's int8 LUT (vpermb; vpermt2b for 7 and 8 bits), and vpdpbusd multiplies the 64 u8
// weights with 64 int8 activations of every token that wants that width. Highway 1.0 has
// neither byte permutes across the vector nor vpdpbusd, hence intrinsics, compiled for this
// target only and chosen at run time.
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 headers (the "undefined" source of a masked intrinsic,
// which _mm512_reduce_add_ps uses).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <array>

#include "engine/cpu/int8_kernels.h"

namespace anyprec::cpu::int8::avx512_vbmi {
namespace {

#define ANYPREC_AVX512_INT8 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,gfni")))

// How Indices gathers the planes of a 128-column block for one width: the vpermb indices
// that put plane p's byte j of the block's low (high) 64 columns at byte 8 - bits + p of
// qword j, and the bytes of each qword that hold a plane (the others are zeroed). Up to 4
// bits, `packed` gathers both halves into one qword: the low half's bytes at 4 - bits + p.
struct PlaneGather {
  uint8_t low[64];
  uint8_t high[64];
  uint64_t keep;
  uint8_t packed[64];
  uint64_t packed_keep;
};
constexpr std::array<PlaneGather, 9> kPlaneGathers = [] {
  std::array<PlaneGather, 9> gathers{};
  for (int bits = 1; bits <= 8; ++bits) {
    PlaneGather& gather = gathers[bits];
    for (int j = 0; j < 8; ++j) {
      for (int p = 0; p < bits; ++p) {
        const int byte = 8 * j + 8 - bits + p;
        gather.low[byte] = static_cast<uint8_t>(16 * p + j);
        gather.high[byte] = static_cast<uint8_t>(16 * p + 8 + j);
        gather.keep |= uint64_t{1} << byte;
        if (bits > 4) continue;
        gather.packed[byte] = gather.high[byte];
        gather.packed[byte - 4] = gather.low[byte];
        gather.packed_keep |= uint64_t{1} << byte | uint64_t{1} << (byte - 4);
      }
    }
  }
  return gathers;
}();

// The 128 byte-indices of `bits` width of one row's block of 128 columns, in column order.
// Plane p's 16 bytes of the block go to lane p of one register (planes 4-7 of a second);
// a byte permute puts the planes' byte j side by side in qword j, an 8x8 bit matrix whose
// transpose (gf2p8affine against one-hot bytes) holds column 8j + m's index in byte m, the
// first plane in the top bit. Up to 4 bits one transpose makes both halves, the low half's
// indices in the top nibbles, the high half's in the bottom ones: bits 4-7 of a byte then
// hold another column's bits, which the LUT's repeats (BitplaneView) or Weights' mask make
// harmless. About 2 + bits instructions per 128 columns, where one mask load and add per
// plane and 64 columns took about 4 * bits.
ANYPREC_AVX512_INT8 inline void Indices(const uint8_t* row_planes, size_t plane_stride, size_t block, int bits, __m512i& low,
                                        __m512i& high) {
  const uint8_t* bytes = row_planes + block * 16;
  const auto plane = [&](int p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + p * plane_stride)); };
  if (block % 4 == 0) {
    for (int p = 0; p < bits; ++p) _mm_prefetch(reinterpret_cast<const char*>(bytes + p * plane_stride) + 2048, _MM_HINT_T0);
  }
  __m512i planes = _mm512_zextsi128_si512(plane(0));
  if (bits > 1) planes = _mm512_inserti32x4(planes, plane(1), 1);
  if (bits > 2) planes = _mm512_inserti32x4(planes, plane(2), 2);
  if (bits > 3) planes = _mm512_inserti32x4(planes, plane(3), 3);
  const PlaneGather& gather = kPlaneGathers[bits];
  const __m512i one_hot = _mm512_set1_epi64(0x8040201008040201);
  if (bits <= 4) {
    const __m512i packed = _mm512_maskz_permutexvar_epi8(_cvtu64_mask64(gather.packed_keep), _mm512_loadu_si512(gather.packed), planes);
    high = _mm512_gf2p8affine_epi64_epi8(one_hot, packed, 0);
    low = _mm512_srli_epi16(high, 4);
    return;
  }
  const __mmask64 keep = _cvtu64_mask64(gather.keep);
  const __m512i low_order = _mm512_loadu_si512(gather.low), high_order = _mm512_loadu_si512(gather.high);
  __m512i upper = _mm512_zextsi128_si512(plane(4));
  if (bits > 5) upper = _mm512_inserti32x4(upper, plane(5), 1);
  if (bits > 6) upper = _mm512_inserti32x4(upper, plane(6), 2);
  if (bits > 7) upper = _mm512_inserti32x4(upper, plane(7), 3);
  low = _mm512_gf2p8affine_epi64_epi8(one_hot, _mm512_maskz_permutex2var_epi8(keep, planes, low_order, upper), 0);
  high = _mm512_gf2p8affine_epi64_epi8(one_hot, _mm512_maskz_permutex2var_epi8(keep, planes, high_order, upper), 0);
}

// The u8 weights for 64 columns: the top `bits` of the `widest`-bit indices (Indices), looked
// up in the row's int8 LUT (read from L1 by the permute).
ANYPREC_AVX512_INT8 inline __m512i Weights(__m512i index, int widest, int bits, const uint8_t* lut) {
  const int shift = widest - bits;
  if (shift > 0) index = _mm512_and_si512(_mm512_srli_epi16(index, shift), _mm512_set1_epi8(static_cast<char>((1 << bits) - 1)));
  if (bits <= 6) return _mm512_permutexvar_epi8(index, _mm512_loadu_si512(lut));
  const __m512i low = _mm512_permutex2var_epi8(_mm512_loadu_si512(lut), index, _mm512_loadu_si512(lut + 64));
  if (bits == 7) return low;
  const __m512i high = _mm512_permutex2var_epi8(_mm512_loadu_si512(lut + 128), index, _mm512_loadu_si512(lut + 192));
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(index), low, high);
}

// Up to kTokens token rows, sorted by width, at once: planes are read once for the widest;
// tokens of equal width share one lookup. kTokens is a compile-time count so that every
// accumulator stays in a register.
template <int kTokens>
ANYPREC_AVX512_INT8 void FixedRows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int row_begin,
                              int row_end, float* out) {
  const size_t blocks = a.padded_cols / kInt8Block;
  const int widest = bits[kTokens - 1];
  for (int n = row_begin; n < row_end; ++n) {
    const uint8_t* lut[kTokens];
    for (int t = 0; t < kTokens; ++t) lut[t] = w.LutU8(bits[t], n);
    __m512 acc[kTokens];
    for (int t = 0; t < kTokens; ++t) acc[t] = _mm512_setzero_ps();
    const uint8_t* row_planes = w.planes + static_cast<size_t>(n) * w.row_stride;
    for (size_t block = 0; block < blocks; ++block) {
      __m512i index_low, index_high;
      Indices(row_planes, w.plane_stride, block, widest, index_low, index_high);
      __m512i low = _mm512_setzero_si512();
      __m512i high = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int t = 0; t < kTokens; ++t) {
        if (t == 0 || bits[t] != bits[t - 1]) {
          low = Weights(index_low, widest, bits[t], lut[t]);
          high = Weights(index_high, widest, bits[t], lut[t]);
        }
        const int8_t* x = a.Row(tokens[t]) + block * kInt8Block;
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), low, _mm512_loadu_si512(x)), high,
                                                _mm512_loadu_si512(x + 64));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(a.Scales(tokens[t])[block]), acc[t]);
      }
    }
    for (int t = 0; t < kTokens; ++t) {
      const double sum = static_cast<double>(_mm512_reduce_add_ps(acc[t])) - a.offset[tokens[t]];
      out[static_cast<size_t>(tokens[t]) * w.rows + n] = static_cast<float>(w.LutScale(bits[t], n) * sum);
    }
  }
}

using FixedRowsKernel = void (*)(const Int8Activations&, const BitplaneView&, const int*, const int*, int, int, float*);
constexpr FixedRowsKernel kRowsKernels[kPassTokens + 1] = {nullptr,  &FixedRows<1>, &FixedRows<2>, &FixedRows<3>, &FixedRows<4>,
                                                            &FixedRows<5>, &FixedRows<6>, &FixedRows<7>, &FixedRows<8>};

// The batched schedule: kGemmRows weight rows decoded to u8 at one width into a buffer, then
// tiles of up to kGemmRows rows by kGemmTokens tokens, whose 12 accumulators, the tokens'
// activations of one block and the row being read fit the 32 registers.
constexpr int kGemmRows = 4;
constexpr int kGemmTokens = 3;

// The u8 weights of `rows` rows from row n at width `bits`, each padded_cols long.
ANYPREC_AVX512_INT8 void DecodeRows(const BitplaneView& w, int bits, int n, int rows, size_t padded_cols, uint8_t* out) {
  for (int r = 0; r < rows; ++r) {
    const uint8_t* row_planes = w.planes + static_cast<size_t>(n + r) * w.row_stride;
    const uint8_t* lut = w.LutU8(bits, n + r);
    for (size_t block = 0; block < padded_cols / kInt8Block; ++block) {
      __m512i low, high;
      Indices(row_planes, w.plane_stride, block, bits, low, high);
      _mm512_storeu_si512(out + r * padded_cols + block * kInt8Block, Weights(low, bits, bits, lut));
      _mm512_storeu_si512(out + r * padded_cols + block * kInt8Block + 64, Weights(high, bits, bits, lut));
    }
  }
}

// sums[r][t] = sum over blocks of scale(t, block) * (decoded row r . activations of token t),
// for kRows rows of `weights` and kTokens tokens.
template <int kRows, int kTokens>
ANYPREC_AVX512_INT8 void GemmTile(const uint8_t* weights, const Int8Activations& a, const int* tokens, float sums[kGemmRows][kGemmTokens]) {
  const size_t blocks = a.padded_cols / kInt8Block;
  const int8_t* x[kTokens];
  const float* scales[kTokens];
  for (int t = 0; t < kTokens; ++t) {
    x[t] = a.Row(tokens[t]);
    scales[t] = a.Scales(tokens[t]);
  }
  __m512 acc[kRows][kTokens];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (size_t block = 0; block < blocks; ++block) {
    __m512i low[kTokens], high[kTokens];
    __m512 scale[kTokens];
    for (int t = 0; t < kTokens; ++t) {
      low[t] = _mm512_loadu_si512(x[t] + block * kInt8Block);
      high[t] = _mm512_loadu_si512(x[t] + block * kInt8Block + 64);
      scale[t] = _mm512_set1_ps(scales[t][block]);
    }
    for (int r = 0; r < kRows; ++r) {
      const uint8_t* row = weights + r * a.padded_cols + block * kInt8Block;
      const __m512i w_low = _mm512_loadu_si512(row), w_high = _mm512_loadu_si512(row + 64);
      for (int t = 0; t < kTokens; ++t) {
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w_low, low[t]), w_high, high[t]);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale[t], acc[r][t]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) sums[r][t] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

constexpr GemmPieces<kGemmRows, kGemmTokens> kGemm = {&DecodeRows,
                                                      {{&GemmTile<1, 1>, &GemmTile<1, 2>, &GemmTile<1, 3>},
                                                       {&GemmTile<2, 1>, &GemmTile<2, 2>, &GemmTile<2, 3>},
                                                       {&GemmTile<3, 1>, &GemmTile<3, 2>, &GemmTile<3, 3>},
                                                       {&GemmTile<4, 1>, &GemmTile<4, 2>, &GemmTile<4, 3>}},
                                                      true};

}  // namespace

void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out) {
  RunGemm(kGemm, a, w, tokens, bits, count, row_begin, row_end, out);
}

ANYPREC_AVX512_INT8 void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count,
                              int row_begin, int row_end, float* out) {
  kRowsKernels[count](a, w, tokens, bits, row_begin, row_end, out);
}

}  // namespace anyprec::cpu::int8::avx512_vbmi
