#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>

namespace anyprec {

RopeFrequencies RopeFrequenciesFor(const ModelConfig& config, int sequence_length) {
  const RopeScaling& s = config.rope_scaling;
  const int dim = config.rotary_dim;
  const int half = dim / 2;
  double base = config.rope_theta;
  if (s.type == RopeScaling::Type::kDynamic) {
    // _compute_dynamic_ntk_parameters: a larger base once the sequence outgrows the context.
    const double max_positions = config.max_position_embeddings;
    const double length = std::max<double>(sequence_length, max_positions);
    base *= std::pow(s.factor * length / max_positions - (s.factor - 1), static_cast<double>(dim) / (dim - 2));
  }
  RopeFrequencies out;
  out.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) out.inv_freq[i] = 1.0 / std::pow(base, 2.0 * i / dim);

  switch (s.type) {
    case RopeScaling::Type::kNone:
    case RopeScaling::Type::kDynamic:
      break;
    case RopeScaling::Type::kLinear:
      for (double& f : out.inv_freq) f /= s.factor;
      break;
    case RopeScaling::Type::kLlama3: {
      // _compute_llama3_parameters: long wavelengths divided by the factor, short ones kept,
      // those between blended.
      const double context = s.original_max_positions;
      const double low_wavelength = context / s.low_freq_factor;
      const double high_wavelength = context / s.high_freq_factor;
      for (double& f : out.inv_freq) {
        const double wavelength = 2 * std::numbers::pi / f;
        if (wavelength > low_wavelength) {
          f /= s.factor;
        } else if (!(wavelength < high_wavelength)) {
          const double smooth = (context / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
          f = (1 - smooth) * f / s.factor + smooth * f;
        }
      }
      break;
    }
    case RopeScaling::Type::kYarn: {
      // _compute_yarn_parameters: a linear ramp between the dims that turn beta_fast and
      // beta_slow times over the original context, from extrapolation to interpolation.
      const auto correction_dim = [&](double rotations) {
        return dim * std::log(s.original_max_positions / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
      };
      double low = correction_dim(s.beta_fast);
      double high = correction_dim(s.beta_slow);
      if (s.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, dim - 1.0);
      if (low == high) high += 0.001;
      for (int i = 0; i < half; ++i) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        out.inv_freq[i] = out.inv_freq[i] * (1 - ramp) + out.inv_freq[i] / s.factor * ramp;
      }
      out.attention_factor = s.attention_factor;
      break;
    }
  }
  return out;
}

RopeTable::RopeTable(ModelConfig config) : config_(std::move(config)), frequencies_(RopeFrequenciesFor(config_, 0)) {}

const RopeFrequencies& RopeTable::For(int sequence_length) {
  // Lengths within the context all give the unscaled frequencies.
  const int length = dynamic() ? std::max(sequence_length, config_.max_position_embeddings) : 0;
  if (length != length_) {
    frequencies_ = RopeFrequenciesFor(config_, length);
    length_ = length;
    ++computed_;
  }
  return frequencies_;
}

}  // namespace anyprec
