#include "engine/cuda/gpu_layout.h"

#include "engine/model/bitplanes.h"

namespace anyprec::cuda {

uint32_t ReadGpuIndex(const uint32_t* planes, int rows, int padded_cols, int row, int col, int bits) {
  const size_t plane_words = static_cast<size_t>(rows) * padded_cols / 32;
  const int within = col % kChunkColumns;
  const size_t word = (static_cast<size_t>(row) * (padded_cols / kChunkColumns) + col / kChunkColumns) * 32 + (within % 256) / 8;
  const int bit = (within / 256) * 8 + within % 8;
  uint32_t index = 0;
  for (int p = 0; p < bits; ++p) index = (index << 1) | ((planes[p * plane_words + word] >> bit) & 1u);
  return index;
}

uint32_t GpuBitplaneMatrix::Index(int row, int col, int bits) const {
  return ReadGpuIndex(planes.data(), rows, padded_cols, row, col, bits);
}

GpuBitplaneMatrix RetileForGpu(const uint8_t* canonical, int rows, int cols, int seed_bits, int max_bits, const float* const* luts) {
  GpuBitplaneMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.padded_cols = PaddedColumns(cols);
  m.seed_bits = seed_bits;
  m.max_bits = max_bits;
  const std::span<const uint8_t> planes(canonical, max_bits * PlaneBytes(rows, cols));
  m.planes.assign(static_cast<size_t>(m.max_bits) * m.plane_words(), 0);
  const int chunks = m.padded_cols / kChunkColumns;
  for (int row = 0; row < m.rows; ++row) {
    for (int chunk = 0; chunk < chunks; ++chunk) {
      for (int lane = 0; lane < 32; ++lane) {
        const size_t word = (static_cast<size_t>(row) * chunks + chunk) * 32 + lane;
        for (int bit = 0; bit < 32; ++bit) {
          const int col = ColumnOfBit(chunk, lane, bit);
          if (col >= m.cols) continue;
          const uint32_t index = ReadIndex(planes, rows, cols, row, col, max_bits);
          for (int p = 0; p < m.max_bits; ++p) {
            m.planes[p * m.plane_words() + word] |= ((index >> (m.max_bits - 1 - p)) & 1u) << bit;
          }
        }
      }
    }
  }
  for (int b = m.seed_bits; b <= m.max_bits; ++b) {
    m.lut_offset[b] = m.luts.size();
    const float* lut = luts[b - seed_bits];
    m.luts.insert(m.luts.end(), lut, lut + (static_cast<size_t>(m.rows) << b));
  }
  return m;
}

}  // namespace anyprec::cuda
