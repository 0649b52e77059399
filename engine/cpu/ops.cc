#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "engine/cpu/ops.h"

namespace anyprec::cpu {

namespace {

// Where column k sits in a row of the given order (ops.h).
size_t PositionOf(size_t k, ActivationOrder order) {
  if (order == ActivationOrder::kNatural) return k;
  const size_t tile = k / 256 * 256, within = k % 256;
  return tile + 32 * (within % 8) + within / 8;
}

}  // namespace

Int8Activations QuantizeActivations(std::span<const float> x, int tokens, int cols, size_t padded_cols, ActivationOrder order) {
  assert(order == ActivationOrder::kNatural || padded_cols % 256 == 0);
  Int8Activations a;
  a.padded_cols = padded_cols;
  const size_t blocks = padded_cols / kInt8Block;
  a.values.assign(tokens * padded_cols, 0);
  a.scales.assign(tokens * blocks, 0.0f);
  a.offset.assign(tokens, 0.0);
  for (int t = 0; t < tokens; ++t) {
    const float* row = x.data() + static_cast<size_t>(t) * cols;
    for (size_t b = 0; b < blocks; ++b) {
      const size_t begin = b * kInt8Block;
      const size_t end = std::min<size_t>(begin + kInt8Block, cols);
      float max_abs = 0;
      bool finite = true;
      for (size_t k = begin; k < end; ++k) {
        max_abs = std::max(max_abs, std::abs(row[k]));
        finite = finite && std::isfinite(row[k]);
      }
      if (!finite) {  // the whole result turns NaN, as the exact product would
        a.scales[t * blocks + b] = NAN;
        a.offset[t] = NAN;
        continue;
      }
      const float scale = max_abs > 0 ? max_abs / 127.0f : 1.0f;
      const float inverse = 1.0f / scale;
      int sum = 0;
      for (size_t k = begin; k < end; ++k) {
        const int q = std::clamp(static_cast<int>(std::lrint(row[k] * inverse)), -127, 127);
        a.values[t * padded_cols + PositionOf(k, order)] = static_cast<int8_t>(q);
        sum += q;
      }
      a.scales[t * blocks + b] = scale;
      a.offset[t] += 128.0 * scale * sum;
    }
  }
  return a;
}

namespace reference {

void BitplaneMatMulInt8(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out) {
  const size_t padded_cols = w.row_stride * 8;
  const int tokens = static_cast<int>(bits.size());
  const Int8Activations a = QuantizeActivations(x, tokens, w.cols, padded_cols);
  const size_t blocks = padded_cols / kInt8Block;
  for (int t = 0; t < tokens; ++t) {
    for (int n = 0; n < w.rows; ++n) {
      const uint8_t* lut = w.LutU8(bits[t], n);
      double sum = 0;
      for (size_t b = 0; b < blocks; ++b) {
        int64_t block_sum = 0;
        for (size_t k = b * kInt8Block; k < (b + 1) * kInt8Block; ++k) {
          const uint32_t index = k < static_cast<size_t>(w.cols) ? w.Index(n, static_cast<int>(k), bits[t]) : 0;
          block_sum += static_cast<int64_t>(lut[index]) * a.values[t * padded_cols + k];
        }
        sum += static_cast<double>(block_sum) * a.scales[t * blocks + b];
      }
      out[static_cast<size_t>(t) * w.rows + n] = static_cast<float>(w.LutScale(bits[t], n) * (sum - a.offset[t]));
    }
  }
}



}  // namespace reference
}  // namespace anyprec::cpu
