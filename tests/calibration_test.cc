// The quantizer's calibration passes, which hold one decoder layer at a time: what they see
// and score equals what the whole model's forward pass sees and scores.
#include "quantizer/calibration.h"

#include <cmath>
#include <random>

#include "engine/model/arch.h"
#include "gtest/gtest.h"
#include "tests/shared_data.h"

namespace anyprec::quant {
namespace {

using testing::SharedPath;

std::vector<TokenId> RandomTokens(int count, int vocab) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<TokenId> id(3, vocab - 1);
  std::vector<TokenId> tokens(count);
  for (TokenId& t : tokens) t = id(rng);
  return tokens;
}

// Runs `pass`'s layers in order, each loaded only while it runs.
void RunEveryLayer(Model& model, LayerByLayerPass& pass, LinearInputObserver* observer) {
  for (int layer = 0; layer < model.config().num_layers; ++layer) {
    ASSERT_TRUE(model.LoadLayer(layer).ok());
    ASSERT_TRUE(pass.RunLayer(model, layer, observer).ok());
    model.ReleaseLayer(layer);
  }
}

TEST(LayerByLayerPass, SeesWhatTheWholePassSees) {
  for (const std::string& dir : {SharedPath("models/TinyStories-656K"), SharedPath("models/synthetic-arch/mistral"),
                                SharedPath("models/synthetic-arch/qwen3"), SharedPath("models/synthetic-arch/gemma")}) {
    SCOPED_TRACE(dir);
    auto whole = Model::Load(dir);
    auto lazy = Model::Load(dir, {.layers = false});
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_TRUE(lazy.ok()) << lazy.status();
    const ModelConfig& c = whole->config();
    const std::vector<TokenId> text = RandomTokens(300, c.vocab_size);
    auto windows = ActivationWindows(text, /*bos=*/1, /*window_len=*/40, /*max_tokens=*/150, c.context_length());
    ASSERT_TRUE(windows.ok()) << windows.status();
    ASSERT_EQ(windows->size(), 4u) << "150 tokens in windows of BOS + 39, the last shorter";
    EXPECT_EQ(windows->back().inputs.size(), 1u + 150 - 3 * 39);

    ActivationStatistics want(c);
    Transformer transformer(*whole);
    KvCache cache(c, 40);
    std::vector<float> logits(c.vocab_size);
    for (const TokenWindow& w : *windows) {
      cache.Clear();
      ForwardOptions options;
      options.observer = &want;
      ASSERT_TRUE(transformer.Forward(w.inputs, cache, LogitsFor::kLastToken, logits, options).ok());
    }
    ActivationStatistics got(c);
    auto pass = LayerByLayerPass::Start(*lazy, *windows);
    ASSERT_TRUE(pass.ok()) << pass.status();
    RunEveryLayer(*lazy, *pass, &got);
    EXPECT_EQ(got.tokens(), want.tokens());
    for (int layer = 0; layer < c.num_layers; ++layer) {
      for (int input = 0; input < arch::kLinearInputs; ++input) {
        const auto a = want.ColumnSensitivity(layer, static_cast<LinearInput>(input));
        const auto b = got.ColumnSensitivity(layer, static_cast<LinearInput>(input));
        ASSERT_EQ(a.size(), b.size());
        for (size_t j = 0; j < a.size(); ++j) ASSERT_NEAR(a[j], b[j], 1e-5 * std::abs(a[j]) + 1e-30) << layer << " " << input << " " << j;
      }
    }

    // The loss through the head, in both forms the quantizer weighs.
    for (const bool int8 : {false, true}) {
      ASSERT_TRUE(whole->SetDenseInt8(int8).ok());
      ASSERT_TRUE(lazy->SetDenseInt8(int8).ok());
      auto scored = PerplexityWindows(text, 1, 3, 50, c.context_length());
      ASSERT_TRUE(scored.ok()) << scored.status();
      auto nll_pass = LayerByLayerPass::Start(*lazy, *scored);
      ASSERT_TRUE(nll_pass.ok());
      EXPECT_FALSE(nll_pass->MeanNll(*lazy).ok()) << "no loss before the last layer";
      RunEveryLayer(*lazy, *nll_pass, nullptr);
      auto nll = nll_pass->MeanNll(*lazy);
      ASSERT_TRUE(nll.ok()) << nll.status();
      Transformer int8_transformer(*whole);
      auto reference = EvaluatePerplexity(int8_transformer, text, 1, 3, 50);
      ASSERT_TRUE(reference.ok()) << reference.status();
      EXPECT_NEAR(*nll, reference->mean_nll, 1e-6 * reference->mean_nll) << "int8 " << int8;
    }
  }
}

TEST(LayerByLayerPass, RefusesLayersOutOfOrderOrNotLoaded) {
  auto model = Model::Load(SharedPath("models/TinyStories-656K"), {.layers = false});
  ASSERT_TRUE(model.ok());
  auto pass = LayerByLayerPass::Start(*model, {TokenWindow{{1, 5, 9}, {}}});
  ASSERT_TRUE(pass.ok());
  EXPECT_FALSE(pass->RunLayer(*model, 0).ok()) << "layer 0 is not loaded";
  ASSERT_TRUE(model->LoadLayer(1).ok());
  EXPECT_FALSE(pass->RunLayer(*model, 1).ok()) << "layer 1 before layer 0";
  EXPECT_FALSE(LayerByLayerPass::Start(*model, {}).ok());
}

// A pass stopped short of the last layer writes hidden states and makes no logits.
TEST(Transformer, PartialPassesComposeIntoTheWholeOne) {
  auto model = Model::Load(SharedPath("models/TinyStories-656K"));
  ASSERT_TRUE(model.ok());
  const ModelConfig& c = model->config();
  const std::vector<TokenId> tokens = RandomTokens(12, c.vocab_size);
  Transformer transformer(*model);
  KvCache cache(c, 12);
  std::vector<float> want(c.vocab_size);
  ASSERT_TRUE(transformer.Forward(tokens, cache, LogitsFor::kLastToken, want).ok());

  std::vector<float> hidden(tokens.size() * c.hidden_size);
  std::vector<float> got(c.vocab_size);
  for (int first = 0; first <= c.num_layers; ++first) {
    ForwardOptions options;
    options.first_layer = first;
    options.end_layer = first;
    options.hidden = hidden;
    cache.Clear();
    const bool last = first == c.num_layers;
    ASSERT_TRUE(transformer.Forward(tokens, cache, LogitsFor::kLastToken, last ? std::span<float>(got) : std::span<float>(), options).ok());
    options.end_layer = first + 1;
    if (!last) {
      cache.Clear();
      ASSERT_TRUE(transformer.Forward(tokens, cache, LogitsFor::kLastToken, {}, options).ok());
    }
  }
  for (int v = 0; v < c.vocab_size; ++v) ASSERT_NEAR(got[v], want[v], 1e-5f) << v;

  ForwardOptions short_of_last;
  short_of_last.end_layer = 1;
  cache.Clear();
  EXPECT_EQ(transformer.Forward(tokens, cache, LogitsFor::kLastToken, got, short_of_last).code(), absl::StatusCode::kInvalidArgument);
  short_of_last.hidden = std::span<float>(hidden).first(5);
  cache.Clear();
  EXPECT_EQ(transformer.Forward(tokens, cache, LogitsFor::kLastToken, {}, short_of_last).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace anyprec::quant
