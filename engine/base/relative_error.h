// How far an output is from its reference: max |got - want| over max |want|, the measure
// every kernel test bounds and the GPU's start-up check holds to the CPU. NaN anywhere in `got` (a poisoned element left unwritten, say)
// gives NaN, which fails any bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>

namespace anyprec {

template <typename Want>
double MaxRelativeError(std::span<const float> got, std::span<const Want> want) {
  double scale = 0;
  double error = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
    const double e = std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (std::isnan(e)) return NAN;
    error = std::max(error, e);
  }
  return error / std::max(scale, 1e-30);
}

template <typename Got, typename Want>
double MaxRelativeError(const Got& got, const Want& want) {
  return MaxRelativeError(std::span<const float>(got), std::span<const typename Want::value_type>(want));
}

}  // namespace anyprec
