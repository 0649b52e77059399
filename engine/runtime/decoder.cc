#include "engine/runtime/decoder.h"

#include <algorithm>
#include <utility>

#include "engine/runtime/prompt.h"

namespace anyprec {

Decoder::Decoder(const ModelConfig& config, const Tokenizer& tokenizer, DecodingOptions options, std::vector<TokenId> prompt)
    : eos_ids_(StopTokens(config, tokenizer)),
      options_(std::move(options)),
      context_(std::move(prompt)),
      prompt_tokens_(static_cast<int>(context_.size())),
      max_positions_(static_cast<int>(
          std::min<long>(static_cast<long>(prompt_tokens_) + options_.max_new_tokens, config.context_length()))),
      sampler_(options_.sampling),
      text_(tokenizer) {
  // The output's text follows the prompt's (a leading space, a character split across both).
  for (const TokenId id : context_) prompt_text_ += text_.Next(id);
}

DecodeStep Decoder::Next(std::span<const float> logits) { return Commit(Draw(Distribution(logits))); }

TokenDistribution Decoder::Distribution(std::span<const float> logits, std::span<const TokenId> drafted) {
  if (options_.repetition_penalty != 1.0f) {
    penalized_.assign(logits.begin(), logits.end());
    std::span<const TokenId> seen = context_;
    if (!drafted.empty()) {
      seen_.assign(context_.begin(), context_.end());
      seen_.insert(seen_.end(), drafted.begin(), drafted.end());
      seen = seen_;
    }
    ApplyRepetitionPenalty(penalized_, seen, options_.repetition_penalty);
    logits = penalized_;
  }
  return sampler_.Distribution(logits);
}

DecodeStep Decoder::Commit(TokenId next) {
  DecodeStep step;
  if (!options_.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end()) {
    step.end = DecodeEnd::kEos;
    return step;
  }
  context_.push_back(next);
  step.token = next;
  const size_t before = output_.size();
  output_ += text_.Next(next);
  if (const std::optional<size_t> stop_at = FindStop(before)) {
    // What began the stop sequence was held back, so nothing of it has been released.
    step.text = output_.substr(released_, std::max(*stop_at, released_) - released_);
    released_ = output_.size();
    stopped_ = true;
    step.end = DecodeEnd::kStopSequence;
    return step;
  }
  const size_t releasable = output_.size() - HeldBack();
  step.text = output_.substr(released_, releasable - released_);
  released_ = releasable;
  if (static_cast<int>(context_.size()) >= max_positions_) step.end = DecodeEnd::kLength;
  return step;
}

std::string Decoder::Finish() {
  if (stopped_) return "";
  stopped_ = true;
  const size_t before = output_.size();
  output_ += text_.Finish();
  const size_t end = FindStop(before).value_or(output_.size());
  std::string rest = output_.substr(released_, std::max(end, released_) - released_);
  released_ = output_.size();
  return rest;
}

std::optional<size_t> Decoder::FindStop(size_t from) const {
  std::optional<size_t> earliest;
  for (const std::string& stop : options_.stop) {
    const size_t start = from >= stop.size() ? from - stop.size() + 1 : 0;
    if (const size_t hit = output_.find(stop, start); hit != std::string::npos) earliest = std::min(earliest.value_or(hit), hit);
  }
  return earliest;
}

size_t Decoder::HeldBack() const {
  size_t held = 0;
  for (const std::string& stop : options_.stop) {
    for (size_t length = std::min(stop.size() - 1, output_.size()); length > held; --length) {
      if (output_.compare(output_.size() - length, length, stop, 0, length) == 0) {
        held = length;
        break;
      }
    }
  }
  return held;
}

}  // namespace anyprec
