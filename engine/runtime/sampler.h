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

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  TokenId Sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, TokenId>> candidates_;
};

// CTRL's repetition penalty (Keskar et al., 2019), as Hugging Face applies it: the logit of
// every token in `history` is divided by `penalty` when positive, multiplied when negative.
void ApplyRepetitionPenalty(std::span<float> logits, std::span<const TokenId> history, float penalty);

// Index of the largest logit (the lowest index among equals).
TokenId ArgMax(std::span<const float> logits);

}  // namespace anyprec
