// How a text becomes a prompt, for every front (anyprec generate and eval, the server).
#pragma once

#include <string_view>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

// The token that opens every prompt: where tokenizer_config.json says add_bos_token, the BOS
// its template then adds or none (Qwen's false: none, whatever config.json's bos_token_id);
// else config.json's BOS id, else the first token the tokenizer's template adds to an empty
// text (e.g. a tokenizer.json post-processor's); -1 for none.
TokenId BosToken(const ModelConfig& config, const Tokenizer& tokenizer);

// The tokens that end a generation: config.json's and generation_config.json's eos_token_id
// (ModelConfig::eos_token_ids) and tokenizer_config.json's eos_token.
std::vector<TokenId> StopTokens(const ModelConfig& config, const Tokenizer& tokenizer);

// [BOS] + the ids of `text`.
std::vector<TokenId> EncodePrompt(const ModelConfig& config, const Tokenizer& tokenizer, std::string_view text);

}  // namespace anyprec
