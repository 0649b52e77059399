// tokenizer_config.json: what Hugging Face's tokenizer classes read beside tokenizer.json
// for the special tokens around a text (add_bos_token, add_eos_token) and for the end of a
// generation (eos_token).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/tokenizer/tokenizer_impl.h"
#include "nlohmann/json.hpp"

namespace anyprec {
namespace {

using nlohmann::json;

// The ids a token field names: null, a string, an AddedToken object ({"content": ...}) or a
// list of those.
absl::StatusOr<std::vector<TokenId>> TokenIds(const json& field, const char* key, const TokenizerParts& parts, const std::string& path) {
  std::vector<TokenId> ids;
  const auto add = [&](const json& token) -> absl::Status {
    const json* content = &token;
    if (token.is_object()) {
      const auto it = token.find("content");
      if (it == token.end()) return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' is an object without 'content'"));
      content = &*it;
    }
    if (!content->is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' must name tokens as strings"));
    const std::string text = content->get<std::string>();
    const auto found = std::find(parts.pieces.begin(), parts.pieces.end(), text);
    if (found == parts.pieces.end()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' names '", text, "', which the vocabulary does not hold"));
    }
    ids.push_back(static_cast<TokenId>(found - parts.pieces.begin()));
    return absl::OkStatus();
  };
  if (field.is_null()) return ids;
  if (field.is_array()) {
    for (const json& token : field) RETURN_IF_ERROR(add(token));
  } else {
    RETURN_IF_ERROR(add(field));
  }
  return ids;
}

}  // namespace

absl::Status ApplyTokenizerConfig(const std::string& path, TokenizerParts& parts) {
  ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path));
  const json config = json::parse(text, nullptr, false);
  if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  const auto field = [&](const char* key) -> const json& {
    static const json kNull;
    const auto it = config.find(key);
    return it == config.end() ? kNull : *it;
  };
  std::vector<TokenId> bos;
  ASSIGN_OR_RETURN(bos, TokenIds(field("bos_token"), "bos_token", parts, path));
  ASSIGN_OR_RETURN(parts.eos_ids, TokenIds(field("eos_token"), "eos_token", parts, path));
  // As LlamaTokenizerFast.update_post_processor: [bos] + text + [eos] by the two flags.
  for (const auto& [key, add_bos] : {std::pair{"add_bos_token", true}, std::pair{"add_eos_token", false}}) {
    const json& flag = field(key);
    if (flag.is_null()) continue;
    if (!flag.is_boolean()) return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' must be true or false"));
    const std::vector<TokenId>& token = add_bos ? bos : parts.eos_ids;
    if (flag.get<bool>() && token.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' is true but '", add_bos ? "bos_token" : "eos_token",
                                                     "' names no single token"));
    }
    std::vector<TokenId>& ends = add_bos ? parts.template_prefix : parts.template_suffix;
    ends = flag.get<bool>() ? token : std::vector<TokenId>{};
    if (add_bos) parts.adds_bos = flag.get<bool>();
  }
  return absl::OkStatus();
}

}  // namespace anyprec
