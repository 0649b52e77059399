// Keys and values of one sequence for every layer, so that each new token attends to the
// past without recomputing it. Storage is paged: a KvBlockPool holds fixed-size blocks of
// positions, and a sequence's KvCache maps its positions onto the blocks it holds, so a
// server can share one pool among many sequences, grow each by a block at a time, and let
// sequences with a common prefix hold the same blocks for it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/cpu/kv_layer_view.h"
#include "engine/device/kv_block_pool.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/token_id.h"

namespace anyprec {

class KvCache {
 public:
  // A cache of its own for `capacity` positions (one block), for single-sequence use.
  KvCache(const ModelConfig& config, int capacity, cpu::KvDType dtype = cpu::KvDType::kF32);
  // A cache that takes blocks from a shared `pool` as it grows (see Reserve); it returns
  // them when destroyed or cleared. `pool` must outlive it.
  explicit KvCache(KvBlockPool& pool) : pool_(&pool) {}
  ~KvCache() { Release(); }
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Positions that the blocks held can take.
  int capacity() const { return static_cast<int>(blocks_.size()) * pool_->block_tokens(); }
  // Positions [0, length) hold valid entries.
  int length() const { return length_; }
  int blocks_held() const { return static_cast<int>(blocks_.size()); }
  // The pool the blocks come from, and their ids in position order (a device mirror of
  // the pool keeps its keys and values at the same ids).
  const KvBlockPool& pool() const { return *pool_; }
  KvBlockPool& pool() { return *pool_; }
  std::span<const int> blocks() const { return blocks_; }
  // Empties the cache and gives its blocks back to a shared pool.
  void Clear();
  void Advance(int tokens) { length_ += tokens; }
  // Forgets positions [positions, length()) (a speculative step's rejected tokens) and gives
  // a shared pool the blocks no position left needs; the entries before stay as they are.
  // `positions` must not fall inside the shared prefix (see SharePrefix).
  void Truncate(int positions);
  // Takes blocks until capacity() >= positions; false, taking none, when the pool has fewer
  // to give (free or cached and unheld), so that a request that cannot be admitted evicts
  // nothing from the prefix cache.
  bool Reserve(int positions);

  // Prefix caching, for a cache on a shared pool. The shared prefix is the run of leading
  // blocks the pool has registered: those this cache took from it and those it registered.
  // They are never written again.
  //
  // In a cache that holds nothing but its shared prefix (an empty one, say): extends it with the
  // pool's registered blocks that hold the longest prefix of `tokens` computed at width `bits`,
  // whole blocks within `max_positions`, in place of any blocks reserved there, and advances
  // over them; returns length().
  int SharePrefix(int bits, std::span<const TokenId> tokens, int max_positions);
  bool holds_only_shared_prefix() const { return length_ == shared_blocks() * pool_->block_tokens(); }
  // Registers each full block among positions [0, positions) after the shared prefix, holding
  // the keys and values of `tokens` computed at `bits` (as every position before them was).
  void RegisterPrefix(int bits, std::span<const TokenId> tokens, int positions);
  int shared_blocks() const { return static_cast<int>(serials_.size()); }

  // Writes attention's inputs for `position` of `layer`, rows of the pool's row_width,
  // converted to its dtype; the block must be held.
  void Store(int layer, int position, std::span<const float> key, std::span<const float> value);
  cpu::KvLayerView layer(int layer) const {
    return {pool_->keys(0, layer), pool_->values(0, layer), pool_->block_stride(), pool_->block_tokens(), pool_->row_width(),
            blocks_, pool_->dtype()};
  }

 private:
  void Release();
  // What the block after the shared prefix holds, if it holds `tokens`' keys and values at `bits`.
  BlockContent NextBlockContent(int bits, std::span<const TokenId> tokens) const;

  std::unique_ptr<KvBlockPool> own_pool_;  // set for a cache of its own
  KvBlockPool* pool_;
  std::vector<int> blocks_;
  int length_ = 0;
  std::vector<uint64_t> serials_;  // of the shared prefix's blocks, as the pool registered them
};

}  // namespace anyprec
