#include "engine/runtime/kv_cache.h"

#include <algorithm>
#include <numeric>

namespace anyprec {

KvBlockPool::KvBlockPool(const ModelConfig& config, int block_tokens, int num_blocks)
    : block_tokens_(block_tokens),
      num_blocks_(num_blocks),
      row_width_(config.kv_dim()),
      keys_(std::make_unique_for_overwrite<float[]>(static_cast<size_t>(config.num_layers) * num_blocks * block_tokens * row_width_)),
      values_(std::make_unique_for_overwrite<float[]>(static_cast<size_t>(config.num_layers) * num_blocks * block_tokens * row_width_)),
      free_(num_blocks) {
  // Highest id at the bottom of the stack, so blocks go out in ascending order.
  std::iota(free_.rbegin(), free_.rend(), 0);
}

int KvBlockPool::Allocate() {
  if (free_.empty()) return -1;
  const int block = free_.back();
  free_.pop_back();
  return block;
}

void KvBlockPool::Free(int block) { free_.push_back(block); }

KvCache::KvCache(const ModelConfig& config, int capacity)
    : own_pool_(std::make_unique<KvBlockPool>(config, std::max(capacity, 1), 1)), pool_(own_pool_.get()) {
  blocks_.push_back(pool_->Allocate());
}

void KvCache::Clear() {
  length_ = 0;
  if (!own_pool_) Release();
}

bool KvCache::Reserve(int positions) {
  while (capacity() < positions) {
    const int block = pool_->Allocate();
    if (block < 0) return false;
    blocks_.push_back(block);
  }
  return true;
}

void KvCache::Release() {
  for (const int block : blocks_) pool_->Free(block);
  blocks_.clear();
}

}  // namespace anyprec
