#include "engine/cpu/bitplane_view.h"

#include <cmath>
#include <cstring>

#include "engine/model/bitplanes.h"

namespace anyprec::cpu {

AlignedBytes RetilePlanes(std::span<const uint8_t> canonical, int rows, int cols, int max_bits) {
  const size_t stride = PaddedRowStride(cols);
  const size_t row_bytes = RowBytes(cols);
  AlignedBytes tiled(static_cast<size_t>(max_bits) * rows * stride, 0);
  for (int p = 0; p < max_bits; ++p) {
    for (int r = 0; r < rows; ++r) {
      std::memcpy(&tiled[(static_cast<size_t>(p) * rows + r) * stride], &canonical[(static_cast<size_t>(p) * rows + r) * row_bytes],
                  row_bytes);
    }
  }
  return tiled;
}

Int8Lut QuantizeLut(const float* lut, int rows, int bits) {
  const size_t entries = size_t{1} << bits;
  const size_t stride = BitplaneView::Int8LutStride(bits);
  Int8Lut q;
  q.values.assign(rows * stride + 256, 128);
  q.scales.resize(rows);
  for (int r = 0; r < rows; ++r) {
    const float* row = lut + r * entries;
    float max_abs = 0;
    for (size_t c = 0; c < entries; ++c) max_abs = std::max(max_abs, std::abs(row[c]));
    // Tables of (sub)normal zeros would give a zero scale; any non-zero scale reproduces them.
    const float scale = max_abs / 127.0f > 0 ? max_abs / 127.0f : 1.0f;
    q.scales[r] = scale;
    for (size_t c = 0; c < entries; ++c) {
      q.values[r * stride + c] = static_cast<uint8_t>(static_cast<int>(std::lround(row[c] / scale)) + 128);
    }
    for (size_t c = entries; c < stride; ++c) q.values[r * stride + c] = q.values[r * stride + c % entries];
  }
  return q;
}

PreparedBitplanes PrepareBitplanes(std::span<const uint8_t> canonical, std::span<const float* const> luts, int rows, int cols,
                                   int seed_bits, int max_bits, bool int8) {
  PreparedBitplanes p;
  p.planes = RetilePlanes(canonical, rows, cols, max_bits);
  BitplaneView& v = p.view;
  v = {rows, cols, seed_bits, max_bits, p.planes.data(), PaddedRowStride(cols), rows * PaddedRowStride(cols), {luts.begin(), luts.end()}, {}, {}};
  for (int bits = seed_bits; int8 && bits <= max_bits; ++bits) {
    const Int8Lut& q = p.int8_luts.emplace_back(QuantizeLut(luts[bits - seed_bits], rows, bits));
    v.luts_u8.push_back(q.values.data());
    v.lut_scales.push_back(q.scales.data());
  }
  return p;
}

size_t PreparedBitplanes::int8_lut_bytes() const {
  size_t total = 0;
  for (const Int8Lut& q : int8_luts) total += q.values.size() + sizeof(float) * q.scales.size();
  return total;
}

}  // namespace anyprec::cpu
