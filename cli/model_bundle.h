// A model folder loaded for the command line: weights, config and its tokenizer.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
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

// Where a command finds its model: --model DIR [--tokenizer FILE].
struct ModelOptions {
  std::string model_dir;
  std::string tokenizer_path;  // empty: the folder's tokenizer.json
};

void AddModelOptions(CLI::App& command, ModelOptions& options);

absl::StatusOr<ModelBundle> LoadModelBundle(const ModelOptions& options);

}  // namespace anyprec::cli
