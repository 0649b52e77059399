// MatMul with Highway: four weight rows at a time share each load of an activation row,
// and blocks of rows are spread over the cores. Int8MatMul widens each int8 weight to fp32 in
// registers for a few token rows, and for more widens each block of rows once into a buffer
// that stays in cache while every token row meets it.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "engine/cpu/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/cpu/row_blocks.h"

HWY_BEFORE_NAMESPACE();
namespace anyprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// out[t, n] for n in [row_begin, row_end), all t, with `w` pointing at row row_begin.
void MatMulRows(const float* HWY_RESTRICT x, int tokens, const float* HWY_RESTRICT w, int rows, int cols,
                int row_begin, int row_end, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int vector_cols = cols - cols % lanes;
  int n = row_begin;
  for (; n + 4 <= row_end; n += 4) {
    const float* w0 = w + static_cast<size_t>(n - row_begin) * cols;
    const float* w1 = w0 + cols;
    const float* w2 = w1 + cols;
    const float* w3 = w2 + cols;
    for (int t = 0; t < tokens; ++t) {
      const float* xt = x + static_cast<size_t>(t) * cols;
      auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
      for (int k = 0; k < vector_cols; k += lanes) {
        const auto xv = hn::LoadU(d, xt + k);
        a0 = hn::MulAdd(xv, hn::LoadU(d, w0 + k), a0);
        a1 = hn::MulAdd(xv, hn::LoadU(d, w1 + k), a1);
        a2 = hn::MulAdd(xv, hn::LoadU(d, w2 + k), a2);
        a3 = hn::MulAdd(xv, hn::LoadU(d, w3 + k), a3);
      }
      float s0 = hn::GetLane(hn::SumOfLanes(d, a0)), s1 = hn::GetLane(hn::SumOfLanes(d, a1)), s2 = hn::GetLane(hn::SumOfLanes(d, a2)), s3 = hn::GetLane(hn::SumOfLanes(d, a3));
      for (int k = vector_cols; k < cols; ++k) {
        s0 += xt[k] * w0[k];
        s1 += xt[k] * w1[k];
        s2 += xt[k] * w2[k];
        s3 += xt[k] * w3[k];
      }
      float* o = out + static_cast<size_t>(t) * rows + n;
      o[0] = s0;
      o[1] = s1;
      o[2] = s2;
      o[3] = s3;
    }
  }
  for (; n < row_end; ++n) {
    const float* wn = w + static_cast<size_t>(n - row_begin) * cols;
    for (int t = 0; t < tokens; ++t) {
      const float* xt = x + static_cast<size_t>(t) * cols;
      auto acc = hn::Zero(d);
      for (int k = 0; k < vector_cols; k += lanes) acc = hn::MulAdd(hn::LoadU(d, xt + k), hn::LoadU(d, wn + k), acc);
      float s = hn::GetLane(hn::SumOfLanes(d, acc));
      for (int k = vector_cols; k < cols; ++k) s += xt[k] * wn[k];
      out[static_cast<size_t>(t) * rows + n] = s;
    }
  }
}

// out[t, n] = scales[n] * sum_k q[n, k] * x[t, k] for n in [row_begin, row_end): each row
// widened in registers for every token row, which for a few tokens costs less than writing
// it out widened and reading it back.
void Int8MatMulRows(const float* HWY_RESTRICT x, int tokens, const int8_t* HWY_RESTRICT q, const float* HWY_RESTRICT scales, int rows,
                    int cols, int row_begin, int row_end, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<int32_t, decltype(d)> di;
  const hn::Rebind<int8_t, decltype(d)> d8;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int vector_cols = cols - cols % lanes;
  for (int n = row_begin; n < row_end; ++n) {
    const int8_t* row = q + static_cast<size_t>(n) * cols;
    for (int t = 0; t < tokens; ++t) {
      const float* xt = x + static_cast<size_t>(t) * cols;
      auto acc = hn::Zero(d);
      for (int k = 0; k < vector_cols; k += lanes) {
        acc = hn::MulAdd(hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(d8, row + k))), hn::LoadU(d, xt + k), acc);
      }
      float sum = hn::GetLane(hn::SumOfLanes(d, acc));
      for (int k = vector_cols; k < cols; ++k) sum += row[k] * xt[k];
      out[static_cast<size_t>(t) * rows + n] = scales[n] * sum;
    }
  }
}

// out[i] = scales[i / cols] * q[i] over `rows` rows of `cols`.
void WidenInt8Rows(const int8_t* HWY_RESTRICT q, const float* HWY_RESTRICT scales, int rows, int cols, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<int32_t, decltype(d)> di;
  const hn::Rebind<int8_t, decltype(d)> d8;
  const int lanes = static_cast<int>(hn::Lanes(d));
  for (int r = 0; r < rows; ++r) {
    const int8_t* row = q + static_cast<size_t>(r) * cols;
    float* o = out + static_cast<size_t>(r) * cols;
    const auto scale = hn::Set(d, scales[r]);
    int k = 0;
    for (; k + lanes <= cols; k += lanes) {
      hn::StoreU(hn::Mul(hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(d8, row + k))), scale), d, o + k);
    }
    for (; k < cols; ++k) o[k] = scales[r] * row[k];
  }
}

}  // namespace anyprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace anyprec::cpu {

HWY_EXPORT(MatMulRows);
HWY_EXPORT(WidenInt8Rows);
HWY_EXPORT(Int8MatMulRows);

void MatMul(std::span<const float> x, int tokens, std::span<const float> w, int rows, int cols, std::span<float> out) {
  ForEachRowBlock(rows, static_cast<long>(tokens) * rows * cols, [&](int begin, int end) {
    HWY_DYNAMIC_DISPATCH(MatMulRows)(x.data(), tokens, w.data() + static_cast<size_t>(begin) * cols, rows, cols, begin, end, out.data());
  });
}

void Int8MatMul(std::span<const float> x, int tokens, std::span<const int8_t> q, std::span<const float> scales, int rows, int cols,
                std::span<float> out) {
  // A block of rows widened once pays off from a few token rows on (measured: decode reads
  // the head once per token, prefill of all logits hundreds of times).
  constexpr int kWidenFromTokens = 4;
  if (tokens < kWidenFromTokens) {
    ForEachRowBlock(rows, static_cast<long>(tokens) * rows * cols, [&](int begin, int end) {
      HWY_DYNAMIC_DISPATCH(Int8MatMulRows)(x.data(), tokens, q.data(), scales.data(), rows, cols, begin, end, out.data());
    });
    return;
  }
  ForEachRowBlock(rows, static_cast<long>(tokens) * rows * cols, [&](int begin, int end) {
    thread_local std::vector<float> widened;
    widened.resize(static_cast<size_t>(end - begin) * cols);
    HWY_DYNAMIC_DISPATCH(WidenInt8Rows)(q.data() + static_cast<size_t>(begin) * cols, scales.data() + begin, end - begin, cols,
                                        widened.data());
    HWY_DYNAMIC_DISPATCH(MatMulRows)(x.data(), tokens, widened.data(), rows, cols, begin, end, out.data());
  });
}

}  // namespace anyprec::cpu
#endif
