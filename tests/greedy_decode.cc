#include "tests/greedy_decode.h"

#include "engine/runtime/sampler.h"
#include "gtest/gtest.h"

namespace anyprec::testing {

std::vector<TokenId> GreedyDecode(const Model& model, std::vector<TokenId> prompt, int steps) {
  Transformer transformer(model);
  KvCache cache(model.config(), static_cast<int>(prompt.size()) + steps);
  std::vector<float> logits(model.config().vocab_size);
  std::vector<TokenId> generated;
  std::vector<TokenId> input = std::move(prompt);
  for (int i = 0; i < steps; ++i) {
    EXPECT_TRUE(transformer.Forward(input, cache, LogitsFor::kLastToken, logits).ok());
    generated.push_back(ArgMax(logits));
    input = {generated.back()};
  }
  return generated;
}

}  // namespace anyprec::testing
