// The fast float operators of the gradient pass: matrix products as OpenBLAS GEMMs (which
// spread over the cores themselves), attention spread over kv heads with keys and values
// transposed so that the inner loops run along contiguous memory and vectorize.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quantizer/grad/backward_ops.h"

namespace anyprec::grad {
namespace {

// [rows, cols] -> [cols, rows] for the kv head at `offset` of rows of width `width`.
std::vector<float> TransposeHead(std::span<const float> m, int tokens, int width, int offset, int head_dim) {
  std::vector<float> out(static_cast<size_t>(head_dim) * tokens);
  for (int j = 0; j < tokens; ++j) {
    for (int c = 0; c < head_dim; ++c) out[static_cast<size_t>(c) * tokens + j] = m[static_cast<size_t>(j) * width + offset + c];
  }
  return out;
}

// p[0..i] = softmax over keys 0..i of scale * q . k_j, with k transposed ([head_dim][tokens]);
// keys before `first` (outside a sliding window) get 0.
void CausalProbabilities(const float* q, const std::vector<float>& k_transposed, int tokens, int i, int first, int head_dim,
                         float scale, float* p) {
  std::fill(p, p + i + 1, 0.0f);
  for (int c = 0; c < head_dim; ++c) {
    const float qc = q[c] * scale;
    const float* kc = k_transposed.data() + static_cast<size_t>(c) * tokens;
    for (int j = first; j <= i; ++j) p[j] += qc * kc[j];
  }
  const float max_score = *std::max_element(p + first, p + i + 1);
  float sum = 0;
  for (int j = first; j <= i; ++j) sum += p[j] = std::exp(p[j] - max_score);
  const float inverse = 1.0f / sum;
  for (int j = first; j <= i; ++j) p[j] *= inverse;
}

}  // namespace

void LinearForward(std::span<const float> x, int tokens, std::span<const float> w, int rows, int cols, std::span<float> y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, rows, cols, 1.0f, x.data(), cols, w.data(), cols, 0.0f,
              y.data(), rows);
}

void LinearInputGradient(std::span<const float> dy, int tokens, std::span<const float> w, int rows, int cols,
                         std::span<float> dx, bool accumulate) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, cols, rows, 1.0f, dy.data(), rows, w.data(), cols,
              accumulate ? 1.0f : 0.0f, dx.data(), cols);
}

void LinearWeightGradient(std::span<const float> dy, std::span<const float> x, int tokens, int rows, int cols,
                          std::span<float> dw) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, cols, tokens, 1.0f, dy.data(), rows, x.data(), cols, 0.0f,
              dw.data(), cols);
}

void CausalAttentionForward(std::span<const float> q, std::span<const float> k, std::span<const float> v, int tokens,
                            const AttentionShape& shape, std::span<float> out) {
  const int d = shape.head_dim;
  const int q_width = shape.num_heads * d;
  const int kv_width = shape.num_kv_heads * d;
  const int group = shape.num_heads / shape.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
#pragma omp parallel for schedule(dynamic, 1)
  for (int h = 0; h < shape.num_heads; ++h) {
    const int kv_offset = (h / group) * d;
    const std::vector<float> k_transposed = TransposeHead(k, tokens, kv_width, kv_offset, d);
    std::vector<float> p(tokens);
    for (int i = 0; i < tokens; ++i) {
      CausalProbabilities(q.data() + static_cast<size_t>(i) * q_width + h * d, k_transposed, tokens, i, shape.FirstSeen(i), d, scale,
                          p.data());
      float* o = out.data() + static_cast<size_t>(i) * q_width + h * d;
      std::fill(o, o + d, 0.0f);
      for (int j = 0; j <= i; ++j) {
        const float* vj = v.data() + static_cast<size_t>(j) * kv_width + kv_offset;
        for (int c = 0; c < d; ++c) o[c] += p[j] * vj[c];
      }
    }
  }
}

void CausalAttentionBackward(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                             std::span<const float> dout, int tokens, const AttentionShape& shape, std::span<float> dq,
                             std::span<float> dk, std::span<float> dv) {
  const int d = shape.head_dim;
  const int q_width = shape.num_heads * d;
  const int kv_width = shape.num_kv_heads * d;
  const int group = shape.num_heads / shape.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::fill(dk.begin(), dk.end(), 0.0f);
  std::fill(dv.begin(), dv.end(), 0.0f);
  // One kv head per thread: its query heads all add into its keys' and values' gradients.
#pragma omp parallel for schedule(dynamic, 1)
  for (int g = 0; g < shape.num_kv_heads; ++g) {
    const int kv_offset = g * d;
    const std::vector<float> k_transposed = TransposeHead(k, tokens, kv_width, kv_offset, d);
    const std::vector<float> v_transposed = TransposeHead(v, tokens, kv_width, kv_offset, d);
    std::vector<float> p(tokens), ds(tokens);
    for (int h = g * group; h < (g + 1) * group; ++h) {
      for (int i = 0; i < tokens; ++i) {
        const float* qi = q.data() + static_cast<size_t>(i) * q_width + h * d;
        const float* doi = dout.data() + static_cast<size_t>(i) * q_width + h * d;
        CausalProbabilities(qi, k_transposed, tokens, i, shape.FirstSeen(i), d, scale, p.data());
        std::fill(ds.begin(), ds.begin() + i + 1, 0.0f);
        for (int c = 0; c < d; ++c) {
          const float* vc = v_transposed.data() + static_cast<size_t>(c) * tokens;
          for (int j = 0; j <= i; ++j) ds[j] += doi[c] * vc[j];
        }
        float weighted = 0;
        for (int j = 0; j <= i; ++j) weighted += p[j] * ds[j];
        for (int j = 0; j <= i; ++j) ds[j] = p[j] * (ds[j] - weighted) * scale;
        float* dqi = dq.data() + static_cast<size_t>(i) * q_width + h * d;
        std::fill(dqi, dqi + d, 0.0f);
        for (int j = 0; j <= i; ++j) {
          const size_t kv_row = static_cast<size_t>(j) * kv_width + kv_offset;
          for (int c = 0; c < d; ++c) {
            dqi[c] += ds[j] * k[kv_row + c];
            dk[kv_row + c] += ds[j] * qi[c];
            dv[kv_row + c] += p[j] * doi[c];
          }
        }
      }
    }
  }
}

}  // namespace anyprec::grad
