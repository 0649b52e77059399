// A quantized matrix as the CPU kernels read it: max_bits bitplanes re-tiled at load with
// each row padded to a multiple of 64 columns (zero bits), and one fp32 LUT per width.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace anyprec::cpu {

struct BitplaneView {
  int rows = 0;
  int cols = 0;
  int seed_bits = 0;
  int max_bits = 0;
  const uint8_t* planes = nullptr;  // plane p, row n starts at p * plane_stride + n * row_stride
  size_t row_stride = 0;            // bytes; a multiple of 8
  size_t plane_stride = 0;          // bytes
  std::vector<const float*> luts;   // luts[b - seed_bits]: [rows][2^b]

  const float* Lut(int bits, int row) const { return luts[bits - seed_bits] + (static_cast<size_t>(row) << bits); }
  uint32_t Index(int row, int col, int bits) const {
    uint32_t index = 0;
    const size_t byte = static_cast<size_t>(row) * row_stride + col / 8;
    for (int p = 0; p < bits; ++p) index = (index << 1) | ((planes[p * plane_stride + byte] >> (col % 8)) & 1u);
    return index;
  }
};

inline size_t PaddedRowStride(int cols) { return (static_cast<size_t>(cols) + 63) / 64 * 8; }

// Copies canonical planes (engine/model/bitplanes.h) into the kernels' padded layout.
std::vector<uint8_t> RetilePlanes(std::span<const uint8_t> canonical, int rows, int cols, int max_bits);

}  // namespace anyprec::cpu
