// Widths: a b-bit logical model reads the first b bitplanes of an image, so an image of seed
// width s and n planes serves every width in s..n. An unquantized model has one width, 0 (its
// dense weights). The one place where a width is checked against a range.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/model_config.h"

namespace anyprec {

// The widths min..max, both included: what an image serves, or what a tenant may use.
struct WidthRange {
  int min = 0;
  int max = 0;

  bool Contains(int bits) const { return bits >= min && bits <= max; }
  std::string ToString() const { return absl::StrCat(min, "..", max); }
  // OK when `bits` is in the range; else INVALID_ARGUMENT "<what> <bits> is outside <whose>
  // widths <min>..<max>".
  absl::Status Check(int bits, std::string_view what, std::string_view whose) const {
    if (Contains(bits)) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " ", bits, " is outside ", std::string(whose), " widths ", ToString()));
  }
};

// The widths `config`'s model serves: seed_bits..max_bits of an image, 0..0 unquantized.
inline WidthRange ModelWidths(const ModelConfig& config) {
  if (!config.quantization) return {0, 0};
  return {config.quantization->seed_bits, config.quantization->max_bits};
}

}  // namespace anyprec
