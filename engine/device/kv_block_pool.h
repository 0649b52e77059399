// The paged store of keys and values that a server's sequences share: fixed-size blocks of
// positions, each with keys and values for every layer. Blocks are reference-counted, and a
// full block can be registered under its contents (a prefix cache): a later sequence whose
// context starts the same, at the same width, takes a reference to it instead of computing it.
// Not thread-safe: the engine loop owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/cpu/kv_layer_view.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/token_id.h"

namespace anyprec {

// What a device keeps of a pool in its own memory (a GPU's copy of the keys and values, at
// the pool's block ids): made by that device, which must outlive the pool, and freed with it.
class KvMirror {
 public:
  virtual ~KvMirror() = default;
};

// What a full block holds: the keys and values of `tokens` computed at width `bits`, following
// the registered block whose serial is `parent` (0 for a sequence's first block). Serials are
// never reused, so equal contents mean equal tokens and width all the way back to the
// sequence's start: a match is exact, never a hash collision.
struct BlockContent {
  uint64_t parent = 0;
  int bits = 0;
  std::vector<TokenId> tokens;

  friend bool operator==(const BlockContent&, const BlockContent&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const BlockContent& c) {
    return H::combine(std::move(h), c.parent, c.bits, c.tokens);
  }
};

class KvBlockPool {
 public:
  KvBlockPool(const ModelConfig& config, int block_tokens, int num_blocks, cpu::KvDType dtype = cpu::KvDType::kF32);

  // 2 (keys and values) x the dtype's bytes x num_layers x kv_dim.
  static size_t BytesPerPosition(const ModelConfig& config, cpu::KvDType dtype);

  int block_tokens() const { return block_tokens_; }
  int num_blocks() const { return num_blocks_; }
  // Blocks that Allocate can hand out: never-used or freed ones, and cached ones no sequence
  // holds (evicted when taken).
  int free_blocks() const { return num_blocks_ - used_blocks(); }
  // Blocks that at least one sequence holds.
  int used_blocks() const { return used_; }
  // Blocks registered under their contents, held or not.
  int cached_blocks() const { return static_cast<int>(index_.size()); }

  // A block with one reference, or -1 when every block is held. A free block goes first;
  // else the cached block least recently released is evicted (the last blocks of a sequence
  // before its first ones, see Release), so that no held block is ever taken.
  int Allocate();
  // Drops a reference. A block no one holds is free again, or, when registered, stays cached
  // until Allocate evicts it; the most recently released is evicted last.
  void Release(int block);

  // The registered block holding `content`, with one more reference and its serial; nullopt
  // when none does.
  struct Shared {
    int block;
    uint64_t serial;
  };
  std::optional<Shared> Share(const BlockContent& content);
  // Registers `block`, held and full of `content`'s keys and values, and returns its serial,
  // the `parent` of the block after it. When another block holds the same content already,
  // `block` stays unregistered and that block's serial is returned, so that the sequence's
  // next blocks still chain onto the cached ones. A registered block must never be written.
  uint64_t Register(int block, BlockContent content);

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
  struct BlockState {
    int references = 0;
    std::optional<BlockContent> content;            // when registered: its key in index_
    std::optional<std::list<int>::iterator> idle;  // its place in idle_: registered and unheld
  };

  int block_tokens_;
  int num_blocks_;
  int row_width_;
  cpu::KvDType dtype_;
  // [layer][block][position in block][kv_dim], left uninitialized so that a large pool
  // costs physical memory only as blocks are first written.
  std::unique_ptr<std::byte[]> keys_;
  std::unique_ptr<std::byte[]> values_;
  std::vector<BlockState> blocks_;
  std::vector<int> free_;  // a stack, so recently freed (cache-warm) blocks go out first
  std::list<int> idle_;    // registered blocks no one holds, least recently released first
  absl::flat_hash_map<BlockContent, Shared> index_;
  int used_ = 0;
  uint64_t next_serial_ = 1;
  std::unique_ptr<KvMirror> mirror_;
};

}  // namespace anyprec
