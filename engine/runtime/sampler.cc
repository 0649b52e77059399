#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

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

double TokenDistribution::Probability(TokenId id) const {
  for (const auto& [weight, candidate] : candidates) {
    if (candidate == id) return weight / total;
  }
  return 0;
}

TokenDistribution Sampler::Distribution(std::span<const float> logits) const {
  TokenDistribution d;
  if (params_.temperature == 0) {
    d.candidates = {{1.0f, ArgMax(logits)}};
    d.total = 1;
    return d;
  }
  std::vector<std::pair<float, TokenId>>& candidates = d.candidates;
  candidates.reserve(logits.size());
  // NaN would break the ordering the sorts rely on; it never wins.
  for (size_t i = 0; i < logits.size(); ++i) {
    candidates.emplace_back(std::isnan(logits[i]) ? -INFINITY : logits[i], static_cast<TokenId>(i));
  }
  const auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = params_.top_k;
    std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(), by_logit);
  } else {
    std::sort(candidates.begin(), candidates.end(), by_logit);
  }
  candidates.resize(keep);

  // Softmax over the survivors, then the smallest prefix whose mass reaches top_p.
  const float max_logit = candidates.front().first;
  if (!std::isfinite(max_logit)) {
    candidates = {{1.0f, candidates.front().second}};
    d.total = 1;
    return d;
  }
  double total = 0;
  for (auto& [value, id] : candidates) total += (value = std::exp((value - max_logit) / params_.temperature));
  if (params_.top_p < 1) {
    double mass = 0;
    size_t cut = 0;
    while (cut < candidates.size() && mass < params_.top_p * total) mass += candidates[cut++].first;
    candidates.resize(std::max<size_t>(cut, 1));
    total = mass > 0 ? mass : candidates.front().first;
  }
  d.total = total;
  return d;
}

TokenId Sampler::Draw(const TokenDistribution& distribution) {
  const auto& candidates = distribution.candidates;
  double r = std::uniform_real_distribution<double>(0, distribution.total)(rng_);
  for (const auto& [weight, id] : candidates) {
    r -= weight;
    if (r <= 0) return id;
  }
  return candidates.back().second;
}

Verdict Sampler::Verify(const TokenDistribution& target, const TokenDistribution& draft, TokenId drafted) {
  if (params_.temperature == 0) {
    const TokenId choice = target.candidates.front().second;
    return {choice, choice == drafted};
  }
  const double p = target.Probability(drafted);
  const double q = draft.Probability(drafted);
  // q > 0: the draft drew the token from q.
  if (q > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) * q < p) return {drafted, true};
  // The residual max(0, p - q) over the target's candidates (where p is 0, so is the residual).
  std::unordered_map<TokenId, double> draft_probability;
  draft_probability.reserve(draft.candidates.size());
  for (const auto& [weight, id] : draft.candidates) draft_probability[id] = weight / draft.total;
  TokenDistribution residual;
  for (const auto& [weight, id] : target.candidates) {
    const auto it = draft_probability.find(id);
    const double excess = weight / target.total - (it == draft_probability.end() ? 0.0 : it->second);
    if (excess > 0) {
      residual.candidates.emplace_back(static_cast<float>(excess), id);
      residual.total += static_cast<float>(excess);
    }
  }
  // Rounding can leave nothing where p and q agree to float precision; p itself then stands in.
  return {residual.candidates.empty() ? Draw(target) : Draw(residual), false};
}

}  // namespace anyprec
