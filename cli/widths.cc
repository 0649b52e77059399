#include "cli/widths.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model/width.h"

namespace anyprec::cli {

absl::StatusOr<std::vector<int>> ParseWidths(const std::string& spec, const ModelConfig& config) {
  const WidthRange served = ModelWidths(config);
  std::vector<int> widths;
  if (spec == "all") {
    for (int b = served.min; b <= served.max; ++b) widths.push_back(b);
    return widths;
  }
  for (const absl::string_view part : absl::StrSplit(spec, ',')) {
    int b = 0;
    if (!absl::SimpleAtoi(part, &b)) return absl::InvalidArgumentError(absl::StrCat("--bits: '", std::string(part), "' is not a width"));
    if (const absl::Status checked = served.Check(b, "--bits", "the model's"); !checked.ok()) return checked;
    widths.push_back(b);
  }
  return widths;
}

}  // namespace anyprec::cli
