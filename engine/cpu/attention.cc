// Attention over the paged KV cache with Highway: per token row and head, the scores are dot
// products of q with each cached key, then the softmax, then the weighted sum of the cached
// values. Keys and values of 16 bits are widened to fp32 in registers as they are loaded,
// so the cache is read once at half the bytes.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "engine/cpu/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/model/half_float.h"

HWY_BEFORE_NAMESPACE();
namespace anyprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <typename T>
float Widen(T x) {
  if constexpr (std::is_same_v<T, float>) return x;
  // Bit casts: Highway's float16_t is a struct on x86 and the native __fp16 on ARM.
  if constexpr (std::is_same_v<T, hwy::bfloat16_t>) return BF16ToF32(std::bit_cast<uint16_t>(x));
  if constexpr (std::is_same_v<T, hwy::float16_t>) return F16ToF32(std::bit_cast<uint16_t>(x));
}

// Lanes(d) elements of T from p, as fp32.
template <class D, typename T>
hn::Vec<D> LoadWidened(D d, const T* HWY_RESTRICT p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(d, p);
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, D>(), p));
  }
}

template <typename T>
float Dot(const float* HWY_RESTRICT q, const T* HWY_RESTRICT k, int n) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  auto acc = hn::Zero(d);
  int i = 0;
  for (; i + lanes <= n; i += lanes) acc = hn::MulAdd(hn::LoadU(d, q + i), LoadWidened(d, k + i), acc);
  float sum = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; i < n; ++i) sum += q[i] * Widen(k[i]);
  return sum;
}

// acc += weight * v over n elements.
template <typename T>
void AddScaled(float weight, const T* HWY_RESTRICT v, float* HWY_RESTRICT acc, int n) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const auto w = hn::Set(d, weight);
  int i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::MulAdd(w, LoadWidened(d, v + i), hn::LoadU(d, acc + i)), d, acc + i);
  for (; i < n; ++i) acc[i] += weight * Widen(v[i]);
}

template <typename T>
void AttentionOf(std::span<const float> q, std::span<const int> positions, const KvLayerView& cache, const AttentionShape& shape,
                 std::span<float> out) {
  const int hd = shape.head_dim;
  const int group = shape.num_heads / shape.num_kv_heads;
  const size_t q_width = static_cast<size_t>(shape.num_heads) * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int tokens = static_cast<int>(positions.size());
  const int work = tokens * shape.num_heads;
  // Waking the other cores costs more than a short context's few thousand multiply-adds,
  // and their spin-wait afterwards takes cores from the threads serving requests.
  long multiply_adds = 0;
  for (const int p : positions) multiply_adds += 2l * (p + 1 - shape.FirstSeen(p)) * hd * shape.num_heads;
#pragma omp parallel if (multiply_adds >= (1l << 18))
  {
    std::vector<float> scores;
    std::vector<float> acc(hd);
#pragma omp for schedule(dynamic, 4)
    for (int item = 0; item < work; ++item) {
      const int t = item / shape.num_heads;
      const int h = item % shape.num_heads;
      const size_t kv_offset = static_cast<size_t>(h / group) * hd;
      const float* qv = q.data() + t * q_width + static_cast<size_t>(h) * hd;
      const int first = shape.FirstSeen(positions[t]);
      const int length = positions[t] + 1 - first;
      scores.resize(length);
      float max_score = -INFINITY;
      for (int p = 0; p < length; ++p) {
        scores[p] = Dot(qv, cache.key<T>(first + p) + kv_offset, hd) * scale;
        max_score = std::max(max_score, scores[p]);
      }
      const float total = ExpShiftedAndSum(scores, max_score);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int p = 0; p < length; ++p) AddScaled(scores[p], cache.value<T>(first + p) + kv_offset, acc.data(), hd);
      float* o = out.data() + t * q_width + static_cast<size_t>(h) * hd;
      for (int i = 0; i < hd; ++i) o[i] = acc[i] / total;
    }
  }
}

void Attention(std::span<const float> q, std::span<const int> positions, const KvLayerView& cache, const AttentionShape& shape,
               std::span<float> out) {
  switch (cache.dtype) {
    case KvDType::kF32: return AttentionOf<float>(q, positions, cache, shape, out);
    case KvDType::kBF16: return AttentionOf<hwy::bfloat16_t>(q, positions, cache, shape, out);
    case KvDType::kF16: return AttentionOf<hwy::float16_t>(q, positions, cache, shape, out);
  }
}

}  // namespace anyprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace anyprec::cpu {

HWY_EXPORT(Attention);

void Attention(std::span<const float> q, std::span<const int> positions, const KvLayerView& cache, const AttentionShape& shape,
               std::span<float> out) {
  HWY_DYNAMIC_DISPATCH(Attention)(q, positions, cache, shape, out);
}

}  // namespace anyprec::cpu
#endif
