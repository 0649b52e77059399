// Keys and values of one sequence for every layer, so that each new token attends to the
// past without recomputing it. Storage is paged: a KvBlockPool holds fixed-size blocks of
// positions, and a sequence's KvCache maps its positions onto the blocks it holds, so a
// server can share one pool among many sequences and grow each by a block at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "engine/cpu/kv_layer_view.h"
#include "engine/model/model_config.h"

namespace anyprec {

// What a device keeps of a pool in its own memory (a GPU's copy of the keys and values, at
// the pool's block ids): made by that device, which must outlive the pool, and freed with it.
class KvMirror {
 public:
  virtual ~KvMirror() = default;
};

// Blocks of `block_tokens` positions, each with keys and values for every layer, stored as
// `dtype`. Not thread-safe: the engine loop owns it.
class KvBlockPool {
 public:
  KvBlockPool(const ModelConfig& config, int block_tokens, int num_blocks, cpu::KvDType dtype = cpu::KvDType::kF32);

  // 2 (keys and values) x the dtype's bytes x num_layers x kv_dim.
  static size_t BytesPerPosition(const ModelConfig& config, cpu::KvDType dtype);

  int block_tokens() const { return block_tokens_; }
  int num_blocks() const { return num_blocks_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int used_blocks() const { return num_blocks_ - free_blocks(); }

  // A free block's id, or -1 when none is left.
  int Allocate();
  void Free(int block);

  cpu::KvDType dtype() const { return dtype_; }
  // The first position row of `block` in `layer`; the block's rows follow contiguously.
  std::byte* keys(int block, int layer) { return keys_.get() + Offset(block, layer); }
  std::byte* values(int block, int layer) { return values_.get() + Offset(block, layer); }
  const std::byte* keys(int block, int layer) const { return keys_.get() + Offset(block, layer); }
  const std::byte* values(int block, int layer) const { return values_.get() + Offset(block, layer); }
  // Elements between the same row of consecutive block ids within one layer.
  size_t block_stride() const { return static_cast<size_t>(block_tokens_) * row_width_; }
  int row_width() const { return row_width_; }

  // The device copy of the pool, if a device made one; the pool's own memory then stays
  // untouched.
  KvMirror* mirror() const { return mirror_.get(); }
  void set_mirror(std::unique_ptr<KvMirror> mirror) { mirror_ = std::move(mirror); }

 private:
  size_t Offset(int block, int layer) const {
    return (static_cast<size_t>(layer) * num_blocks_ + block) * block_stride() * cpu::KvDTypeBytes(dtype_);
  }

  int block_tokens_;
  int num_blocks_;
  int row_width_;
  cpu::KvDType dtype_;
  // [layer][block][position in block][kv_dim], left uninitialized so that a large pool
  // costs physical memory only as blocks are first written.
  std::unique_ptr<std::byte[]> keys_;
  std::unique_ptr<std::byte[]> values_;
  std::vector<int> free_;      // a stack, so recently freed (cache-warm) blocks go out first
  std::unique_ptr<KvMirror> mirror_;
};

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
  void Truncate(int positions);
  // Takes blocks until capacity() >= positions; false (keeping what it took) when the pool
  // runs out first.
  bool Reserve(int positions);

  // Writes attention's inputs for `position` of `layer`, rows of the pool's row_width,
  // converted to its dtype; the block must be held.
  void Store(int layer, int position, std::span<const float> key, std::span<const float> value);
  cpu::KvLayerView layer(int layer) const {
    return {pool_->keys(0, layer), pool_->values(0, layer), pool_->block_stride(), pool_->block_tokens(), pool_->row_width(),
            blocks_, pool_->dtype()};
  }

 private:
  void Release();

  std::unique_ptr<KvBlockPool> own_pool_;  // set for a cache of its own
  KvBlockPool* pool_;
  std::vector<int> blocks_;
  int length_ = 0;
};

}  // namespace anyprec
