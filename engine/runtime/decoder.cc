#include "engine/runtime/decoder.h"

#include <algorithm>
#include <utility>

namespace anyprec {

Decoder::Decoder(const ModelConfig& config, const Tokenizer& tokenizer, DecodingOptions options, std::vector<TokenId> prompt,
                 int max_positions)
    : eos_ids_(config.eos_token_ids),
      options_(std::move(options)),
      context_(std::move(prompt)),
      prompt_tokens_(static_cast<int>(context_.size())),
      max_positions_(max_positions),
      sampler_(options_.sampling),
      text_(tokenizer) {
  // The output's text follows the prompt's (a leading space, a character split across both).
  for (const TokenId id : context_) prompt_text_ += text_.Next(id);
}

DecodeStep Decoder::Next(std::span<const float> logits) {
  if (options_.repetition_penalty != 1.0f) {
    penalized_.assign(logits.begin(), logits.end());
    ApplyRepetitionPenalty(penalized_, context_, options_.repetition_penalty);
    logits = penalized_;
  }
  const TokenId next = sampler_.Sample(logits);
  DecodeStep step;
  if (!options_.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end()) {
    step.end = DecodeEnd::kEos;
    return step;
  }
  context_.push_back(next);
  step.token = next;
  step.text = text_.Next(next);
  const size_t text_before = output_.size();
  output_ += step.text;
  // A stop sequence may begin in an earlier token's text; only matches that reach this one's are new.
  std::optional<size_t> stop_at;
  for (const std::string& stop : options_.stop) {
    const size_t from = text_before >= stop.size() ? text_before - stop.size() + 1 : 0;
    if (const size_t hit = output_.find(stop, from); hit != std::string::npos) stop_at = std::min(stop_at.value_or(hit), hit);
  }
  if (stop_at) {
    step.text.resize(*stop_at > text_before ? *stop_at - text_before : 0);
    step.end = DecodeEnd::kStopSequence;
  } else if (generated() >= options_.max_new_tokens || static_cast<int>(context_.size()) >= max_positions_) {
    step.end = DecodeEnd::kLength;
  }
  return step;
}

}  // namespace anyprec
