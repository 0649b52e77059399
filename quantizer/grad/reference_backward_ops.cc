// Plain scalar versions of every operator of the gradient pass, for float and double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "quantizer/grad/backward_ops.h"

namespace anyprec::grad {
namespace {

// The probabilities of query row i of one head over keys 0..i, written to p[0..i]; keys
// before `first` (outside a sliding window) get 0.
template <typename T>
void CausalProbabilities(const T* q, std::span<const T> k, int kv_width, int i, int first, int head_dim, T scale, std::vector<T>& p) {
  T max_score = -INFINITY;
  std::fill(p.begin(), p.begin() + first, T{0});
  for (int j = first; j <= i; ++j) {
    const T* kj = k.data() + static_cast<size_t>(j) * kv_width;
    T s = 0;
    for (int c = 0; c < head_dim; ++c) s += q[c] * kj[c];
    p[j] = s * scale;
    max_score = std::max(max_score, p[j]);
  }
  T sum = 0;
  for (int j = first; j <= i; ++j) sum += p[j] = std::exp(p[j] - max_score);
  for (int j = first; j <= i; ++j) p[j] /= sum;
}

// cos and sin of position t's angle for each frequency, times the attention factor, rounded to
// float as cpu::Rope's.
void RopeAngles(int t, const RopeFrequencies& f, std::vector<double>& cos_table, std::vector<double>& sin_table) {
  for (size_t i = 0; i < f.inv_freq.size(); ++i) {
    const double angle = t * f.inv_freq[i];
    cos_table[i] = static_cast<float>(std::cos(angle) * f.attention_factor);
    sin_table[i] = static_cast<float>(std::sin(angle) * f.attention_factor);
  }
}

// Rotates the rotary dims of every head of every row by `direction` (+1 forward, -1
// backward) times its angle, scaled by the attention factor both ways (the backward is the
// transpose).
template <typename T>
void Rotate(std::span<T> x, int tokens, int num_heads, int head_dim, const RopeFrequencies& f, int direction) {
  const int half = static_cast<int>(f.inv_freq.size());
  std::vector<double> cos_table(half), sin_table(half);
  for (int t = 0; t < tokens; ++t) {
    RopeAngles(t, f, cos_table, sin_table);
    for (int h = 0; h < num_heads; ++h) {
      T* v = x.data() + (static_cast<size_t>(t) * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const T c = static_cast<T>(cos_table[i]);
        const T s = static_cast<T>(direction * sin_table[i]);
        const T x0 = v[i];
        const T x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x0 * s + x1 * c;
      }
    }
  }
}

// act(g) and its derivative.
template <typename T>
struct ActivationAt {
  T value;
  T derivative;
};
template <typename T>
ActivationAt<T> Activation(MlpActivation act, T g) {
  switch (act) {
    case MlpActivation::kSilu: {
      const T s = T{1} / (T{1} + std::exp(-g));
      return {g * s, s * (T{1} + g * (T{1} - s))};
    }
    case MlpActivation::kGelu: {
      const T cdf = T{0.5} * (T{1} + std::erf(g * static_cast<T>(M_SQRT1_2)));
      const T pdf = std::exp(T{-0.5} * g * g) * static_cast<T>(0.5 * M_2_SQRTPI * M_SQRT1_2);
      return {g * cdf, cdf + g * pdf};
    }
    case MlpActivation::kGeluTanh: {
      const T k = static_cast<T>(0.7978845608028654);
      const T u = k * (g + T{0.044715} * g * g * g);
      const T t = std::tanh(u);
      return {T{0.5} * g * (T{1} + t), T{0.5} * (T{1} + t) + T{0.5} * g * (T{1} - t * t) * k * (T{1} + T{3} * T{0.044715} * g * g)};
    }
  }
  return {};
}

}  // namespace

namespace reference {

template <typename T>
void LinearForward(std::span<const T> x, int tokens, std::span<const float> w, int rows, int cols, std::span<T> y) {
  for (int t = 0; t < tokens; ++t) {
    for (int r = 0; r < rows; ++r) {
      T sum = 0;
      for (int c = 0; c < cols; ++c) sum += x[static_cast<size_t>(t) * cols + c] * w[static_cast<size_t>(r) * cols + c];
      y[static_cast<size_t>(t) * rows + r] = sum;
    }
  }
}

template <typename T>
void LinearInputGradient(std::span<const T> dy, int tokens, std::span<const float> w, int rows, int cols, std::span<T> dx,
                         bool accumulate) {
  for (int t = 0; t < tokens; ++t) {
    for (int c = 0; c < cols; ++c) {
      T sum = accumulate ? dx[static_cast<size_t>(t) * cols + c] : T{0};
      for (int r = 0; r < rows; ++r) sum += dy[static_cast<size_t>(t) * rows + r] * w[static_cast<size_t>(r) * cols + c];
      dx[static_cast<size_t>(t) * cols + c] = sum;
    }
  }
}

template <typename T>
void LinearWeightGradient(std::span<const T> dy, std::span<const T> x, int tokens, int rows, int cols, std::span<T> dw) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      T sum = 0;
      for (int t = 0; t < tokens; ++t) sum += dy[static_cast<size_t>(t) * rows + r] * x[static_cast<size_t>(t) * cols + c];
      dw[static_cast<size_t>(r) * cols + c] = sum;
    }
  }
}

template <typename T>
void CausalAttentionForward(std::span<const T> q, std::span<const T> k, std::span<const T> v, int tokens,
                            const AttentionShape& shape, std::span<T> out) {
  const int d = shape.head_dim;
  const int q_width = shape.num_heads * d;
  const int kv_width = shape.num_kv_heads * d;
  const int group = shape.num_heads / shape.num_kv_heads;
  const T scale = T{1} / std::sqrt(static_cast<T>(d));
  std::vector<T> p(tokens);
  for (int h = 0; h < shape.num_heads; ++h) {
    const int kv_offset = (h / group) * d;
    for (int i = 0; i < tokens; ++i) {
      const T* qi = q.data() + static_cast<size_t>(i) * q_width + h * d;
      CausalProbabilities(qi, k.subspan(kv_offset), kv_width, i, shape.FirstSeen(i), d, scale, p);
      T* o = out.data() + static_cast<size_t>(i) * q_width + h * d;
      std::fill(o, o + d, T{0});
      for (int j = 0; j <= i; ++j) {
        for (int c = 0; c < d; ++c) o[c] += p[j] * v[static_cast<size_t>(j) * kv_width + kv_offset + c];
      }
    }
  }
}

template <typename T>
void CausalAttentionBackward(std::span<const T> q, std::span<const T> k, std::span<const T> v, std::span<const T> dout,
                             int tokens, const AttentionShape& shape, std::span<T> dq, std::span<T> dk, std::span<T> dv) {
  const int d = shape.head_dim;
  const int q_width = shape.num_heads * d;
  const int kv_width = shape.num_kv_heads * d;
  const int group = shape.num_heads / shape.num_kv_heads;
  const T scale = T{1} / std::sqrt(static_cast<T>(d));
  std::fill(dq.begin(), dq.end(), T{0});
  std::fill(dk.begin(), dk.end(), T{0});
  std::fill(dv.begin(), dv.end(), T{0});
  std::vector<T> p(tokens), dp(tokens);
  for (int h = 0; h < shape.num_heads; ++h) {
    const int kv_offset = (h / group) * d;
    for (int i = 0; i < tokens; ++i) {
      const T* qi = q.data() + static_cast<size_t>(i) * q_width + h * d;
      const T* doi = dout.data() + static_cast<size_t>(i) * q_width + h * d;
      CausalProbabilities(qi, k.subspan(kv_offset), kv_width, i, shape.FirstSeen(i), d, scale, p);
      // dS_ij = P_ij (dP_ij - sum_l P_il dP_il), with dP_ij = dout_i . v_j.
      T weighted = 0;
      for (int j = 0; j <= i; ++j) {
        T s = 0;
        for (int c = 0; c < d; ++c) s += doi[c] * v[static_cast<size_t>(j) * kv_width + kv_offset + c];
        dp[j] = s;
        weighted += p[j] * s;
      }
      T* dqi = dq.data() + static_cast<size_t>(i) * q_width + h * d;
      for (int j = 0; j <= i; ++j) {
        const T ds = p[j] * (dp[j] - weighted) * scale;
        const size_t kv_row = static_cast<size_t>(j) * kv_width + kv_offset;
        for (int c = 0; c < d; ++c) {
          dqi[c] += ds * k[kv_row + c];
          dk[kv_row + c] += ds * qi[c];
          dv[kv_row + c] += p[j] * doi[c];
        }
      }
    }
  }
}

}  // namespace reference

template <typename T>
void RmsNormForward(std::span<const T> x, std::span<const float> weight, float eps, std::span<T> y) {
  const size_t width = weight.size();
  for (size_t row = 0; row < x.size() / width; ++row) {
    const T* in = x.data() + row * width;
    double sum_squares = 0;
    for (size_t i = 0; i < width; ++i) sum_squares += static_cast<double>(in[i]) * in[i];
    const auto r = static_cast<T>(1.0 / std::sqrt(sum_squares / width + eps));
    for (size_t i = 0; i < width; ++i) y[row * width + i] = in[i] * r * weight[i];
  }
}

template <typename T>
void RmsNormBackward(std::span<const T> x, std::span<const float> weight, float eps, std::span<const T> dy, std::span<T> dx) {
  const size_t width = weight.size();
  for (size_t row = 0; row < x.size() / width; ++row) {
    const T* in = x.data() + row * width;
    const T* g = dy.data() + row * width;
    double sum_squares = 0;
    double projection = 0;  // sum_j dy_j weight_j x_j
    for (size_t i = 0; i < width; ++i) {
      sum_squares += static_cast<double>(in[i]) * in[i];
      projection += static_cast<double>(g[i]) * weight[i] * in[i];
    }
    const double r = 1.0 / std::sqrt(sum_squares / width + eps);
    const auto along_x = static_cast<T>(projection * r * r * r / width);
    for (size_t i = 0; i < width; ++i) dx[row * width + i] = static_cast<T>(r) * weight[i] * g[i] - in[i] * along_x;
  }
}

template <typename T>
void RopeForward(std::span<T> x, int tokens, int num_heads, int head_dim, const RopeFrequencies& f) {
  Rotate(x, tokens, num_heads, head_dim, f, +1);
}

template <typename T>
void RopeBackward(std::span<T> dx, int tokens, int num_heads, int head_dim, const RopeFrequencies& f) {
  Rotate(dx, tokens, num_heads, head_dim, f, -1);
}

template <typename T>
void GluForward(MlpActivation act, std::span<const T> gate, std::span<const T> up, std::span<T> h) {
  for (size_t i = 0; i < gate.size(); ++i) h[i] = Activation(act, gate[i]).value * up[i];
}

template <typename T>
void GluBackward(MlpActivation act, std::span<const T> gate, std::span<const T> up, std::span<const T> dh, std::span<T> dgate,
                 std::span<T> dup) {
  for (size_t i = 0; i < gate.size(); ++i) {
    const ActivationAt<T> a = Activation(act, gate[i]);
    dgate[i] = dh[i] * up[i] * a.derivative;
    dup[i] = dh[i] * a.value;
  }
}

template <typename T>
double CrossEntropy(std::span<const T> logits, std::span<const TokenId> targets, int vocab, std::span<T> dlogits) {
  const int rows = static_cast<int>(targets.size());
  double loss = 0;
#pragma omp parallel for reduction(+ : loss) schedule(static)
  for (int t = 0; t < rows; ++t) {
    const T* l = logits.data() + static_cast<size_t>(t) * vocab;
    T* dl = dlogits.data() + static_cast<size_t>(t) * vocab;
    const double max_logit = *std::max_element(l, l + vocab);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(l[i] - max_logit);
    const double log_sum = std::log(sum) + max_logit;
    loss += log_sum - l[targets[t]];
    for (int i = 0; i < vocab; ++i) dl[i] = static_cast<T>(std::exp(l[i] - log_sum) / rows);
    dl[targets[t]] -= static_cast<T>(1.0 / rows);
  }
  return loss / rows;
}

#define ANYPREC_INSTANTIATE(T)                                                                                          \
  template void reference::LinearForward<T>(std::span<const T>, int, std::span<const float>, int, int, std::span<T>);   \
  template void reference::LinearInputGradient<T>(std::span<const T>, int, std::span<const float>, int, int,            \
                                                  std::span<T>, bool);                                                 \
  template void reference::LinearWeightGradient<T>(std::span<const T>, std::span<const T>, int, int, int, std::span<T>); \
  template void reference::CausalAttentionForward<T>(std::span<const T>, std::span<const T>, std::span<const T>, int,   \
                                                     const AttentionShape&, std::span<T>);                             \
  template void reference::CausalAttentionBackward<T>(std::span<const T>, std::span<const T>, std::span<const T>,       \
                                                      std::span<const T>, int, const AttentionShape&, std::span<T>,    \
                                                      std::span<T>, std::span<T>);                                     \
  template void RmsNormForward<T>(std::span<const T>, std::span<const float>, float, std::span<T>);                     \
  template void RmsNormBackward<T>(std::span<const T>, std::span<const float>, float, std::span<const T>, std::span<T>); \
  template void RopeForward<T>(std::span<T>, int, int, int, const RopeFrequencies&);                                    \
  template void RopeBackward<T>(std::span<T>, int, int, int, const RopeFrequencies&);                                   \
  template void GluForward<T>(MlpActivation, std::span<const T>, std::span<const T>, std::span<T>);                     \
  template void GluBackward<T>(MlpActivation, std::span<const T>, std::span<const T>, std::span<const T>, std::span<T>, \
                               std::span<T>);                                                                           \
  template double CrossEntropy<T>(std::span<const T>, std::span<const TokenId>, int, std::span<T>);

ANYPREC_INSTANTIATE(float)
ANYPREC_INSTANTIATE(double)
#undef ANYPREC_INSTANTIATE

}  // namespace anyprec::grad
