// A model folder loaded for the command line: weights, config and its tokenizer.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec::cli {

struct ModelBundle {
  Model model;
  Tokenizer tokenizer;

  // [BOS] + ids of `text`; BOS comes from config.json, else from the tokenizer's template.
  std::vector<TokenId> EncodePrompt(const std::string& text) const;
  TokenId bos() const;
};

// Loads `model_dir`; the tokenizer is `tokenizer_path` if given, else the folder's tokenizer.json.
absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& model_dir, const std::string& tokenizer_path);

}  // namespace anyprec::cli
