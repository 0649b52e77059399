// The widths a command's --bits names.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace anyprec::cli {

// The widths `spec` names for `config`: "all" (every width an image offers, or 0 for an
// unquantized model) or a comma-separated list; each checked against the model.
absl::StatusOr<std::vector<int>> ParseWidths(const std::string& spec, const ModelConfig& config);

}  // namespace anyprec::cli
