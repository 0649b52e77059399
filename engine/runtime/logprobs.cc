#include "engine/runtime/logprobs.h"

#include <algorithm>
#include <cmath>

namespace anyprec {

double LogSumExp(std::span<const float> logits) {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (const float v : logits) sum += std::exp(v - max_logit);
  return std::log(sum) + max_logit;
}

std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int count, double log_sum_exp) {
  count = std::clamp(count, 0, static_cast<int>(logits.size()));
  const auto more_likely = [](const TokenLogprob& a, const TokenLogprob& b) {
    return a.logprob > b.logprob || (a.logprob == b.logprob && a.id < b.id);
  };
  // A min-heap of the best `count` logits so far: one pass, no copy of the vocabulary.
  std::vector<TokenLogprob> best;
  best.reserve(static_cast<size_t>(count) + 1);
  for (size_t i = 0; i < logits.size() && count > 0; ++i) {
    const TokenLogprob candidate{static_cast<TokenId>(i), logits[i]};
    if (static_cast<int>(best.size()) == count && !more_likely(candidate, best.front())) continue;
    best.push_back(candidate);
    std::push_heap(best.begin(), best.end(), more_likely);
    if (static_cast<int>(best.size()) > count) {
      std::pop_heap(best.begin(), best.end(), more_likely);
      best.pop_back();
    }
  }
  std::sort_heap(best.begin(), best.end(), more_likely);
  for (TokenLogprob& t : best) t.logprob = static_cast<float>(t.logprob - log_sum_exp);
  return best;
}

}  // namespace anyprec
