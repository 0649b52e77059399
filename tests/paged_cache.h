// A random KV cache of one layer, both contiguous in fp32 (what the reference attention
// reads) and paged into shuffled blocks of 8 positions (what the fast kernels read, as the
// server's pool hands blocks out), in fp32 or 16 bits. Shared by the CPU and CUDA attention
// tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <random>
#include <vector>

#include "engine/cpu/kv_layer_view.h"
#include "engine/model/half_float.h"

namespace anyprec::testing {

struct PagedCache {
  static constexpr int kCapacity = 40;
  static constexpr int kBlockTokens = 8;

  // Values of `dtype`: the contiguous fp32 copy holds them exactly, the paged one as dtype.
  PagedCache(int kv_width, std::mt19937& rng, cpu::KvDType dtype = cpu::KvDType::kF32)
      : row_width(kv_width), dtype(dtype), keys(Random(rng)), values(Random(rng)), paged_keys(keys.size(), NAN), paged_values(values.size(), NAN) {
    for (int p = 0; p < kCapacity; ++p) {
      const size_t to = blocks[p / kBlockTokens] * block_stride() + static_cast<size_t>(p % kBlockTokens) * row_width;
      std::copy_n(keys.begin() + static_cast<size_t>(p) * row_width, row_width, paged_keys.begin() + to);
      std::copy_n(values.begin() + static_cast<size_t>(p) * row_width, row_width, paged_values.begin() + to);
    }
    if (dtype == cpu::KvDType::kF32) return;
    std::transform(paged_keys.begin(), paged_keys.end(), std::back_inserter(paged_keys16), [this](float x) { return To16(x); });
    std::transform(paged_values.begin(), paged_values.end(), std::back_inserter(paged_values16), [this](float x) { return To16(x); });
  }
  size_t block_stride() const { return static_cast<size_t>(kBlockTokens) * row_width; }
  cpu::KvLayerView contiguous() const { return {keys.data(), values.data(), 0, kCapacity, row_width, whole}; }
  cpu::KvLayerView paged() const {
    if (dtype == cpu::KvDType::kF32) return {paged_keys.data(), paged_values.data(), block_stride(), kBlockTokens, row_width, blocks};
    return {paged_keys16.data(), paged_values16.data(), block_stride(), kBlockTokens, row_width, blocks, dtype};
  }

  int row_width;
  cpu::KvDType dtype;
  std::vector<float> keys;
  std::vector<float> values;
  std::vector<float> paged_keys;
  std::vector<float> paged_values;
  std::vector<uint16_t> paged_keys16;  // the paged rows (NaN paddings too) as the 16-bit dtype; empty for fp32
  std::vector<uint16_t> paged_values16;
  std::vector<int> blocks{3, 0, 4, 2, 1};
  std::vector<int> whole{0};

 private:
  uint16_t To16(float x) const { return dtype == cpu::KvDType::kBF16 ? F32ToBF16(x) : F32ToF16(x); }
  float Representable(float x) const {
    switch (dtype) {
      case cpu::KvDType::kF32: return x;
      case cpu::KvDType::kBF16: return BF16ToF32(F32ToBF16(x));
      case cpu::KvDType::kF16: return F16ToF32(F32ToF16(x));
    }
    return x;
  }
  std::vector<float> Random(std::mt19937& rng) const {
    std::normal_distribution<float> value(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(kCapacity) * row_width);
    for (float& x : v) x = Representable(value(rng));
    return v;
  }
};

// Prefill from position 0, a decode at the last position, and a chunk in between.
inline const std::vector<std::vector<int>>& AttentionPositions() {
  static const std::vector<std::vector<int>> positions = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {PagedCache::kCapacity - 1}, {17, 18}};
  return positions;
}

}  // namespace anyprec::testing
