// The exponentials of attention's softmax, vectorized with Highway: at long contexts they,
// not the dot products, dominate attention on the CPU.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "engine/cpu/softmax.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

#include <cmath>
#include <span>

#include "engine/cpu/ops.h"

HWY_BEFORE_NAMESPACE();
namespace anyprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float ExpShiftedAndSum(float* HWY_RESTRICT x, int n, float shift) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const auto shift_v = hn::Set(d, shift);
  auto sum_v = hn::Zero(d);
  int i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), shift_v));
    hn::StoreU(e, d, x + i);
    sum_v = hn::Add(sum_v, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, sum_v));
  for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - shift));
  return sum;
}

}  // namespace anyprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace anyprec::cpu {

HWY_EXPORT(ExpShiftedAndSum);

float ExpShiftedAndSum(std::span<float> x, float shift) {
  return HWY_DYNAMIC_DISPATCH(ExpShiftedAndSum)(x.data(), static_cast<int>(x.size()), shift);
}

}  // namespace anyprec::cpu
#endif
