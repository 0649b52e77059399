// A random KV cache of one layer, both contiguous (what the reference attention reads) and
// paged into shuffled blocks of 8 positions (what the fast kernels read, as the server's
// pool hands blocks out). Shared by the CPU and CUDA attention tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/cpu/kv_layer_view.h"

namespace anyprec::testing {

struct PagedCache {
  static constexpr int kCapacity = 40;
  static constexpr int kBlockTokens = 8;

  PagedCache(int kv_width, std::mt19937& rng)
      : row_width(kv_width), keys(Random(rng)), values(Random(rng)), paged_keys(keys.size(), NAN), paged_values(values.size(), NAN) {
    for (int p = 0; p < kCapacity; ++p) {
      const size_t to = blocks[p / kBlockTokens] * block_stride() + static_cast<size_t>(p % kBlockTokens) * row_width;
      std::copy_n(keys.begin() + static_cast<size_t>(p) * row_width, row_width, paged_keys.begin() + to);
      std::copy_n(values.begin() + static_cast<size_t>(p) * row_width, row_width, paged_values.begin() + to);
    }
  }
  size_t block_stride() const { return static_cast<size_t>(kBlockTokens) * row_width; }
  cpu::KvLayerView contiguous() const { return {keys.data(), values.data(), 0, kCapacity, row_width, whole}; }
  cpu::KvLayerView paged() const { return {paged_keys.data(), paged_values.data(), block_stride(), kBlockTokens, row_width, blocks}; }

  int row_width;
  std::vector<float> keys;
  std::vector<float> values;
  std::vector<float> paged_keys;
  std::vector<float> paged_values;
  std::vector<int> blocks{3, 0, 4, 2, 1};
  std::vector<int> whole{0};

 private:
  std::vector<float> Random(std::mt19937& rng) const {
    std::normal_distribution<float> value(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(kCapacity) * row_width);
    for (float& x : v) x = value(rng);
    return v;
  }
};

// Prefill from position 0, a decode at the last position, and a chunk in between.
inline const std::vector<std::vector<int>>& AttentionPositions() {
  static const std::vector<std::vector<int>> positions = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {PagedCache::kCapacity - 1}, {17, 18}};
  return positions;
}

}  // namespace anyprec::testing
