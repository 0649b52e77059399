// Log-probabilities for answers: the top-k search against a full sort of the vocabulary.
#include "engine/runtime/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"

namespace anyprec {
namespace {

// The reference: every id sorted by logit, higher first, lower id first among equals.
std::vector<TokenLogprob> SortedReference(std::span<const float> logits, int count) {
  std::vector<TokenId> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](TokenId a, TokenId b) { return logits[a] > logits[b]; });
  double sum = 0;
  for (const float v : logits) sum += std::exp(static_cast<double>(v));
  std::vector<TokenLogprob> out;
  for (int i = 0; i < std::min<int>(count, static_cast<int>(ids.size())); ++i) {
    out.push_back({ids[i], static_cast<float>(logits[ids[i]] - std::log(sum))});
  }
  return out;
}

TEST(TopLogprobs, EqualsTheSortedVocabularyTiesIncluded) {
  std::mt19937 rng(7);
  for (const int vocab : {1, 5, 512, 32000}) {
    std::vector<float> logits(vocab);
    // Few distinct values, so that ties cross the cut.
    std::uniform_int_distribution<int> level(0, 40);
    for (float& v : logits) v = static_cast<float>(level(rng)) * 0.25f - 5.0f;
    for (const int count : {0, 1, 3, 20, vocab + 4}) {
      SCOPED_TRACE(::testing::Message() << "vocab " << vocab << ", count " << count);
      const std::vector<TokenLogprob> got = TopLogprobs(logits, count, LogSumExp(logits));
      const std::vector<TokenLogprob> want = SortedReference(logits, count);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].id, want[i].id) << i;
        EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-5) << i;
      }
    }
  }
}

TEST(LogSumExp, HoldsForLogitsWhoseExpOverflowsFloat) {
  const std::vector<float> logits = {1000.0f, 1000.0f, -1000.0f};
  EXPECT_NEAR(LogSumExp(logits), 1000.0 + std::log(2.0), 1e-9);
  const std::vector<TokenLogprob> top = TopLogprobs(logits, 2, LogSumExp(logits));
  ASSERT_EQ(top.size(), 2u);
  EXPECT_NEAR(top[0].logprob, -std::log(2.0), 1e-6);
  EXPECT_EQ(top[0].id, 0);
  EXPECT_EQ(top[1].id, 1);
}

}  // namespace
}  // namespace anyprec
