#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace anyprec {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", temperature));
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", top_k));
  if (!(top_p > 0 && top_p <= 1)) return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  return absl::OkStatus();
}

void ApplyRepetitionPenalty(std::span<float> logits, std::span<const TokenId> history, float penalty) {
  std::vector<bool> seen(logits.size());
  for (const TokenId id : history) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || seen[id]) continue;
    seen[id] = true;
    logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
  }
}

TokenId ArgMax(std::span<const float> logits) {
  return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

TokenId Sampler::Sample(std::span<const float> logits) {
  if (params_.temperature == 0) return ArgMax(logits);

  candidates_.clear();
  // NaN would break the ordering the sorts rely on; it never wins.
  for (size_t i = 0; i < logits.size(); ++i) {
    candidates_.emplace_back(std::isnan(logits[i]) ? -INFINITY : logits[i], static_cast<TokenId>(i));
  }
  const auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = params_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);

  // Softmax over the survivors, then the smallest prefix whose mass reaches top_p.
  const float max_logit = candidates_.front().first;
  if (!std::isfinite(max_logit)) return candidates_.front().second;
  double total = 0;
  for (auto& [value, id] : candidates_) total += (value = std::exp((value - max_logit) / params_.temperature));
  if (params_.top_p < 1) {
    double mass = 0;
    size_t cut = 0;
    while (cut < candidates_.size() && mass < params_.top_p * total) mass += candidates_[cut++].first;
    candidates_.resize(std::max<size_t>(cut, 1));
    total = mass > 0 ? mass : candidates_.front().first;
  }
  double r = std::uniform_real_distribution<double>(0, total)(rng_);
  for (const auto& [weight, id] : candidates_) {
    r -= weight;
    if (r <= 0) return id;
  }
  return candidates_.back().second;
}

}  // namespace anyprec
