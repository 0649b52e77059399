#include "engine/device/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/model/half_float.h"

namespace anyprec {

namespace {

// Writes `row` as `dtype` elements at `to`.
void Convert(std::span<const float> row, cpu::KvDType dtype, std::byte* to) {
  switch (dtype) {
    case cpu::KvDType::kF32:
      std::memcpy(to, row.data(), row.size_bytes());
      return;
    case cpu::KvDType::kBF16:
      for (size_t i = 0; i < row.size(); ++i) {
        const uint16_t bits = F32ToBF16(row[i]);
        std::memcpy(to + 2 * i, &bits, 2);
      }
      return;
    case cpu::KvDType::kF16:
      // Saturated: an infinite key would turn every score of the head into NaN.
      for (size_t i = 0; i < row.size(); ++i) {
        const uint16_t bits = F32ToF16(std::isnan(row[i]) ? row[i] : std::clamp(row[i], -kF16Max, kF16Max));
        std::memcpy(to + 2 * i, &bits, 2);
      }
      return;
  }
}

}  // namespace

size_t KvBlockPool::BytesPerPosition(const ModelConfig& config, cpu::KvDType dtype) {
  return 2 * cpu::KvDTypeBytes(dtype) * static_cast<size_t>(config.num_layers) * config.kv_dim();
}

KvBlockPool::KvBlockPool(const ModelConfig& config, int block_tokens, int num_blocks, cpu::KvDType dtype)
    : block_tokens_(block_tokens),
      num_blocks_(num_blocks),
      row_width_(config.kv_dim()),
      dtype_(dtype),
      keys_(std::make_unique_for_overwrite<std::byte[]>(BytesPerPosition(config, dtype) / 2 * num_blocks * block_tokens)),
      values_(std::make_unique_for_overwrite<std::byte[]>(BytesPerPosition(config, dtype) / 2 * num_blocks * block_tokens)),
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

KvCache::KvCache(const ModelConfig& config, int capacity, cpu::KvDType dtype)
    : own_pool_(std::make_unique<KvBlockPool>(config, std::max(capacity, 1), 1, dtype)), pool_(own_pool_.get()) {
  blocks_.push_back(pool_->Allocate());
}

void KvCache::Store(int layer, int position, std::span<const float> key, std::span<const float> value) {
  const size_t offset = this->layer(layer).Row(position) * cpu::KvDTypeBytes(pool_->dtype());
  Convert(key, pool_->dtype(), pool_->keys(0, layer) + offset);
  Convert(value, pool_->dtype(), pool_->values(0, layer) + offset);
}

void KvCache::Clear() {
  length_ = 0;
  if (!own_pool_) Release();
}

void KvCache::Truncate(int positions) {
  length_ = std::clamp(positions, 0, length_);
  if (own_pool_) return;
  const int needed = (length_ + pool_->block_tokens() - 1) / pool_->block_tokens();
  while (static_cast<int>(blocks_.size()) > needed) {
    pool_->Free(blocks_.back());
    blocks_.pop_back();
  }
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
