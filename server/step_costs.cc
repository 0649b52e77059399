#include "server/step_costs.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace anyprec::server {
namespace {

// Each new step's weight against the sums so far: about the last 100 steps count.
constexpr double kDecay = 0.99;

}  // namespace

void StepCosts::Record(int widest_bits, int rows, double seconds) {
  Fit& fit = fits_[widest_bits];
  const double n = rows;
  fit.weight = kDecay * fit.weight + 1;
  fit.rows = kDecay * fit.rows + n;
  fit.rows_squared = kDecay * fit.rows_squared + n * n;
  fit.seconds = kDecay * fit.seconds + seconds;
  fit.rows_seconds = kDecay * fit.rows_seconds + n * seconds;
}

std::optional<double> StepCosts::Fit::Slope() const {
  const double mean_rows = rows / weight, mean_seconds = seconds / weight;
  const double variance = rows_squared / weight - mean_rows * mean_rows;
  if (variance < 0.25) return std::nullopt;
  // Noise can tilt the line below zero cost per row; a row never makes a step cheaper.
  return std::max((rows_seconds / weight - mean_rows * mean_seconds) / variance, 0.0);
}

double StepCosts::Fit::Predict(double at_rows, double slope) const {
  return std::max(seconds / weight + slope * (at_rows - rows / weight), 0.0);
}

double StepCosts::SlopeNear(int bits) const {
  std::optional<double> slope;
  int distance = 0;
  for (const auto& [b, fit] : fits_) {
    const std::optional<double> s = fit.Slope();
    if (s && (!slope || std::abs(b - bits) < distance)) {
      slope = s;
      distance = std::abs(b - bits);
    }
  }
  return slope.value_or(0.0);
}

std::optional<double> StepCosts::Predict(int widest_bits, double rows) const {
  if (fits_.empty()) return std::nullopt;
  auto nearest = fits_.begin();
  for (auto it = fits_.begin(); it != fits_.end(); ++it) {
    if (std::abs(it->first - widest_bits) < std::abs(nearest->first - widest_bits)) nearest = it;
  }
  const double seconds = nearest->second.Predict(rows, SlopeNear(nearest->first));
  // A dense model's width is 0; nothing to scale by.
  if (nearest->first == widest_bits || nearest->first <= 0 || widest_bits <= 0) return seconds;
  return seconds * widest_bits / nearest->first;
}

}  // namespace anyprec::server
