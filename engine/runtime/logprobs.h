// Log-probabilities of a next-token distribution, as an answer reports them.
#pragma once

#include <span>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

// The most alternatives per token an answer may ask for (OpenAI's bound on top_logprobs).
inline constexpr int kMaxTopLogprobs = 20;

struct TokenLogprob {
  TokenId id;
  float logprob;  // log softmax(logits)[id]
};

// log(sum(exp(logits))), computed in double so that a vocabulary of 150k logits loses nothing.
double LogSumExp(std::span<const float> logits);

// The `count` most likely ids of softmax(logits), most likely first; among equal logits the
// lower id comes first, so that the list does not depend on how the search visits the vocabulary.
// `count` is clamped to the vocabulary. `log_sum_exp` is LogSumExp(logits).
std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int count, double log_sum_exp);

}  // namespace anyprec
