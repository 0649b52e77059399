// Bitplane-LUT GEMV/GEMM with Highway. For each row and each chunk of L columns (L = float
// lanes), the indices are assembled from the chunk's bit in each plane (one mask load per
// plane), then looked up in the row's LUT of each width the batch asks for: a lane permute
// when the table fits in one vector, a gather otherwise. The looked-up weights are reused by
// every token row that wants that width.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "engine/cpu/bitplane_matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/cpu/row_blocks.h"

// This file is compiled once per SIMD target; target-independent declarations go here once.
#ifndef ANYPREC_ENGINE_CPU_BITPLANE_MATMUL_ONCE
#define ANYPREC_ENGINE_CPU_BITPLANE_MATMUL_ONCE
namespace anyprec::cpu {

// Token rows grouped by width, so that each width's lookups are done once per chunk.
struct WidthGroups {
  static constexpr int kMaxTokensPerPass = 8;
  int max_bits = 0;
  std::vector<int> widths;                 // distinct widths, ascending
  std::vector<std::vector<int>> tokens;    // tokens[g]: token rows of widths[g]
};

}  // namespace anyprec::cpu
#endif

HWY_BEFORE_NAMESPACE();
namespace anyprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows [row_begin, row_end) for the tokens of one pass (at most kMaxTokensPerPass).
// `x` is [tokens][padded_cols], zero beyond cols.
void BitplaneRows(const float* HWY_RESTRICT x, size_t padded_cols, const BitplaneView& w, const WidthGroups& groups,
                  int row_begin, int row_end, float* HWY_RESTRICT out, int out_stride) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  using VF = decltype(hn::Zero(d));
  constexpr size_t kLanes = hn::MaxLanes(d);
  if constexpr (kLanes < 8) {
    // Mask loads need whole bytes of plane bits; narrow targets take the reference path.
    for (size_t g = 0; g < groups.widths.size(); ++g) {
      for (int t : groups.tokens[g]) {
        for (int n = row_begin; n < row_end; ++n) {
          const float* lut = w.Lut(groups.widths[g], n);
          float sum = 0;
          for (int k = 0; k < w.cols; ++k) sum += lut[w.Index(n, k, groups.widths[g])] * x[static_cast<size_t>(t) * padded_cols + k];
          out[static_cast<size_t>(t) * out_stride + n] = sum;
        }
      }
    }
  } else {
    const auto one = hn::Set(di, 1);
    const int bmax = groups.max_bits;
    const size_t num_groups = groups.widths.size();
    for (int n = row_begin; n < row_end; ++n) {
      std::array<VF, WidthGroups::kMaxTokensPerPass> acc;
      for (auto& a : acc) a = hn::Zero(d);
      // Tables that fit in one vector are held in registers for the whole row.
      std::array<VF, WidthGroups::kMaxTokensPerPass> table;
      HWY_ALIGN float padded_lut[kLanes];
      for (size_t g = 0; g < num_groups; ++g) {
        const int b = groups.widths[g];
        if ((size_t{1} << b) <= kLanes) {
          std::fill(padded_lut, padded_lut + kLanes, 0.0f);
          std::memcpy(padded_lut, w.Lut(b, n), sizeof(float) << b);
          table[g] = hn::Load(d, padded_lut);
        }
      }
      const uint8_t* row_planes = w.planes + static_cast<size_t>(n) * w.row_stride;
      for (size_t k = 0; k < padded_cols; k += kLanes) {
        auto index = hn::Zero(di);
        for (int p = 0; p < bmax; ++p) {
          const auto bit = hn::LoadMaskBits(di, row_planes + p * w.plane_stride + k / 8);
          index = hn::Add(hn::Add(index, index), hn::IfThenElseZero(bit, one));
        }
        int slot = 0;
        for (size_t g = 0; g < num_groups; ++g) {
          const int b = groups.widths[g];
          const auto own = hn::ShiftRightSame(index, bmax - b);
          const VF weights = (size_t{1} << b) <= kLanes ? hn::TableLookupLanes(table[g], hn::IndicesFromVec(d, own))
                                                        : hn::GatherIndex(d, w.Lut(b, n), own);
          for (int t : groups.tokens[g]) {
            acc[slot] = hn::MulAdd(weights, hn::LoadU(d, x + static_cast<size_t>(t) * padded_cols + k), acc[slot]);
            ++slot;
          }
        }
      }
      int slot = 0;
      for (size_t g = 0; g < num_groups; ++g) {
        for (int t : groups.tokens[g]) out[static_cast<size_t>(t) * out_stride + n] = hn::GetLane(hn::SumOfLanes(d, acc[slot++]));
      }
    }
  }
}

}  // namespace anyprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace anyprec::cpu {

HWY_EXPORT(BitplaneRows);

void BitplaneMatMul(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out) {
  const int tokens = static_cast<int>(bits.size());
  const size_t padded_cols = w.row_stride * 8;
  std::vector<float> padded(static_cast<size_t>(tokens) * padded_cols, 0.0f);
  for (int t = 0; t < tokens; ++t) std::memcpy(&padded[t * padded_cols], &x[static_cast<size_t>(t) * w.cols], sizeof(float) * w.cols);

  // Passes of at most kMaxTokensPerPass token rows; each pass groups its rows by width.
  std::vector<WidthGroups> passes;
  for (int first = 0; first < tokens; first += WidthGroups::kMaxTokensPerPass) {
    WidthGroups& pass = passes.emplace_back();
    const int last = std::min(tokens, first + WidthGroups::kMaxTokensPerPass);
    for (int t = first; t < last; ++t) {
      const auto it = std::lower_bound(pass.widths.begin(), pass.widths.end(), bits[t]);
      const size_t g = it - pass.widths.begin();
      if (it == pass.widths.end() || *it != bits[t]) {
        pass.widths.insert(it, bits[t]);
        pass.tokens.insert(pass.tokens.begin() + g, std::vector<int>());
      }
      pass.tokens[g].push_back(t);
      pass.max_bits = std::max(pass.max_bits, bits[t]);
    }
  }

  ForEachRowBlock(w.rows, static_cast<long>(w.rows) * w.cols * tokens, [&](int begin, int end) {
    for (const WidthGroups& pass : passes) {
      HWY_DYNAMIC_DISPATCH(BitplaneRows)(padded.data(), padded_cols, w, pass, begin, end, out.data(), w.rows);
    }
  });
}

}  // namespace anyprec::cpu
#endif
