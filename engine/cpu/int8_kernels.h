// The per-instruction-set bodies of BitplaneMatMulInt8, which engine/cpu/bitplane_int8.cc
// dispatches to. Each computes output rows [row_begin, row_end) of `count` (at most its
// kPassTokens) token rows whose widths bits[0..count) ascend; tokens[i] indexes the
// activations and the output [tokens][w.rows] of the i-th. The AVX-512 kernel reads
// activations in ActivationOrder::kNatural, the AVX2 ones in kBitSliced, padded to whole
// 256-column tiles.
#pragma once

#include "engine/cpu/bitplane_view.h"
#include "engine/cpu/ops.h"

namespace anyprec::cpu::int8 {

using RowsKernel = void (*)(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count,
                            int row_begin, int row_end, float* out);

// Tokens per pass: each pass decodes every weight it reads once for all its tokens. The
// AVX-512 kernel keeps one accumulator per token in a register; the AVX2 ones keep them in
// memory, so their passes can be longer.
namespace avx512_vbmi {
constexpr int kPassTokens = 8;
void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}
namespace avx2 {
constexpr int kPassTokens = 16;
void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}
namespace avx2_vnni {
constexpr int kPassTokens = avx2::kPassTokens;
void Rows(const Int8Activations& a, const BitplaneView& w, const int* tokens, const int* bits, int count, int row_begin, int row_end,
          float* out);
}

}  // namespace anyprec::cpu::int8
