#include "engine/cpu/bitplane_view.h"

#include <cstring>

#include "engine/model/bitplanes.h"

namespace anyprec::cpu {

std::vector<uint8_t> RetilePlanes(std::span<const uint8_t> canonical, int rows, int cols, int max_bits) {
  const size_t stride = PaddedRowStride(cols);
  const size_t row_bytes = RowBytes(cols);
  std::vector<uint8_t> tiled(static_cast<size_t>(max_bits) * rows * stride, 0);
  for (int p = 0; p < max_bits; ++p) {
    for (int r = 0; r < rows; ++r) {
      std::memcpy(&tiled[(static_cast<size_t>(p) * rows + r) * stride], &canonical[(static_cast<size_t>(p) * rows + r) * row_bytes],
                  row_bytes);
    }
  }
  return tiled;
}

}  // namespace anyprec::cpu
