#include "cli/widths.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace anyprec::cli {

absl::StatusOr<std::vector<int>> ParseWidths(const std::string& spec, const ModelConfig& config) {
  const int seed = config.quantization ? config.quantization->seed_bits : 0;
  const int max = config.quantization ? config.quantization->max_bits : 0;
  std::vector<int> widths;
  if (spec == "all") {
    for (int b = seed; b <= max; ++b) widths.push_back(b);
    return widths;
  }
  for (const absl::string_view part : absl::StrSplit(spec, ',')) {
    int b = 0;
    if (!absl::SimpleAtoi(part, &b)) return absl::InvalidArgumentError(absl::StrCat("--bits: '", std::string(part), "' is not a width"));
    if (b != 0 || config.quantization) {
      if (b < seed || b > max) {
        return absl::InvalidArgumentError(absl::StrCat("--bits: ", b, " is outside the model's widths ", seed, "..", max));
      }
    }
    widths.push_back(b);
  }
  return widths;
}

}  // namespace anyprec::cli
