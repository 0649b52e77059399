// The per-instruction-set bodies of BitplaneMatMulInt8, which engine/cpu/bitplane_int8.cc
// dispatches to. Each computes output rows [row_begin, row_end) of `count` (for Rows, at
// most its kPassTokens) token rows whose widths bits[0..count) ascend; tokens[i] indexes the
// activations and the output [tokens][w.rows] of the i-th. The AVX-512 kernel reads
// activations in ActivationOrder::kNatural, the AVX2 and NEON ones in kBitSliced, padded to
// whole 256-column tiles. Only the kernels of the target's architecture are compiled.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/cpu/bitplane_view.h"
#include "engine/cpu/ops.h"

namespace anyprec::cpu::int8 {

using RowsKernel = void (*)(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count,
                            int row_begin, int row_end, float* out);

// Calls fn(first, last) for each run [first, last) of one width in bits[0..count), which
// ascend: the token rows that share one decode of the weights.
template <typename Fn>
void ForEachWidth(const int* bits, int count, const Fn& fn) {
  for (int first = 0, last; first < count; first = last) {
    for (last = first + 1; last < count && bits[last] == bits[first];) ++last;
    fn(first, last);
  }
}

// What each instruction set brings to the batched schedule's loop (RunGemm). decode writes
// the int8 weights of `rows` rows from row n at width `bits` to `out`, each row padded_cols
// long in the order of the activations. tiles[r - 1][t - 1] meets r such rows with t token
// rows of their width: sums[i][j] = sum over blocks of the block's activation scale times
// the integer dot product of row i with token j. Over u8 tables (u8_tables), the sums still
// hold the +128 offset that Int8Activations::offset takes back out.
template <int kRows, int kTokens>
struct GemmPieces {
  using Decode = void (*)(const BitplaneView& w, int bits, int n, int rows, size_t padded_cols, uint8_t* out);
  using Tile = void (*)(const uint8_t* weights, const Int8Activations& a, const int* tokens, float sums[kRows][kTokens]);
  Decode decode;
  Tile tiles[kRows][kTokens];
  bool u8_tables;
};

// The batched schedule, for a Gemm: per kRows weight rows and per width in the batch, the
// rows are decoded once into a buffer that stays in cache, then met by every token row of
// that width, kTokens at a time.
template <int kRows, int kTokens>
void RunGemm(const GemmPieces<kRows, kTokens>& pieces, const Int8Activations& a, const BitplaneView& w, const int* tokens,
             const int* bits, int count, int row_begin, int row_end, float* out) {
  thread_local std::vector<uint8_t> decoded;
  decoded.resize(kRows * a.padded_cols);
  for (int n = row_begin; n < row_end; n += kRows) {
    const int rows = std::min(kRows, row_end - n);
    ForEachWidth(bits, count, [&](int first, int last) {
      const int b = bits[first];
      pieces.decode(w, b, n, rows, a.padded_cols, decoded.data());
      for (int t = first; t < last; t += kTokens) {
        const int group = std::min(kTokens, last - t);
        float sums[kRows][kTokens];
        pieces.tiles[rows - 1][group - 1](decoded.data(), a, tokens + t, sums);
        for (int r = 0; r < rows; ++r) {
          for (int i = 0; i < group; ++i) {
            const int token = tokens[t + i];
            const double sum = static_cast<double>(sums[r][i]) - (pieces.u8_tables ? a.offset[token] : 0.0);
            out[static_cast<size_t>(token) * w.rows + n + r] = static_cast<float>(w.LutScale(b, n + r) * sum);
          }
        }
      }
    });
  }
}

// Gemm, the batched schedule (ops.h, Int8Schedule), has the contract of Rows for any count
// of token rows. The AVX-512 kernel also has the per-token schedule, Rows, whose passes of
// kPassTokens tokens keep one accumulator per token in a register; from kBatchedFromTokens
// token rows on Gemm is the faster (measured with anyprec-bench-kernels --schedules). The
// AVX2 kernels have only Gemm, which was the faster at every batch size.
namespace avx512_vbmi {
constexpr int kPassTokens = 8;
constexpr int kBatchedFromTokens = 6;
void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}  // namespace avx512_vbmi
namespace avx2 {
void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}  // namespace avx2
namespace avx2_vnni {
void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}  // namespace avx2_vnni
// The NEON kernel has both too, its passes keeping their accumulators in memory. Its
// crossover is unmeasured, for want of ARM hardware: 4 is what the AVX-512 kernel measured
// before its index assembly became a bit transpose, when its schedules had the same shape (per token, each block decoded in registers for a pass;
// batched, a buffer of 4 rows met by a register tile of a few tokens).
namespace neon_dotprod {
constexpr int kPassTokens = 16;
constexpr int kBatchedFromTokens = 4;
void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
void Gemm(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}  // namespace neon_dotprod

}  // namespace anyprec::cpu::int8
