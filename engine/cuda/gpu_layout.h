// How a bitplane matrix lies in GPU memory, and the re-tiling that puts it there. Plain C++
// (no CUDA), so that the layout is built and tested on machines without a GPU.
//
// Columns are padded to whole chunks of 1024 (zero bits). Plane p holds rows x chunks x 32
// words; word (row, chunk, lane) carries 32 columns of that row, bit 8g + i being column
// chunk * 1024 + 256g + 8 * lane + i (g < 4, i < 8). A warp reading one chunk of one plane
// thus loads 128 contiguous bytes, and lane `lane` needs activations at four runs of 8
// consecutive columns, which the warp together reads as four contiguous 1 KiB spans
// (the reference kernel's permutation). A b-bit read touches planes 0..b-1 only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/cuda/device_matrix.h"

namespace anyprec::cuda {

inline int PaddedColumns(int cols) { return (cols + kChunkColumns - 1) / kChunkColumns * kChunkColumns; }

// The column that bit `bit` of word (chunk, lane) carries.
inline int ColumnOfBit(int chunk, int lane, int bit) { return chunk * kChunkColumns + 256 * (bit / 8) + 8 * lane + bit % 8; }

struct GpuBitplaneMatrix {
  int rows = 0;
  int cols = 0;
  int padded_cols = 0;
  int seed_bits = 0;
  int max_bits = 0;
  std::vector<uint32_t> planes;  // [plane][row][chunk][lane]
  std::vector<float> luts;       // widths seed..max one after another, [rows][2^b] each
  size_t lut_offset[kMaxBits + 1] = {};  // floats from the start of `luts` to width b's table

  size_t plane_words() const { return static_cast<size_t>(rows) * padded_cols / 32; }
  // The b-bit index of weight (row, col), read back from the GPU layout.
  uint32_t Index(int row, int col, int bits) const;
};

// The layout of a matrix from an image's canonical planes (engine/model/bitplanes.h) and its
// fp32 LUTs, luts[b - seed_bits].
GpuBitplaneMatrix RetileForGpu(const uint8_t* canonical, int rows, int cols, int seed_bits, int max_bits, const float* const* luts);

// The b-bit index of weight (row, col) in planes of this layout, `rows` x `padded_cols` each.
uint32_t ReadGpuIndex(const uint32_t* planes, int rows, int padded_cols, int row, int col, int bits);

}  // namespace anyprec::cuda
