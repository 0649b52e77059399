// The canonical bitplane layout of a quantized matrix [rows, cols] with max_bits planes,
// as stored in an anyprec image (docs/FORMAT.md): plane-major, then row-major; each row
// of a plane is RowBytes(cols) bytes; column c is bit (c % 8) of byte c / 8 (least
// significant bit first); padding bits are zero. Plane 0 holds the most significant bit
// of each weight's max_bits-bit index, so a b-bit view reads planes 0..b-1 and its index
// is the top b bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace anyprec {

constexpr int kMinBits = 1;
constexpr int kMaxBits = 8;

inline size_t RowBytes(int cols) { return (static_cast<size_t>(cols) + 7) / 8; }

inline size_t PlaneBytes(int rows, int cols) { return static_cast<size_t>(rows) * RowBytes(cols); }

// The b-bit index of weight (row, col): the top `bits` of its max_bits-bit index.
inline uint32_t ReadIndex(std::span<const uint8_t> planes, int rows, int cols, int row, int col, int bits) {
  const size_t plane_bytes = PlaneBytes(rows, cols);
  const size_t byte = static_cast<size_t>(row) * RowBytes(cols) + col / 8;
  uint32_t index = 0;
  for (int p = 0; p < bits; ++p) index = (index << 1) | ((planes[p * plane_bytes + byte] >> (col % 8)) & 1u);
  return index;
}

inline void WriteIndex(std::span<uint8_t> planes, int rows, int cols, int row, int col, int max_bits, uint32_t index) {
  const size_t plane_bytes = PlaneBytes(rows, cols);
  const size_t byte = static_cast<size_t>(row) * RowBytes(cols) + col / 8;
  for (int p = 0; p < max_bits; ++p) {
    const uint8_t bit = static_cast<uint8_t>(1u << (col % 8));
    if ((index >> (max_bits - 1 - p)) & 1u) {
      planes[p * plane_bytes + byte] |= bit;
    } else {
      planes[p * plane_bytes + byte] &= static_cast<uint8_t>(~bit);
    }
  }
}

}  // namespace anyprec
