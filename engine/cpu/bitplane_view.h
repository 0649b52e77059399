// A quantized matrix as the CPU kernels read it: max_bits bitplanes re-tiled at load with
// each row padded to a multiple of 128 columns (zero bits), and per width one fp32 LUT and
// its int8 copy for the integer kernel.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <vector>

namespace anyprec::cpu {

// Bytes on 64-byte boundaries, so that the kernels' 64-byte loads of planes and tables never
// straddle two cache lines, wherever the allocator would have put them.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlignment); }
  bool operator==(const CacheLineAllocator&) const = default;
};
using AlignedBytes = std::vector<uint8_t, CacheLineAllocator<uint8_t>>;

struct BitplaneView {
  int rows = 0;
  int cols = 0;
  int seed_bits = 0;
  int max_bits = 0;
  const uint8_t* planes = nullptr;  // plane p, row n starts at p * plane_stride + n * row_stride
  size_t row_stride = 0;            // bytes; a multiple of 8
  size_t plane_stride = 0;          // bytes
  std::vector<const float*> luts;   // luts[b - seed_bits]: [rows][2^b]
  // Int8 tables: lut ~= scale[row] * (u8 - 128); rows of max(2^b, 64) bytes (room for one
  // 64-byte load), narrower tables repeated to fill them (so that a 64-entry byte permute may
  // ignore the index bits above b), plus 256 bytes of slack at the end. Empty when not prepared.
  std::vector<const uint8_t*> luts_u8;
  std::vector<const float*> lut_scales;

  const float* Lut(int bits, int row) const { return luts[bits - seed_bits] + (static_cast<size_t>(row) << bits); }
  const uint8_t* LutU8(int bits, int row) const { return luts_u8[bits - seed_bits] + row * Int8LutStride(bits); }
  float LutScale(int bits, int row) const { return lut_scales[bits - seed_bits][row]; }
  static size_t Int8LutStride(int bits) { return std::max<size_t>(size_t{1} << bits, 64); }
  uint32_t Index(int row, int col, int bits) const {
    uint32_t index = 0;
    const size_t byte = static_cast<size_t>(row) * row_stride + col / 8;
    for (int p = 0; p < bits; ++p) index = (index << 1) | ((planes[p * plane_stride + byte] >> (col % 8)) & 1u);
    return index;
  }
};

// Rows are padded to whole blocks of 128 columns, the int8 kernels' activation block.
inline size_t PaddedRowStride(int cols) { return (static_cast<size_t>(cols) + 127) / 128 * 16; }

// Copies canonical planes (engine/model/bitplanes.h) into the kernels' padded layout.
AlignedBytes RetilePlanes(std::span<const uint8_t> canonical, int rows, int cols, int max_bits);

// The int8 form of one width's fp32 LUT [rows][2^bits]: per row, scale = max|c| / 127 and
// each centroid stored as round(c / scale) + 128.
struct Int8Lut {
  AlignedBytes values;
  std::vector<float> scales;
};
Int8Lut QuantizeLut(const float* lut, int rows, int bits);

// A BitplaneView with the memory it views, made from an image's canonical planes and its fp32
// LUTs (luts[b - seed_bits]), which must outlive it: the planes re-tiled and, with `int8`,
// the int8 tables. Moves keep the view valid; copies would not, so there are none.
struct PreparedBitplanes {
  PreparedBitplanes() = default;
  PreparedBitplanes(PreparedBitplanes&&) = default;
  PreparedBitplanes& operator=(PreparedBitplanes&&) = default;

  AlignedBytes planes;
  std::vector<Int8Lut> int8_luts;
  BitplaneView view;
  size_t int8_lut_bytes() const;
};
PreparedBitplanes PrepareBitplanes(std::span<const uint8_t> canonical, std::span<const float* const> luts, int rows, int cols,
                                   int seed_bits, int max_bits, bool int8);

}  // namespace anyprec::cpu
