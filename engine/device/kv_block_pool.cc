#include "engine/device/kv_block_pool.h"

#include <numeric>

namespace anyprec {

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
      blocks_(num_blocks),
      free_(num_blocks) {
  // Highest id at the bottom of the stack, so blocks go out in ascending order.
  std::iota(free_.rbegin(), free_.rend(), 0);
}

int KvBlockPool::Allocate() {
  int block = -1;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (!idle_.empty()) {
    block = idle_.front();
    idle_.pop_front();
    BlockState& evicted = blocks_[block];
    evicted.idle.reset();
    index_.erase(*evicted.content);
    evicted.content.reset();
  } else {
    return -1;
  }
  blocks_[block].references = 1;
  ++used_;
  return block;
}

void KvBlockPool::Release(int block) {
  BlockState& state = blocks_[block];
  if (--state.references > 0) return;
  --used_;
  if (state.content) {
    state.idle = idle_.insert(idle_.end(), block);
  } else {
    free_.push_back(block);
  }
}

std::optional<KvBlockPool::Shared> KvBlockPool::Share(const BlockContent& content) {
  const auto it = index_.find(content);
  if (it == index_.end()) return std::nullopt;
  BlockState& state = blocks_[it->second.block];
  if (state.references++ == 0) {
    ++used_;
    idle_.erase(*state.idle);
    state.idle.reset();
  }
  return it->second;
}

uint64_t KvBlockPool::Register(int block, BlockContent content) {
  if (const auto it = index_.find(content); it != index_.end()) return it->second.serial;
  const uint64_t serial = next_serial_++;
  index_.emplace(content, Shared{block, serial});
  blocks_[block].content = std::move(content);
  return serial;
}

}  // namespace anyprec
