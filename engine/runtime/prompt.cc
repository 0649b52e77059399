#include "engine/runtime/prompt.h"

#include <algorithm>

namespace anyprec {

TokenId BosToken(const ModelConfig& config, const Tokenizer& tokenizer) {
  const std::vector<TokenId> template_ids = tokenizer.EncodeWithSpecialTokens("");
  const TokenId template_bos = template_ids.empty() ? -1 : template_ids.front();
  if (const std::optional<bool> adds = tokenizer.adds_bos(); adds.has_value()) return *adds ? template_bos : -1;
  return config.bos_token_id >= 0 ? config.bos_token_id : template_bos;
}

std::vector<TokenId> StopTokens(const ModelConfig& config, const Tokenizer& tokenizer) {
  std::vector<TokenId> ids = config.eos_token_ids;
  for (const TokenId id : tokenizer.eos_ids()) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

std::vector<TokenId> EncodePrompt(const ModelConfig& config, const Tokenizer& tokenizer, std::string_view text) {
  std::vector<TokenId> ids;
  if (const TokenId bos = BosToken(config, tokenizer); bos >= 0) ids.push_back(bos);
  const std::vector<TokenId> body = tokenizer.Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace anyprec
