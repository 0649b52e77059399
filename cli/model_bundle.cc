#include "cli/model_bundle.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"

namespace anyprec::cli {

absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& model_dir, const std::string& tokenizer_path) {
  ASSIGN_OR_RETURN(Model model, Model::Load(model_dir));
  std::string path = tokenizer_path;
  if (path.empty()) {
    path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
    if (!std::filesystem::exists(path)) {
      return absl::NotFoundError(absl::StrCat(model_dir, ": no tokenizer.json; pass --tokenizer FILE"));
    }
  }
  ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::Load(path));
  if (tokenizer.vocab_size() > model.config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer has ", tokenizer.vocab_size(),
                                                   " tokens, more than the model's ", model.config().vocab_size));
  }
  return ModelBundle{std::move(model), std::move(tokenizer)};
}

TokenId ModelBundle::bos() const {
  if (model.config().bos_token_id >= 0) return model.config().bos_token_id;
  const std::vector<TokenId> template_ids = tokenizer.EncodeWithSpecialTokens("");
  return template_ids.empty() ? -1 : template_ids.front();
}

std::vector<TokenId> ModelBundle::EncodePrompt(const std::string& text) const {
  std::vector<TokenId> ids;
  if (const TokenId b = bos(); b >= 0) ids.push_back(b);
  const std::vector<TokenId> body = tokenizer.Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace anyprec::cli
