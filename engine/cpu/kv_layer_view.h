// How attention reads one layer of a sequence's paged KV cache (engine/runtime/kv_cache.h):
// position p lives in block blocks[p / block_tokens], at row p % block_tokens.
#pragma once

#include <cstddef>
#include <span>

namespace anyprec::cpu {

struct KvLayerView {
  const float* keys;    // block 0 of the layer
  const float* values;
  size_t block_stride;  // floats from one block id to the next
  int block_tokens;
  int row_width;
  std::span<const int> blocks;

  const float* key(int position) const { return keys + Row(position); }
  const float* value(int position) const { return values + Row(position); }

 private:
  size_t Row(int position) const {
    return blocks[position / block_tokens] * block_stride + static_cast<size_t>(position % block_tokens) * row_width;
  }
};

}  // namespace anyprec::cpu
