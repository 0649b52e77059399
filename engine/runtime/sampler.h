// Picks the next token from logits: greedy at temperature 0, otherwise temperature,
// top-k and top-p (nucleus) sampling from a seeded generator, so runs are reproducible.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 0.95f;       // 1: no limit
  uint64_t seed = 0;

  absl::Status Validate() const;
};

// What a sampler draws a token from: the candidates that survive top-k and top-p, most likely
// first, each weighted exp((logit - max) / temperature); `total` is their sum. Greedy
// (temperature 0) leaves one candidate of weight 1.
struct TokenDistribution {
  std::vector<std::pair<float, TokenId>> candidates;  // (weight, id)
  double total = 0;

  // The probability of `id`: its weight over the total, 0 when it is not a candidate.
  double Probability(TokenId id) const;
};

// Speculative sampling's verdict on a drafted token (see Sampler::Verify).
struct Verdict {
  TokenId token;  // the drafted token when accepted, else the one drawn in its place
  bool accepted;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  TokenId Sample(std::span<const float> logits) { return Draw(Distribution(logits)); }

  TokenDistribution Distribution(std::span<const float> logits) const;
  TokenId Draw(const TokenDistribution& distribution);
  // Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a token `drafted` from
  // `draft` is accepted with probability min(1, p(x) / q(x)), p the target's distribution and q
  // the draft's; otherwise a token is drawn from max(0, p − q), normalized. The output then
  // follows `target` exactly, whatever the draft. Greedy distributions make this "accept when
  // the target's choice is the drafted token, else take the target's choice", with no draw.
  Verdict Verify(const TokenDistribution& target, const TokenDistribution& draft, TokenId drafted);

  // The generator's state, and going back to one: work that is thrown away and done again (a
  // speculative cycle cut short by preemption) then draws what it drew the first time.
  std::mt19937_64 random_state() const { return rng_; }
  void RestoreRandomState(const std::mt19937_64& state) { rng_ = state; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// CTRL's repetition penalty (Keskar et al., 2019), as Hugging Face applies it: the logit of
// every token in `history` is divided by `penalty` when positive, multiplied when negative.
void ApplyRepetitionPenalty(std::span<float> logits, std::span<const TokenId> history, float penalty);

// Index of the largest logit (the lowest index among equals).
TokenId ArgMax(std::span<const float> logits);

}  // namespace anyprec
