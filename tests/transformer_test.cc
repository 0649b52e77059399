// The forward pass against the independent float64 references in shared/models/README.md.
#include "engine/runtime/transformer.h"

#include <cmath>
#include <vector>

#include "engine/base/mapped_file.h"
#include "engine/runtime/perplexity.h"
#include "engine/runtime/sampler.h"
#include "gtest/gtest.h"
#include "tests/greedy_decode.h"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

using testing::GreedyDecode;
using testing::SharedPath;

Model LoadModel(const std::string& relative) {
  auto model = Model::Load(SharedPath(relative));
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) std::abort();
  return std::move(*model);
}

Tokenizer LoadTokenizer(const std::string& relative) {
  auto tokenizer = Tokenizer::Load(SharedPath(relative));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) std::abort();
  return std::move(*tokenizer);
}

TEST(Transformer, TinyStoriesGreedyMatchesReference) {
  for (const char* dir : {"models/TinyStories-656K", "models/TinyStories-656K-f32"}) {
    SCOPED_TRACE(dir);
    const Model model = LoadModel(dir);
    // Step 5 is a near-tie (logit gap 0.048), so 5 tokens is the safe exact prefix.
    EXPECT_EQ(GreedyDecode(model, {1, 80, 147, 201, 282, 57}, 5), (std::vector<TokenId>{313, 598, 303, 1049, 1468}));
  }
}

TEST(Transformer, Stories260KGreedyMatchesReferenceFor100Tokens) {
  const Model model = LoadModel("models/stories260K-hf");
  const std::vector<TokenId> ids = GreedyDecode(model, {1}, 100);
  EXPECT_EQ(std::vector<TokenId>(ids.begin(), ids.begin() + 16),
            (std::vector<TokenId>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338}));
  // llama2.c's own greedy reference for stories260K (its test_all.py, 200 steps); the
  // text of the first 100 tokens must be a prefix of it.
  const std::string reference =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
      "big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" "
      "Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\nLily "
      "was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily didn't want to "
      "help her mom, so she";
  const Tokenizer tokenizer = LoadTokenizer("models/stories260K/tok512.bin");
  const std::string text = tokenizer.Decode(ids);
  EXPECT_GT(text.size(), 250u);
  EXPECT_TRUE(reference.starts_with(text)) << text;
}

TEST(Transformer, BatchedPrefillEqualsTokenByToken) {
  const Model model = LoadModel("models/TinyStories-656K");
  const int vocab = model.config().vocab_size;
  const std::vector<TokenId> tokens = {1, 80, 147, 201, 282, 57, 313, 598, 303, 1049};
  Transformer batched(model);
  KvCache cache_a(model.config(), 16);
  std::vector<float> all(tokens.size() * vocab);
  ASSERT_TRUE(batched.Forward(tokens, cache_a, LogitsFor::kAllTokens, all).ok());

  Transformer stepwise(model);
  KvCache cache_b(model.config(), 16);
  std::vector<float> one(vocab);
  for (size_t t = 0; t < tokens.size(); ++t) {
    ASSERT_TRUE(stepwise.Forward(std::span<const TokenId>(&tokens[t], 1), cache_b, LogitsFor::kLastToken, one).ok());
    for (int v = 0; v < vocab; ++v) ASSERT_NEAR(one[v], all[t * vocab + v], 1e-4) << "token " << t;
  }
}

TEST(Transformer, RejectsBadCalls) {
  const Model model = LoadModel("models/TinyStories-656K");
  Transformer transformer(model);
  KvCache cache(model.config(), 4);
  std::vector<float> logits(model.config().vocab_size);
  const std::vector<TokenId> too_many = {1, 2, 3, 4, 5};
  EXPECT_EQ(transformer.Forward(too_many, cache, LogitsFor::kLastToken, logits).code(), absl::StatusCode::kOutOfRange);
  const std::vector<TokenId> bad_id = {1, 5000};
  EXPECT_EQ(transformer.Forward(bad_id, cache, LogitsFor::kLastToken, logits).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> small(3);
  EXPECT_EQ(transformer.Forward({too_many.data(), 1}, cache, LogitsFor::kLastToken, small).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.length(), 0) << "a rejected call leaves the cache untouched";
}

struct PerplexityCase {
  const char* name;
  const char* model;
  const char* tokenizer;
  const char* text;
  double reference;  // K = 8, from shared/models/README.md
};

void PrintTo(const PerplexityCase& c, std::ostream* os) { *os << c.name; }

class PerplexityTest : public ::testing::TestWithParam<PerplexityCase> {};

// The case's perplexity by the protocol (8 windows of 511 tokens), keys and values stored as
// `kv_dtype`.
absl::StatusOr<PerplexityResult> PerplexityOf(const PerplexityCase& c, cpu::KvDType kv_dtype) {
  const Model model = LoadModel(c.model);
  const Tokenizer tokenizer = LoadTokenizer(c.tokenizer);
  auto text = ReadTextFile(SharedPath(c.text));
  if (!text.ok()) return text.status();
  Transformer transformer(model);
  return EvaluatePerplexity(transformer, tokenizer.Encode(*text), model.config().bos_token_id, 8, 511, {}, kv_dtype);
}

TEST_P(PerplexityTest, MatchesReferenceWithinOneThousandth) {
  const PerplexityCase& c = GetParam();
  auto result = PerplexityOf(c, cpu::KvDType::kF32);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, 8 * 511);
  EXPECT_NEAR(result->perplexity / c.reference, 1.0, 1e-3) << "ppl " << result->perplexity;
}

// Keys and values stored in 16 bits move the reference perplexity by little: fp16 (the
// default) measured within 0.005%, bf16 within 0.25%.
TEST_P(PerplexityTest, SixteenBitKvCacheKeepsPerplexity) {
  const PerplexityCase& c = GetParam();
  for (const auto& [dtype, tolerance] : {std::pair{cpu::KvDType::kF16, 2e-4}, std::pair{cpu::KvDType::kBF16, 5e-3}}) {
    auto result = PerplexityOf(c, dtype);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_NEAR(result->perplexity / c.reference, 1.0, tolerance) << cpu::KvDTypeName(dtype) << " ppl " << result->perplexity;
  }
}

// A model whose prompts open with no BOS (Qwen's tokenizer_config says add_bos_token false):
// each window takes one more text token, which opens it unscored; the score is the NLL of the
// window's other tokens, as one pass over those tokens gives it.
TEST(Perplexity, WithoutABosEachWindowOpensWithItsFirstToken) {
  const Model model = LoadModel("models/stories260K-hf");
  Transformer transformer(model);
  std::vector<TokenId> text(3 * 17);
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<TokenId>(3 + (i * 37) % 500);
  auto result = EvaluatePerplexity(transformer, text, -1, 3, 16);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, 3 * 16);
  double nll = 0;
  for (int w = 0; w < 3; ++w) {
    auto window = EvaluateTokenIds(transformer, std::span<const TokenId>(text).subspan(w * 17, 17));
    ASSERT_TRUE(window.ok()) << window.status();
    nll += window->mean_nll * window->tokens;
  }
  EXPECT_NEAR(result->mean_nll, nll / (3 * 16), 1e-9);
  EXPECT_FALSE(EvaluatePerplexity(transformer, text, -1, 4, 16).ok()) << "51 tokens hold 3 windows of 16 + 1, not 4";
}

INSTANTIATE_TEST_SUITE_P(
    SharedModels, PerplexityTest,
    ::testing::Values(
        PerplexityCase{"TinyStories656K_TinyStories", "models/TinyStories-656K", "models/TinyStories-656K/tokenizer.json", "data/tinystories/tinystories_val_head.txt", 35.183},
        PerplexityCase{"TinyStories656K_WikiText2", "models/TinyStories-656K", "models/TinyStories-656K/tokenizer.json", "data/wikitext-2-raw/wiki.test.raw", 707.59},
        PerplexityCase{"TinyStories656KF32_TinyStories", "models/TinyStories-656K-f32", "models/TinyStories-656K-f32/tokenizer.json", "data/tinystories/tinystories_val_head.txt", 35.183},
        PerplexityCase{"TinyStories656KF32_WikiText2", "models/TinyStories-656K-f32", "models/TinyStories-656K-f32/tokenizer.json", "data/wikitext-2-raw/wiki.test.raw", 707.59},
        PerplexityCase{"Stories260K_TinyStories", "models/stories260K-hf", "models/stories260K/tok512.bin", "data/tinystories/tinystories_val_head.txt", 4.0032},
        PerplexityCase{"Stories260K_WikiText2", "models/stories260K-hf", "models/stories260K/tok512.bin", "data/wikitext-2-raw/wiki.test.raw", 128.68}),
    [](const ::testing::TestParamInfo<PerplexityCase>& info) { return std::string(info.param.name); });

TEST(Sampler, RepetitionPenaltyScalesEachSeenTokenOnce) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
  const std::vector<TokenId> history = {0, 1, 0, 0, 7, -1};  // repeats, and ids outside the vocabulary
  ApplyRepetitionPenalty(logits, history, 2.0f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.5f}));
  EXPECT_EQ(ArgMax(logits), 0);  // the lowest index among equals
}

TEST(Sampler, GreedyAtZeroTemperatureAndReproducibleWithSeed) {
  const std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f};
  Sampler greedy({0.0f, 0, 1.0f, 1});
  EXPECT_EQ(greedy.Sample(logits), 1);
  Sampler a({1.0f, 0, 1.0f, 42});
  Sampler b({1.0f, 0, 1.0f, 42});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.Sample(logits), b.Sample(logits));
  Sampler top1({1.0f, 1, 1.0f, 3});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(top1.Sample(logits), 1);
  Sampler nucleus({1.0f, 0, 0.3f, 5});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(nucleus.Sample(logits), 1) << "top-p 0.3 keeps only the most likely token";
  EXPECT_FALSE((SamplingParams{-1.0f, 0, 1.0f, 0}).Validate().ok());
  EXPECT_FALSE((SamplingParams{1.0f, 0, 0.0f, 0}).Validate().ok());
}

}  // namespace
}  // namespace anyprec
