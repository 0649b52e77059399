// How attention reads one layer of a sequence's paged KV cache (engine/runtime/kv_cache.h):
// position p lives in block blocks[p / block_tokens], at row p % block_tokens, its elements
// of the cache's KvDType. Depends only on the 16-bit conversions, so that the GPU-only
// build's tests can share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "engine/model/half_float.h"

namespace anyprec::cpu {

// The element type of cached keys and values. The 16-bit ones halve the cache's memory and
// the bytes attention reads: bf16 keeps fp32's range with 8 bits of precision, fp16 has 11
// bits and overflows past 65504 (stored saturated there).
enum class KvDType { kF32, kBF16, kF16 };
inline constexpr KvDType kKvDTypes[] = {KvDType::kF32, KvDType::kBF16, KvDType::kF16};
inline size_t KvDTypeBytes(KvDType dtype) { return dtype == KvDType::kF32 ? 4 : 2; }
inline std::string_view KvDTypeName(KvDType dtype) {
  return dtype == KvDType::kF32 ? "fp32" : dtype == KvDType::kBF16 ? "bf16" : "fp16";
}
inline std::optional<KvDType> ParseKvDType(std::string_view name) {
  for (const KvDType dtype : kKvDTypes) {
    if (name == KvDTypeName(dtype)) return dtype;
  }
  return std::nullopt;
}

struct KvLayerView {
  const void* keys;  // block 0 of the layer
  const void* values;
  size_t block_stride;  // elements from one block id to the next
  int block_tokens;
  int row_width;
  std::span<const int> blocks;
  KvDType dtype = KvDType::kF32;

  // Elements from block 0's first row to the row of `position`.
  size_t Row(int position) const {
    return blocks[position / block_tokens] * block_stride + static_cast<size_t>(position % block_tokens) * row_width;
  }
  // Row of `position` as elements of T, which must be the dtype's type.
  template <typename T>
  const T* key(int position) const {
    return static_cast<const T*>(keys) + Row(position);
  }
  template <typename T>
  const T* value(int position) const {
    return static_cast<const T*>(values) + Row(position);
  }
  // Element i of the row of `position`, widened: for scalar readers such as the reference.
  float KeyAt(int position, int i) const { return Widen(keys, Row(position) + i); }
  float ValueAt(int position, int i) const { return Widen(values, Row(position) + i); }

 private:
  float Widen(const void* data, size_t index) const {
    switch (dtype) {
      case KvDType::kF32: return static_cast<const float*>(data)[index];
      case KvDType::kBF16: return BF16ToF32(static_cast<const uint16_t*>(data)[index]);
      case KvDType::kF16: return F16ToF32(static_cast<const uint16_t*>(data)[index]);
    }
    return 0.0f;
  }
};

}  // namespace anyprec::cpu
