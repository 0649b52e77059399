#include "engine/runtime/prompt.h"

namespace anyprec {

TokenId BosToken(const ModelConfig& config, const Tokenizer& tokenizer) {
  if (config.bos_token_id >= 0) return config.bos_token_id;
  const std::vector<TokenId> template_ids = tokenizer.EncodeWithSpecialTokens("");
  return template_ids.empty() ? -1 : template_ids.front();
}

std::vector<TokenId> EncodePrompt(const ModelConfig& config, const Tokenizer& tokenizer, std::string_view text) {
  std::vector<TokenId> ids;
  if (const TokenId bos = BosToken(config, tokenizer); bos >= 0) ids.push_back(bos);
  const std::vector<TokenId> body = tokenizer.Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace anyprec
