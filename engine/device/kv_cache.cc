#include "engine/device/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>

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
    pool_->Release(blocks_.back());
    blocks_.pop_back();
  }
  if (static_cast<int>(serials_.size()) > needed) serials_.resize(needed);
}

bool KvCache::Reserve(int positions) {
  const int needed = (positions - capacity() + pool_->block_tokens() - 1) / pool_->block_tokens();
  if (needed > pool_->free_blocks()) return false;
  while (capacity() < positions) blocks_.push_back(pool_->Allocate());
  return true;
}

int KvCache::SharePrefix(int bits, std::span<const TokenId> tokens, int max_positions) {
  if (!holds_only_shared_prefix()) return length_;
  const size_t block_tokens = pool_->block_tokens();
  const size_t whole = std::min<size_t>(tokens.size(), std::max(max_positions, 0)) / block_tokens;
  while (serials_.size() < whole) {
    const std::optional<KvBlockPool::Shared> shared = pool_->Share(NextBlockContent(bits, tokens));
    if (!shared) break;
    const size_t index = serials_.size();
    if (index < blocks_.size()) {
      pool_->Release(blocks_[index]);  // reserved, never written
      blocks_[index] = shared->block;
    } else {
      blocks_.push_back(shared->block);
    }
    serials_.push_back(shared->serial);
  }
  length_ = static_cast<int>(serials_.size() * block_tokens);
  return length_;
}

void KvCache::RegisterPrefix(int bits, std::span<const TokenId> tokens, int positions) {
  const size_t block_tokens = pool_->block_tokens();
  const size_t full = std::min(std::min(static_cast<size_t>(std::max(positions, 0)), tokens.size()) / block_tokens, blocks_.size());
  // A block whose contents another sequence registered first stays this cache's own, and the
  // chain goes on from that sequence's block (the pool returns its serial).
  while (serials_.size() < full) {
    const uint64_t serial = pool_->Register(blocks_[serials_.size()], NextBlockContent(bits, tokens));
    serials_.push_back(serial);
  }
}

BlockContent KvCache::NextBlockContent(int bits, std::span<const TokenId> tokens) const {
  const std::span<const TokenId> block = tokens.subspan(serials_.size() * pool_->block_tokens(), pool_->block_tokens());
  return {.parent = serials_.empty() ? 0 : serials_.back(), .bits = bits, .tokens = {block.begin(), block.end()}};
}

void KvCache::Release() {
  // The last blocks first, so that the pool evicts a sequence's tail before the prefix that
  // other sequences are likelier to share.
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) pool_->Release(*it);
  blocks_.clear();
  serials_.clear();
}

}  // namespace anyprec
