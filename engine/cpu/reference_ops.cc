// Plain scalar references of the fp32 operators (ops.h), in double precision: what the fast
// CPU kernels and the CUDA kernels are tested against. Nothing here needs SIMD or OpenMP,
// so the GPU-only build (tests/gpu) compiles it too.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/ops.h"

namespace anyprec::cpu {
namespace reference {

void MatMul(std::span<const float> x, int tokens, std::span<const float> w, int rows, int cols, std::span<float> out) {
  for (int t = 0; t < tokens; ++t) {
    for (int n = 0; n < rows; ++n) {
      double sum = 0;
      for (int k = 0; k < cols; ++k) sum += static_cast<double>(x[t * cols + k]) * w[static_cast<size_t>(n) * cols + k];
      out[static_cast<size_t>(t) * rows + n] = static_cast<float>(sum);
    }
  }
}

void Attention(std::span<const float> q, std::span<const int> positions, const KvLayerView& cache, const AttentionShape& shape,
               std::span<float> out) {
  const int hd = shape.head_dim;
  const int q_width = shape.num_heads * hd;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int kv_head = h * shape.num_kv_heads / shape.num_heads;
      // Positions before `first` lie outside the sliding window: their weight stays 0.
      const int first = shape.FirstSeen(positions[t]);
      std::vector<double> weights(positions[t] + 1, 0.0);
      double max_score = -INFINITY;
      for (int p = first; p <= positions[t]; ++p) {
        double dot = 0;
        for (int i = 0; i < hd; ++i) dot += static_cast<double>(q[t * q_width + h * hd + i]) * cache.KeyAt(p, kv_head * hd + i);
        weights[p] = dot / std::sqrt(static_cast<double>(hd));
        max_score = std::max(max_score, weights[p]);
      }
      double total = 0;
      for (int p = first; p <= positions[t]; ++p) total += (weights[p] = std::exp(weights[p] - max_score));
      for (int i = 0; i < hd; ++i) {
        double value = 0;
        for (int p = first; p <= positions[t]; ++p) value += weights[p] / total * cache.ValueAt(p, kv_head * hd + i);
        out[t * q_width + h * hd + i] = static_cast<float>(value);
      }
    }
  }
}

void BitplaneMatMul(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out) {
  for (size_t t = 0; t < bits.size(); ++t) {
    for (int n = 0; n < w.rows; ++n) {
      const float* lut = w.Lut(bits[t], n);
      double sum = 0;
      for (int k = 0; k < w.cols; ++k) sum += static_cast<double>(lut[w.Index(n, k, bits[t])]) * x[t * w.cols + k];
      out[t * w.rows + n] = static_cast<float>(sum);
    }
  }
}

}  // namespace reference
}  // namespace anyprec::cpu
