// How one sequence's next tokens are chosen and become text, for every front (`anyprec
// generate` and the server's scheduler): the repetition penalty, sampling, EOS, stop
// sequences, the length limit and streamed detokenization. The prompt rule is prompt.h's.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/runtime/sampler.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

struct DecodingOptions {
  SamplingParams sampling;
  float repetition_penalty = 1.0f;  // CTRL's; 1 leaves the logits alone
  std::vector<std::string> stop;    // texts that end the output where they begin
  bool ignore_eos = false;          // go on past EOS tokens (benchmarks)
  int max_new_tokens = 256;
};

enum class DecodeEnd { kEos, kStopSequence, kLength };

struct DecodeStep {
  // The token chosen; none when it was EOS, which ends the sequence and is not output.
  std::optional<TokenId> token;
  // The text this step releases: what the token completes, less any end that could begin a
  // stop sequence (held back until it cannot), and cut where a stop sequence begins.
  std::string text;
  std::optional<DecodeEnd> end;  // then Finish() gives the rest of the text
};

class Decoder {
 public:
  // The sequence ends after options.max_new_tokens or when the context fills the model's
  // positions, whichever comes first (max_positions()). The tokenizer must outlive the decoder.
  Decoder(const ModelConfig& config, const Tokenizer& tokenizer, DecodingOptions options, std::vector<TokenId> prompt);

  // The next token from the logits of the last context position: Commit(Draw(Distribution(logits))).
  DecodeStep Next(std::span<const float> logits);

  // The steps of Next, apart, for speculative decoding, where tokens are drafted ahead of the
  // context and checked before they join it. The distribution the next token is drawn from,
  // given the logits after the context and then `drafted` (which the repetition penalty counts
  // as seen).
  TokenDistribution Distribution(std::span<const float> logits, std::span<const TokenId> drafted = {});
  TokenId Draw(const TokenDistribution& distribution) { return sampler_.Draw(distribution); }
  Verdict Verify(const TokenDistribution& target, const TokenDistribution& draft, TokenId drafted) {
    return sampler_.Verify(target, draft, drafted);
  }
  // Appends the chosen `token` to the output: EOS, stop sequences, the length limit, the text.
  DecodeStep Commit(TokenId token);
  std::mt19937_64 random_state() const { return sampler_.random_state(); }
  void RestoreRandomState(const std::mt19937_64& state) { sampler_.RestoreRandomState(state); }
  // The text still held when the sequence ends: what could have begun a stop sequence and an
  // unfinished character (as U+FFFD); nothing after a stop sequence.
  std::string Finish();

  // The prompt's text, as the detokenizer that continues it read it.
  const std::string& prompt_text() const { return prompt_text_; }
  // The prompt, then every token output so far: what the model reads next.
  const std::vector<TokenId>& context() const { return context_; }
  int prompt_tokens() const { return prompt_tokens_; }
  int generated() const { return static_cast<int>(context_.size()) - prompt_tokens_; }
  // The context length (prompt and output) at which the sequence ends: the KV positions it needs.
  int max_positions() const { return max_positions_; }

 private:
  std::vector<int> eos_ids_;
  DecodingOptions options_;
  std::vector<TokenId> context_;
  int prompt_tokens_;
  int max_positions_;
  Sampler sampler_;
  DecodeStream text_;
  std::string prompt_text_;
  // Where the earliest stop sequence that ends after output_[from] begins, if one does.
  std::optional<size_t> FindStop(size_t from) const;
  // Length of the longest end of output_ that is a proper beginning of a stop sequence.
  size_t HeldBack() const;

  std::string output_;   // the text output so far, where stop sequences are looked for
  size_t released_ = 0;  // bytes of output_ handed out
  bool stopped_ = false;
  std::vector<float> penalized_;
  std::vector<TokenId> seen_;  // the context and the drafted tokens, for the penalty
};

}  // namespace anyprec
