// The integer bitplane-LUT kernel for x86 CPUs with AVX-512 VBMI and VNNI. Per row and per
// 64 columns: one 64-bit word per plane becomes 64 byte-indices (a mask load and a masked
// add per plane), one byte permute looks up the row's int8 LUT (vpermb; vpermt2b for 7 and
// 8 bits), and vpdpbusd multiplies the 64 u8 weights with 64 int8 activations of every
// token that wants that width. Highway 1.0 has neither byte permutes across the vector nor vpdpbusd, hence
// intrinsics, compiled for this target only and chosen at run time.
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 headers (the "undefined" source of a masked intrinsic,
// which _mm512_reduce_add_ps uses).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "engine/cpu/int8_kernels.h"

namespace anyprec::cpu::int8::avx512_vbmi {
namespace {

#define ANYPREC_AVX512_INT8 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni")))

ANYPREC_AVX512_INT8 inline __mmask64 LoadMask(const uint8_t* word) {
  uint64_t bits;
  __builtin_memcpy(&bits, word, 8);
  return _cvtu64_mask64(bits);
}

// 64 byte-indices of `bits` width from the planes of one row, columns [64c, 64c + 64).
// Each plane's 64 bits load straight into a mask register; a set bit adds one to the
// doubled index.
ANYPREC_AVX512_INT8 inline __m512i Indices(const uint8_t* row_planes, size_t plane_stride, size_t c, int bits) {
  const __m512i one = _mm512_set1_epi8(1);
  const uint8_t* word = row_planes + c * 8;
  if (c % 8 == 0) _mm_prefetch(reinterpret_cast<const char*>(word) + 2048, _MM_HINT_T0);
  __m512i index = _mm512_maskz_mov_epi8(LoadMask(word), one);
  for (int p = 1; p < bits; ++p) {
    word += plane_stride;
    if (c % 8 == 0) _mm_prefetch(reinterpret_cast<const char*>(word) + 2048, _MM_HINT_T0);
    const __m512i doubled = _mm512_add_epi8(index, index);
    index = _mm512_mask_add_epi8(doubled, LoadMask(word), doubled, one);
  }
  return index;
}

// The u8 weights for 64 columns: the top `bits` of the `widest`-bit indices, looked up in
// the row's int8 LUT (read from L1 by the permute).
ANYPREC_AVX512_INT8 inline __m512i Weights(__m512i index, int widest, int bits, const uint8_t* lut) {
  const int shift = widest - bits;
  if (shift > 0) index = _mm512_and_si512(_mm512_srli_epi16(index, shift), _mm512_set1_epi8(static_cast<char>(0xFF >> shift)));
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
      const __m512i index_low = Indices(row_planes, w.plane_stride, 2 * block, widest);
      const __m512i index_high = Indices(row_planes, w.plane_stride, 2 * block + 1, widest);
      __m512i low = _mm512_setzero_si512();
      __m512i high = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int t = 0; t < kTokens; ++t) {
        if (t == 0 || bits[t] != bits[t - 1]) {
          low = Weights(index_low, widest, bits[t], lut[t]);
          high = Weights(index_high, widest, bits[t], lut[t]);
        }
        const int8_t* x = a.values.data() + tokens[t] * a.padded_cols + block * kInt8Block;
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), low, _mm512_loadu_si512(x)), high,
                                                _mm512_loadu_si512(x + 64));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(a.scales[tokens[t] * blocks + block]), acc[t]);
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
    for (size_t c = 0; c < padded_cols / 64; ++c) {
      _mm512_storeu_si512(out + r * padded_cols + c * 64, Weights(Indices(row_planes, w.plane_stride, c, bits), bits, bits, lut));
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
    x[t] = a.values.data() + tokens[t] * a.padded_cols;
    scales[t] = a.scales.data() + tokens[t] * blocks;
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
