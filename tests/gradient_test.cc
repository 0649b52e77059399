// Gradient checks, in the style of test-backend-ops: every backward operator, and the whole
// gradient pass on both real models, against central finite differences in double; the fast
// float operators and the float pass against the double references; and the pass's loss
// against `anyprec eval`'s NLL on the same window.
//
// Finite differences are taken at entries whose analytic gradient is at least a tenth of the
// largest in its tensor (random among those), where a relative error means something; the
// error is |analytic - numeric| / max(|analytic|, |numeric|).
#include <cmath>
#include <functional>
#include <numeric>
#include <random>

#include "engine/base/mapped_file.h"
#include "engine/base/relative_error.h"
#include "engine/runtime/perplexity.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quantizer/grad/backward_ops.h"
#include "quantizer/grad/gradient_pass.h"
#include "tests/shared_data.h"

namespace anyprec::grad {
namespace {

using testing::SharedPath;

constexpr double kFiniteDifferenceBound = 1e-3;  // in double, for every op and the whole model
constexpr double kFloatBound = 1e-4;             // fast float operators against the double references
constexpr double kFloatPassBound = 1e-3;         // the float pass against the double pass, per matrix

std::vector<double> RandomVector(size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

std::vector<float> ToFloat(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Up to `count` random indices whose |gradient| is at least a tenth of the largest.
std::vector<size_t> CheckedEntries(std::span<const double> gradient, int count, std::mt19937_64& rng) {
  double largest = 0;
  for (double g : gradient) largest = std::max(largest, std::abs(g));
  std::vector<size_t> candidates;
  for (size_t i = 0; i < gradient.size(); ++i) {
    if (std::abs(gradient[i]) >= 0.1 * largest && largest > 0) candidates.push_back(i);
  }
  std::shuffle(candidates.begin(), candidates.end(), rng);
  candidates.resize(std::min<size_t>(candidates.size(), count));
  return candidates;
}

double RelativeDifference(double analytic, double numeric) {
  return std::abs(analytic - numeric) / std::max({std::abs(analytic), std::abs(numeric), 1e-300});
}

// Checks dL/dx[i] for L = loss(x) against central differences at a few entries.
void ExpectMatchesFiniteDifferences(const std::string& what, std::vector<double>& x, std::span<const double> analytic,
                                    const std::function<double()>& loss, std::mt19937_64& rng) {
  const std::vector<size_t> entries = CheckedEntries(analytic, 6, rng);
  ASSERT_FALSE(entries.empty()) << what << ": no gradient to check";
  for (size_t i : entries) {
    const double original = x[i];
    const double h = 1e-5 * std::max(1.0, std::abs(original));
    x[i] = original + h;
    const double plus = loss();
    x[i] = original - h;
    const double minus = loss();
    x[i] = original;
    const double numeric = (plus - minus) / (2 * h);
    EXPECT_LT(RelativeDifference(analytic[i], numeric), kFiniteDifferenceBound)
        << what << "[" << i << "]: analytic " << analytic[i] << ", numeric " << numeric;
  }
}

double Dot(std::span<const double> a, std::span<const double> b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// The operators' checks run on several shapes: GQA with groups of 2, odd widths, one token, a
// sliding window shorter than the sequence.
struct OpShape {
  int tokens, rows, cols;
  AttentionShape attention;
};
const OpShape kShapes[] = {{7, 12, 10, {4, 2, 8}}, {1, 5, 3, {2, 2, 4}}, {13, 9, 17, {6, 3, 6}}, {11, 6, 8, {4, 1, 8, 4}}};

// RoPE's frequencies for head_dim d: the default ones, and YaRN-like ones over the leading
// d - 2 dims (partial rotary) with an attention factor.
std::vector<RopeFrequencies> RopeCases(int d) {
  RopeFrequencies plain;
  for (int i = 0; i < d / 2; ++i) plain.inv_freq.push_back(std::pow(10000.0, -2.0 * i / d));
  RopeFrequencies partial;
  for (int i = 0; i < d / 2 - 1; ++i) partial.inv_freq.push_back(std::pow(500.0, -2.0 * i / (d - 2)) / (i % 2 == 0 ? 1 : 4));
  partial.attention_factor = 1.25;
  return {plain, partial};
}

TEST(BackwardOps, LinearMatchesFiniteDifferences) {
  std::mt19937_64 rng(1);
  for (const OpShape& s : kShapes) {
    std::vector<double> x = RandomVector(size_t(s.tokens) * s.cols, rng);
    std::vector<double> w = RandomVector(size_t(s.rows) * s.cols, rng);
    const std::vector<double> dy = RandomVector(size_t(s.tokens) * s.rows, rng);
    std::vector<double> dx(x.size()), dw(w.size());
    // The weights are float in the model; the check perturbs a double copy, so it goes
    // through the same template at double weights via a float vector rebuilt per call.
    const auto loss = [&] {
      const std::vector<float> wf = ToFloat(w);
      std::vector<double> out(dy.size());
      reference::LinearForward<double>(x, s.tokens, wf, s.rows, s.cols, out);
      return Dot(out, dy);
    };
    const std::vector<float> wf = ToFloat(w);
    w.assign(wf.begin(), wf.end());  // exactly representable, so the float view is the same function
    reference::LinearInputGradient<double>(dy, s.tokens, wf, s.rows, s.cols, dx, false);
    reference::LinearWeightGradient<double>(dy, x, s.tokens, s.rows, s.cols, dw);
    ExpectMatchesFiniteDifferences("linear dx", x, dx, loss, rng);
    // Weight perturbations are rounded to float by the loss, so they use a float-sized step.
    const std::vector<size_t> entries = CheckedEntries(dw, 6, rng);
    for (size_t i : entries) {
      const double original = w[i];
      const float up = static_cast<float>(original + 1e-3), down = static_cast<float>(original - 1e-3);
      w[i] = up;
      const double plus = loss();
      w[i] = down;
      const double minus = loss();
      w[i] = original;
      EXPECT_LT(RelativeDifference(dw[i], (plus - minus) / (double(up) - double(down))), kFiniteDifferenceBound) << "linear dw";
    }
  }
}

TEST(BackwardOps, RmsNormMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  for (const OpShape& s : kShapes) {
    std::vector<double> x = RandomVector(size_t(s.tokens) * s.cols, rng);
    const std::vector<float> weight = ToFloat(RandomVector(s.cols, rng));
    const std::vector<double> dy = RandomVector(x.size(), rng);
    std::vector<double> dx(x.size());
    const auto loss = [&] {
      std::vector<double> y(x.size());
      RmsNormForward<double>(x, weight, 1e-5f, y);
      return Dot(y, dy);
    };
    RmsNormBackward<double>(x, weight, 1e-5f, dy, dx);
    ExpectMatchesFiniteDifferences("rmsnorm dx", x, dx, loss, rng);
  }
}

TEST(BackwardOps, RopeMatchesFiniteDifferencesAndTheForwardPass) {
  std::mt19937_64 rng(3);
  for (const OpShape& s : kShapes) {
    const int heads = s.attention.num_heads, d = s.attention.head_dim;
    for (const RopeFrequencies& f : RopeCases(d)) {
      std::vector<double> x = RandomVector(size_t(s.tokens) * heads * d, rng);
      const std::vector<double> dy = RandomVector(x.size(), rng);
      const auto loss = [&] {
        std::vector<double> y = x;
        RopeForward<double>(y, s.tokens, heads, d, f);
        return Dot(y, dy);
      };
      std::vector<double> dx = dy;
      RopeBackward<double>(dx, s.tokens, heads, d, f);
      ExpectMatchesFiniteDifferences("rope dx", x, dx, loss, rng);

      std::vector<float> fast = ToFloat(x);
      std::vector<int> positions(s.tokens);
      for (int t = 0; t < s.tokens; ++t) positions[t] = t;
      cpu::Rope(fast, positions, heads, d, f.inv_freq, f.attention_factor);
      std::vector<double> mine = x;
      RopeForward<double>(mine, s.tokens, heads, d, f);
      EXPECT_LT(MaxRelativeError(fast, mine), kFloatBound) << "the inference pass's RoPE";
    }
  }
}

TEST(BackwardOps, GatedActivationsMatchFiniteDifferencesAndTheForwardPass) {
  std::mt19937_64 rng(4);
  for (const MlpActivation act : {MlpActivation::kSilu, MlpActivation::kGelu, MlpActivation::kGeluTanh}) {
    for (const OpShape& s : kShapes) {
      std::vector<double> gate = RandomVector(size_t(s.tokens) * s.cols, rng, 2.0);
      std::vector<double> up = RandomVector(gate.size(), rng);
      const std::vector<double> dh = RandomVector(gate.size(), rng);
      std::vector<double> dgate(gate.size()), dup(gate.size());
      const auto loss = [&] {
        std::vector<double> h(gate.size());
        GluForward<double>(act, gate, up, h);
        return Dot(h, dh);
      };
      GluBackward<double>(act, gate, up, dh, dgate, dup);
      ExpectMatchesFiniteDifferences("glu dgate", gate, dgate, loss, rng);
      ExpectMatchesFiniteDifferences("glu dup", up, dup, loss, rng);

      std::vector<float> fast = ToFloat(gate);
      cpu::Glu(act, fast, ToFloat(up));
      std::vector<double> mine(gate.size());
      GluForward<double>(act, gate, up, mine);
      EXPECT_LT(MaxRelativeError(fast, mine), kFloatBound) << "the inference pass's activation " << static_cast<int>(act);
    }
  }
}

TEST(BackwardOps, CrossEntropyMatchesFiniteDifferences) {
  std::mt19937_64 rng(5);
  for (const OpShape& s : kShapes) {
    std::vector<double> logits = RandomVector(size_t(s.tokens) * s.rows, rng, 3.0);
    std::vector<TokenId> targets(s.tokens);
    for (TokenId& t : targets) t = static_cast<TokenId>(rng() % s.rows);
    std::vector<double> dlogits(logits.size()), scratch(logits.size());
    CrossEntropy<double>(logits, targets, s.rows, dlogits);
    ExpectMatchesFiniteDifferences("cross-entropy dlogits", logits, dlogits,
                                   [&] { return CrossEntropy<double>(logits, targets, s.rows, scratch); }, rng);
  }
}

TEST(BackwardOps, AttentionMatchesFiniteDifferences) {
  std::mt19937_64 rng(6);
  for (const OpShape& s : kShapes) {
    const AttentionShape& a = s.attention;
    std::vector<double> q = RandomVector(size_t(s.tokens) * a.num_heads * a.head_dim, rng);
    std::vector<double> k = RandomVector(size_t(s.tokens) * a.num_kv_heads * a.head_dim, rng);
    std::vector<double> v = RandomVector(k.size(), rng);
    const std::vector<double> dout = RandomVector(q.size(), rng);
    std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
    const auto loss = [&] {
      std::vector<double> out(q.size());
      reference::CausalAttentionForward<double>(q, k, v, s.tokens, a, out);
      return Dot(out, dout);
    };
    reference::CausalAttentionBackward<double>(q, k, v, dout, s.tokens, a, dq, dk, dv);
    if (s.tokens == 1) {
      // One key: the softmax is 1 whatever the scores, so queries and keys get no gradient.
      EXPECT_TRUE(std::all_of(dq.begin(), dq.end(), [](double g) { return g == 0; }));
      EXPECT_TRUE(std::all_of(dk.begin(), dk.end(), [](double g) { return g == 0; }));
    } else {
      ExpectMatchesFiniteDifferences("attention dq", q, dq, loss, rng);
      ExpectMatchesFiniteDifferences("attention dk", k, dk, loss, rng);
    }
    ExpectMatchesFiniteDifferences("attention dv", v, dv, loss, rng);
  }
}

// The fast float operators, on fresh random inputs with their outputs poisoned with NaN
// first, against the double references.
TEST(BackwardOps, FastOperatorsMatchReferences) {
  std::mt19937_64 rng(7);
  const OpShape shapes[] = {{37, 48, 40, {4, 2, 8}}, {1, 5, 3, {2, 2, 4}}, {130, 33, 172, {8, 4, 16}}, {70, 20, 24, {4, 1, 8, 16}}};
  for (const OpShape& s : shapes) {
    const std::vector<double> x = RandomVector(size_t(s.tokens) * s.cols, rng);
    const std::vector<float> w = ToFloat(RandomVector(size_t(s.rows) * s.cols, rng));
    const std::vector<double> dy = RandomVector(size_t(s.tokens) * s.rows, rng);
    const std::vector<float> xf = ToFloat(x), dyf = ToFloat(dy);

    std::vector<double> want_y(dy.size()), want_dx(x.size()), want_dw(w.size());
    reference::LinearForward<double>(x, s.tokens, w, s.rows, s.cols, want_y);
    reference::LinearInputGradient<double>(dy, s.tokens, w, s.rows, s.cols, want_dx, false);
    reference::LinearWeightGradient<double>(dy, x, s.tokens, s.rows, s.cols, want_dw);
    std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw(w.size(), NAN);
    LinearForward(xf, s.tokens, w, s.rows, s.cols, y);
    LinearInputGradient(dyf, s.tokens, w, s.rows, s.cols, dx, false);
    LinearWeightGradient(dyf, xf, s.tokens, s.rows, s.cols, dw);
    EXPECT_LT(MaxRelativeError(y, want_y), kFloatBound) << "linear forward";
    EXPECT_LT(MaxRelativeError(dx, want_dx), kFloatBound) << "linear dx";
    EXPECT_LT(MaxRelativeError(dw, want_dw), kFloatBound) << "linear dw";
    std::vector<double> want_twice = want_dx;
    for (double& v : want_twice) v *= 2;
    LinearInputGradient(dyf, s.tokens, w, s.rows, s.cols, dx, true);
    EXPECT_LT(MaxRelativeError(dx, want_twice), kFloatBound) << "linear dx, accumulated";

    const AttentionShape& a = s.attention;
    const std::vector<double> q = RandomVector(size_t(s.tokens) * a.num_heads * a.head_dim, rng);
    const std::vector<double> k = RandomVector(size_t(s.tokens) * a.num_kv_heads * a.head_dim, rng);
    const std::vector<double> v = RandomVector(k.size(), rng);
    const std::vector<double> dout = RandomVector(q.size(), rng);
    std::vector<double> want_out(q.size()), want_dq(q.size()), want_dk(k.size()), want_dv(v.size());
    reference::CausalAttentionForward<double>(q, k, v, s.tokens, a, want_out);
    reference::CausalAttentionBackward<double>(q, k, v, dout, s.tokens, a, want_dq, want_dk, want_dv);
    std::vector<float> out(q.size(), NAN), dq(q.size(), NAN), dk(k.size(), NAN), dvf(v.size(), NAN);
    CausalAttentionForward(ToFloat(q), ToFloat(k), ToFloat(v), s.tokens, a, out);
    CausalAttentionBackward(ToFloat(q), ToFloat(k), ToFloat(v), ToFloat(dout), s.tokens, a, dq, dk, dvf);
    EXPECT_LT(MaxRelativeError(out, want_out), kFloatBound) << "attention forward";
    EXPECT_LT(MaxRelativeError(dq, want_dq), kFloatBound) << "attention dq";
    EXPECT_LT(MaxRelativeError(dk, want_dk), kFloatBound) << "attention dk";
    EXPECT_LT(MaxRelativeError(dvf, want_dv), kFloatBound) << "attention dv";
  }
}

// The whole pass on a real model and a real text window.
struct RealModel {
  std::string dir;
  std::string tokenizer;
  friend void PrintTo(const RealModel& m, std::ostream* os) { *os << m.dir; }
};

class GradientPassTest : public ::testing::TestWithParam<RealModel> {
 protected:
  void SetUp() override {
    auto model = Model::Load(SharedPath(GetParam().dir));
    ASSERT_TRUE(model.ok()) << model.status();
    model_.emplace(*std::move(model));
    auto tokenizer = Tokenizer::Load(SharedPath(GetParam().tokenizer));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    auto text = ReadTextFile(SharedPath("data/tinystories/tinystories_val_head.txt"));
    ASSERT_TRUE(text.ok()) << text.status();
    text_ = tokenizer->Encode(*text);
  }

  // [BOS] + the first window_len - 1 text tokens predicting the first window_len, as eval runs them.
  void Window(int window_len, std::vector<TokenId>& inputs, std::vector<TokenId>& targets) const {
    targets.assign(text_.begin(), text_.begin() + window_len);
    inputs.assign(1, model_->config().bos_token_id);
    inputs.insert(inputs.end(), targets.begin(), targets.end() - 1);
  }

  std::optional<Model> model_;
  std::vector<TokenId> text_;
};

// For `entries` entries of every linear layer's weight: the double pass's gradient against the
// central difference of its loss when that weight (in an fp32 copy) moves.
void ExpectWholeModelGradientsMatch(const Model& model, std::span<const TokenId> inputs, std::span<const TokenId> targets, int entries,
                                    std::mt19937_64& rng) {
  const ModelConfig& config = model.config();
  for (int layer = 0; layer < config.num_layers; ++layer) {
    for (int linear = 0; linear < arch::kLinearsPerLayer; ++linear) {
      ModelWeights weights = model.weights();
      Linear& target = *weights.layers[layer].linears()[linear];
      std::vector<float> perturbed(target.dense.begin(), target.dense.end());
      target.dense = perturbed;
      GradientPass<double> pass(config, weights);
      std::vector<double> gradient;
      const auto loss = pass.LossAndGradients(inputs, targets, [&](int l, int j, std::span<const double> g) {
        if (l == layer && j == linear) gradient.assign(g.begin(), g.end());
      });
      ASSERT_TRUE(loss.ok()) << loss.status();
      ASSERT_EQ(gradient.size(), perturbed.size());
      for (size_t i : CheckedEntries(gradient, entries, rng)) {
        const float original = perturbed[i];
        const float up = original + 1e-3f * std::max(1.0f, std::abs(original));
        const float down = original - 1e-3f * std::max(1.0f, std::abs(original));
        perturbed[i] = up;
        const double plus = *pass.Loss(inputs, targets);
        perturbed[i] = down;
        const double minus = *pass.Loss(inputs, targets);
        perturbed[i] = original;
        const double numeric = (plus - minus) / (double(up) - double(down));
        EXPECT_LT(RelativeDifference(gradient[i], numeric), kFiniteDifferenceBound)
            << "layer " << layer << " linear " << linear << " entry " << i << ": analytic " << gradient[i] << ", numeric " << numeric;
      }
    }
  }
}

TEST_P(GradientPassTest, WholeModelMatchesFiniteDifferences) {
  std::vector<TokenId> inputs, targets;
  Window(24, inputs, targets);
  std::mt19937_64 rng(8);
  ExpectWholeModelGradientsMatch(*model_, inputs, targets, 3, rng);
}

TEST_P(GradientPassTest, FloatPassMatchesDoublePass) {
  std::vector<TokenId> inputs, targets;
  Window(64, inputs, targets);
  const ModelConfig& config = model_->config();
  std::vector<std::vector<double>> want(config.num_layers * 7);
  GradientPass<double> reference(config, model_->weights());
  const auto want_loss = reference.LossAndGradients(inputs, targets, [&](int l, int j, std::span<const double> g) {
    want[l * 7 + j].assign(g.begin(), g.end());
  });
  ASSERT_TRUE(want_loss.ok()) << want_loss.status();
  GradientPass<float> pass(config, model_->weights());
  int seen = 0;
  const auto loss = pass.LossAndGradients(inputs, targets, [&](int l, int j, std::span<const float> g) {
    ++seen;
    EXPECT_LT(MaxRelativeError(g, std::span<const double>(want[l * 7 + j])), kFloatPassBound) << "layer " << l << " linear " << j;
  });
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_EQ(seen, config.num_layers * 7);
  EXPECT_NEAR(*loss, *want_loss, 1e-5 * *want_loss);
}

TEST_P(GradientPassTest, LossEqualsEvalNll) {
  constexpr int kWindow = 256;
  std::vector<TokenId> inputs, targets;
  Window(kWindow, inputs, targets);
  GradientPass<float> pass(model_->config(), model_->weights());
  const auto loss = pass.Loss(inputs, targets);
  ASSERT_TRUE(loss.ok()) << loss.status();
  Transformer transformer(*model_);
  const auto eval = EvaluatePerplexity(transformer, text_, model_->config().bos_token_id, 1, kWindow);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_NEAR(*loss, eval->mean_nll, 1e-5 * eval->mean_nll);
}

TEST_P(GradientPassTest, RejectsBadWindows) {
  GradientPass<float> pass(model_->config(), model_->weights());
  const std::vector<TokenId> two = {1, 2}, one = {1}, bad = {1, model_->config().vocab_size};
  EXPECT_EQ(pass.Loss(two, one).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pass.Loss({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pass.Loss(bad, two).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<TokenId> too_long(model_->config().max_position_embeddings + 1, 1);
  EXPECT_EQ(pass.Loss(too_long, too_long).status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(RealModels, GradientPassTest,
                         ::testing::Values(RealModel{"models/TinyStories-656K", "models/TinyStories-656K/tokenizer.json"},
                                           RealModel{"models/stories260K-hf", "models/stories260K/tok512.bin"}),
                         [](const auto& info) { return info.index == 0 ? std::string("TinyStories656K") : std::string("Stories260K"); });

// The families' layers (biases, q/k norms, sliding windows, scaled and partial RoPE, GeGLU,
// Gemma's norms and embedding scale, Phi-3's fused projections) in the training graph: its
// loss on the synthetic checkpoints is the float64 reference's NLL, and its gradients are
// the finite differences of that loss.
class FamilyGradientTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = SharedPath("models/synthetic-arch/" + GetParam());
    auto model = Model::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_.emplace(*std::move(model));
    auto text = ReadTextFile(dir + "/reference.json");
    ASSERT_TRUE(text.ok()) << text.status();
    reference_ = nlohmann::json::parse(*text);
  }
  std::optional<Model> model_;
  nlohmann::json reference_;
};

TEST_P(FamilyGradientTest, LossIsTheReferenceNll) {
  // All 48 ids in, so that the pass is the reference's (dynamic scaling reads the length);
  // the last target's NLL comes from the reference's last logits.
  const auto ids = reference_["input_ids"].get<std::vector<TokenId>>();
  const auto last = reference_["last_logits"].get<std::vector<double>>();
  std::vector<TokenId> targets(ids.begin() + 1, ids.end());
  targets.push_back(ids.front());
  const double top = *std::max_element(last.begin(), last.end());
  double sum = 0;
  for (const double v : last) sum += std::exp(v - top);
  const auto nll = reference_["nll"].get<std::vector<double>>();
  const double want = (std::accumulate(nll.begin(), nll.end(), 0.0) - (last[targets.back()] - top - std::log(sum))) / ids.size();
  GradientPass<double> pass(model_->config(), model_->weights());
  const auto loss = pass.Loss(ids, targets);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_NEAR(*loss, want, 1e-6 * want);
}

TEST_P(FamilyGradientTest, GradientsMatchFiniteDifferences) {
  const auto ids = reference_["input_ids"].get<std::vector<TokenId>>();
  // 24 tokens: past Mistral's 16-token window.
  const std::vector<TokenId> inputs(ids.begin(), ids.begin() + 24), targets(ids.begin() + 1, ids.begin() + 25);
  std::mt19937_64 rng(9);
  ExpectWholeModelGradientsMatch(*model_, inputs, targets, 2, rng);
}

INSTANTIATE_TEST_SUITE_P(SyntheticArch, FamilyGradientTest,
                         ::testing::Values("llama31", "llama32-bf16", "llama-linear", "llama-dynamic", "qwen2", "qwen2-yarn", "qwen3", "mistral",
                                           "mistral-nemo", "gemma", "phi3"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace anyprec::grad
