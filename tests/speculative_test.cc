// Self-speculative decoding (engine/runtime/speculative.h): the accept/resample rule against
// exact distributions, and whole generations against plain decoding at the target width on the
// real TinyStories-656K and stories260K images.
#include "engine/runtime/generate.h"

#include <array>
#include <cmath>
#include <random>

#include "engine/runtime/engine.h"
#include "gtest/gtest.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

TokenDistribution Weighted(const std::vector<double>& probabilities) {
  TokenDistribution d;
  for (size_t id = 0; id < probabilities.size(); ++id) {
    if (probabilities[id] > 0) d.candidates.emplace_back(static_cast<float>(probabilities[id]), static_cast<TokenId>(id));
    d.total += static_cast<float>(probabilities[id]);
  }
  return d;
}

// Pearson's statistic of `counts` against `expected` probabilities.
double ChiSquare(const std::vector<long>& counts, const std::vector<double>& expected, long draws) {
  double statistic = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = expected[i] * draws;
    statistic += (counts[i] - e) * (counts[i] - e) / e;
  }
  return statistic;
}

// Draws tokens from the draft, has `verify` judge each against the target, and counts what
// comes out; the output must follow the target.
template <typename Verify>
std::vector<long> Outputs(const std::vector<double>& target, const std::vector<double>& draft, long draws, Verify verify) {
  std::mt19937_64 rng(11);
  std::discrete_distribution<int> from_draft(draft.begin(), draft.end());
  std::vector<long> counts(target.size());
  for (long i = 0; i < draws; ++i) ++counts[verify(from_draft(rng))];
  return counts;
}

// With 5 outcomes (4 degrees of freedom) a correct rule exceeds 40 with probability about 4e-8.
constexpr double kChiSquareBound = 40;

TEST(SpeculativeSampling, OutputFollowsTheTargetWhateverTheDraft) {
  constexpr long kDraws = 400'000;
  const std::vector<double> target = {0.05, 0.40, 0.25, 0.20, 0.10};
  for (const std::vector<double>& draft : {std::vector<double>{0.30, 0.10, 0.30, 0.05, 0.25}, std::vector<double>{0.05, 0.40, 0.25, 0.20, 0.10},
                                           std::vector<double>{0.0, 0.0, 1.0, 0.0, 0.0}}) {
    SamplingParams params;
    params.temperature = 1;
    params.seed = 5;
    Sampler sampler(params);
    const TokenDistribution p = Weighted(target), q = Weighted(draft);
    long accepted = 0;
    const std::vector<long> counts = Outputs(target, draft, kDraws, [&](int drafted) {
      const Verdict verdict = sampler.Verify(p, q, drafted);
      accepted += verdict.accepted;
      return verdict.token;
    });
    EXPECT_LT(ChiSquare(counts, target, kDraws), kChiSquareBound) << ::testing::PrintToString(counts);
    // The acceptance rate is sum(min(p, q)), the overlap of the two.
    double overlap = 0;
    for (size_t i = 0; i < target.size(); ++i) overlap += std::min(target[i], draft[i]);
    EXPECT_NEAR(static_cast<double>(accepted) / kDraws, overlap, 0.005);
  }

  // The same bound rejects a wrong rule: on rejection, drawing from the target itself rather than
  // from max(0, p - q) over-weights what the draft already proposed.
  const std::vector<double> draft = {0.30, 0.10, 0.30, 0.05, 0.25};
  std::mt19937_64 rng(3);
  std::discrete_distribution<int> from_target(target.begin(), target.end());
  std::uniform_real_distribution<double> uniform(0, 1);
  const std::vector<long> wrong = Outputs(target, draft, kDraws, [&](int drafted) {
    return uniform(rng) * draft[drafted] < target[drafted] ? drafted : from_target(rng);
  });
  EXPECT_GT(ChiSquare(wrong, target, kDraws), 100 * kChiSquareBound) << "the test cannot tell a wrong rule";
}

TEST(SpeculativeSampling, GreedyAcceptsExactlyTheTargetsChoice) {
  Sampler sampler(SamplingParams{.temperature = 0});
  const TokenDistribution target = {{{1.0f, 7}}, 1.0};
  const TokenDistribution draft = {{{1.0f, 3}}, 1.0};
  EXPECT_EQ(sampler.Verify(target, target, 7).accepted, true);
  const Verdict rejected = sampler.Verify(target, draft, 3);
  EXPECT_FALSE(rejected.accepted);
  EXPECT_EQ(rejected.token, 7);
}

struct Generation {
  std::vector<TokenId> tokens;
  std::string text;
  std::optional<DecodeEnd> end;
  SpeculativeCounts counts;
};

// `prompt` continued at `bits`, plainly or (with `speculative`) speculatively, on the CPU.
Generation Generate(const Engine& engine, const std::string& prompt, int bits, const DecodingOptions& decoding,
                    const std::optional<SpeculativeOptions>& speculative) {
  const ModelConfig& config = engine.model().config();
  Transformer transformer(engine.model(), engine.device());
  Decoder decoder(config, engine.tokenizer(), decoding, engine.EncodePrompt(prompt));
  KvCache cache(config, decoder.max_positions(), engine.kv_dtype());
  Generation out;
  const absl::StatusOr<SpeculativeCounts> counts = GenerateAlone(transformer, cache, decoder, bits, speculative, [&](const DecodeStep& step) {
    if (step.token) out.tokens.push_back(*step.token);
    out.text += step.text;
    out.end = step.end;
  });
  // A cycle that finds the cache holding more or less than the committed context but its last
  // token fails, so this also checks the KV accounting after every cycle.
  EXPECT_TRUE(counts.ok()) << counts.status();
  if (counts.ok()) out.counts = *counts;
  out.text += decoder.Finish();
  return out;
}

std::unique_ptr<Engine> OpenOnCpu(const std::string& image) {
  EngineOptions options;
  options.model_dir = image;
  options.device = DeviceChoice::kCpu;
  auto engine = Engine::Open(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// A speculative step's rollback: the cache forgets the rejected positions and a shared pool
// gets back the blocks no kept position needs.
TEST(KvCacheTruncate, ForgetsPositionsAndReturnsTheirBlocks) {
  const std::unique_ptr<Engine> engine = OpenOnCpu(testing::TinyStoriesImage());
  ASSERT_NE(engine, nullptr);
  const ModelConfig& config = engine->model().config();
  KvBlockPool pool(config, 16, 8);
  KvCache cache(pool);
  ASSERT_TRUE(cache.Reserve(50));
  cache.Advance(50);
  EXPECT_EQ(pool.used_blocks(), 4);
  cache.Truncate(33);
  EXPECT_EQ(cache.length(), 33);
  EXPECT_EQ(pool.used_blocks(), 3) << "position 32 needs a third block, not a fourth";
  cache.Truncate(40);
  EXPECT_EQ(cache.length(), 33) << "truncating never grows";
  cache.Truncate(16);
  EXPECT_EQ(pool.used_blocks(), 1);
  EXPECT_EQ(cache.layer(0).blocks.size(), 1u);
  cache.Truncate(0);
  EXPECT_EQ(pool.used_blocks(), 0);
}

class SpeculativeDecoding : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    engine_ = OpenOnCpu(GetParam() == "656K" ? testing::TinyStoriesImage() : testing::Stories260KImage());
    ASSERT_NE(engine_, nullptr);
  }
  static DecodingOptions Greedy(int max_new_tokens) {
    DecodingOptions decoding;
    decoding.sampling.temperature = 0;
    decoding.max_new_tokens = max_new_tokens;
    return decoding;
  }

  std::unique_ptr<Engine> engine_;
};

// Greedy speculative output is plain greedy output at the target width, token for token, for
// every target 4..8, draft 3..t-1 and lookahead 1..8.
TEST_P(SpeculativeDecoding, GreedyEqualsPlainAtEveryTargetDraftAndLookahead) {
  const Engine& engine = *engine_;
  DecodingOptions decoding = Greedy(40);
  decoding.ignore_eos = true;
  SpeculativeCounts total;
  for (int target = 4; target <= 8; ++target) {
    const Generation plain = Generate(engine, "Once upon a time", target, decoding, std::nullopt);
    ASSERT_EQ(plain.tokens.size(), 40u);
    for (int draft = 3; draft < target; ++draft) {
      for (int lookahead = 1; lookahead <= 8; ++lookahead) {
        SCOPED_TRACE(::testing::Message() << "target " << target << ", draft " << draft << ", lookahead " << lookahead);
        const Generation fast = Generate(engine, "Once upon a time", target, decoding, SpeculativeOptions{draft, lookahead});
        EXPECT_EQ(fast.tokens, plain.tokens);
        EXPECT_EQ(fast.text, plain.text);
        total.drafted += fast.counts.drafted;
        total.accepted += fast.counts.accepted;
      }
    }
  }
  // Real weights: the low widths agree with the high ones most of the time.
  EXPECT_GT(total.acceptance_rate(), 0.3) << total.accepted << " of " << total.drafted;
  std::printf("%s: %ld of %ld drafted tokens accepted (%.2f)\n", GetParam().c_str(), total.accepted, total.drafted, total.acceptance_rate());
}

// The decoding rules hold as in plain decoding: a repetition penalty over the drafted tokens, a
// stop sequence and EOS inside an accepted run end the output where plain decoding ends it.
TEST_P(SpeculativeDecoding, PenaltyStopSequencesAndEosEndWherePlainDecodingEnds) {
  const Engine& engine = *engine_;
  // Long enough for the 656K's story to end with EOS (stories260K's fills its positions first).
  DecodingOptions decoding = Greedy(400);
  decoding.repetition_penalty = 1.3f;
  const Generation plain = Generate(engine, "Once upon a time", 8, decoding, std::nullopt);
  if (GetParam() == "656K") {
    EXPECT_EQ(plain.end, DecodeEnd::kEos);
  }
  for (const int lookahead : {2, 5, 8}) {
    const Generation fast = Generate(engine, "Once upon a time", 8, decoding, SpeculativeOptions{3, lookahead});
    EXPECT_EQ(fast.tokens, plain.tokens) << lookahead;
    EXPECT_EQ(fast.end, plain.end) << lookahead;
  }
  // A stop sequence cut from the middle of the plain output.
  ASSERT_GT(plain.text.size(), 40u);
  decoding.stop = {plain.text.substr(30, 6)};
  const Generation stopped = Generate(engine, "Once upon a time", 8, decoding, std::nullopt);
  EXPECT_LT(stopped.text.size(), plain.text.size());
  for (const int lookahead : {3, 8}) {
    const Generation fast = Generate(engine, "Once upon a time", 8, decoding, SpeculativeOptions{4, lookahead});
    EXPECT_EQ(fast.text, stopped.text) << lookahead;
    EXPECT_EQ(fast.tokens, stopped.tokens) << lookahead;
  }
}

// Sampling: the same seed gives the same text twice, and sampling at temperature 1 accepts
// fewer drafts than greedy but still many.
TEST_P(SpeculativeDecoding, SeededSamplingRepeatsItself) {
  const Engine& engine = *engine_;
  DecodingOptions decoding;
  decoding.sampling = {.temperature = 1.0f, .top_k = 40, .top_p = 0.9f, .seed = 17};
  decoding.repetition_penalty = 1.1f;
  decoding.max_new_tokens = 64;
  decoding.ignore_eos = true;
  const Generation first = Generate(engine, "Once upon a time", 8, decoding, SpeculativeOptions{3, 4});
  const Generation second = Generate(engine, "Once upon a time", 8, decoding, SpeculativeOptions{3, 4});
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_EQ(first.tokens.size(), 64u);
  EXPECT_GT(first.counts.accepted, 0);
}

INSTANTIATE_TEST_SUITE_P(Images, SpeculativeDecoding, ::testing::Values("656K", "260K"));

TEST(SpeculativeOptions, RefusesWidthsAndLookaheadsItCannotRun) {
  const std::unique_ptr<Engine> engine = OpenOnCpu(testing::TinyStoriesImage());
  ASSERT_NE(engine, nullptr);
  const ModelConfig& config = engine->model().config();
  EXPECT_TRUE(ValidateSpeculation(config, 8, {3, 4}).ok());
  EXPECT_FALSE(ValidateSpeculation(config, 8, {8, 4}).ok()) << "the draft must be narrower";
  EXPECT_FALSE(ValidateSpeculation(config, 5, {2, 4}).ok()) << "below the image's widths";
  EXPECT_FALSE(ValidateSpeculation(config, 8, {3, 0}).ok());
  EXPECT_FALSE(ValidateSpeculation(config, 8, {3, 17}).ok());
}

}  // namespace
}  // namespace anyprec
