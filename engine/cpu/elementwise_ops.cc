// The row-wise and element-wise operators of ops.h: RMSNorm, RoPE, the gated activations. Plain loops
// (the compiler vectorizes what pays), with no SIMD library or OpenMP, so that the
// GPU-only build compiles them too as the reference of the CUDA kernels.
#include <cmath>
#include <vector>

#include "engine/cpu/ops.h"

namespace anyprec::cpu {

void RmsNorm(std::span<const float> x, std::span<const float> weight, float eps, std::span<float> out) {
  const size_t width = weight.size();
  for (size_t row = 0; row < x.size() / width; ++row) {
    const float* in = x.data() + row * width;
    float* o = out.data() + row * width;
    double sum_squares = 0;
    for (size_t i = 0; i < width; ++i) sum_squares += static_cast<double>(in[i]) * in[i];
    const auto scale = static_cast<float>(1.0 / std::sqrt(sum_squares / width + eps));
    for (size_t i = 0; i < width; ++i) o[i] = in[i] * scale * weight[i];
  }
}

void Rope(std::span<float> x, std::span<const int> positions, int num_heads, int head_dim, std::span<const double> inv_freq,
          double attention_factor) {
  const int half = static_cast<int>(inv_freq.size());
  std::vector<float> cos_table(half);
  std::vector<float> sin_table(half);
  const size_t row_width = static_cast<size_t>(num_heads) * head_dim;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = positions[t] * inv_freq[i];
      cos_table[i] = static_cast<float>(std::cos(angle) * attention_factor);
      sin_table[i] = static_cast<float>(std::sin(angle) * attention_factor);
    }
    for (int h = 0; h < num_heads; ++h) {
      float* v = x.data() + t * row_width + static_cast<size_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float x0 = v[i];
        const float x1 = v[i + half];
        v[i] = x0 * cos_table[i] - x1 * sin_table[i];
        v[i + half] = x0 * sin_table[i] + x1 * cos_table[i];
      }
    }
  }
}

void Glu(MlpActivation act, std::span<float> gate, std::span<const float> up) {
  switch (act) {
    case MlpActivation::kSilu:
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
      break;
    case MlpActivation::kGelu:
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = 0.5f * gate[i] * (1.0f + std::erf(gate[i] * static_cast<float>(M_SQRT1_2))) * up[i];
      break;
    case MlpActivation::kGeluTanh: {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      for (size_t i = 0; i < gate.size(); ++i) {
        const float g = gate[i];
        gate[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
      }
      break;
    }
  }
}

}  // namespace anyprec::cpu
