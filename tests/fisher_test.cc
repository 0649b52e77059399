// The Fisher sensitivity: the draw of calibration windows, the sums of squared gradients,
// their file, and the quantizer's use of them.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/base/mapped_file.h"
#include "quantizer/grad/gradient_pass.h"
#include "gtest/gtest.h"
#include "quantizer/fisher.h"
#include "quantizer/quantizer.h"
#include "tests/shared_data.h"

namespace anyprec::quant {
namespace {

namespace fs = std::filesystem;
using testing::SharedPath;

TEST(CalibrationWindows, DrawIsDeterministicDistinctAndShaped) {
  std::vector<TokenId> text(1000);
  for (int i = 0; i < 1000; ++i) text[i] = 10 + i;
  const auto windows = DrawCalibrationWindows(text, 1, 5, 64, 7);
  ASSERT_EQ(windows.size(), 5u);
  std::set<TokenId> starts;
  for (const TokenWindow& w : windows) {
    ASSERT_EQ(w.inputs.size(), 64u);
    ASSERT_EQ(w.targets.size(), 64u);
    EXPECT_EQ(w.inputs[0], 1) << "BOS first, as eval runs a window";
    EXPECT_EQ((w.targets[0] - 10) % 64, 0) << "windows are whole chunks";
    for (int t = 1; t < 64; ++t) EXPECT_EQ(w.inputs[t], w.targets[t - 1]);
    starts.insert(w.targets[0]);
  }
  EXPECT_EQ(starts.size(), 5u) << "drawn without replacement";
  const auto again = DrawCalibrationWindows(text, 1, 5, 64, 7);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(again[i].targets, windows[i].targets);
  const auto other_seed = DrawCalibrationWindows(text, 1, 5, 64, 8);
  bool differs = false;
  for (size_t i = 0; i < 5; ++i) differs = differs || other_seed[i].targets != windows[i].targets;
  EXPECT_TRUE(differs);
}

TEST(CalibrationWindows, ShortTextGivesEveryWindowAndNoBosShifts) {
  std::vector<TokenId> text(200);
  for (int i = 0; i < 200; ++i) text[i] = i;
  EXPECT_EQ(DrawCalibrationWindows(text, 1, 100, 64, 0).size(), 3u);
  EXPECT_TRUE(DrawCalibrationWindows(text, 1, 100, 256, 0).empty());
  const auto no_bos = DrawCalibrationWindows(text, -1, 100, 64, 0);
  ASSERT_EQ(no_bos.size(), 3u) << "65 tokens per window without a BOS";
  for (const TokenWindow& w : no_bos) {
    ASSERT_EQ(w.inputs.size(), 64u);
    for (int t = 0; t < 64; ++t) EXPECT_EQ(w.targets[t], w.inputs[t] + 1);
  }
}

class FisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Model::Load(SharedPath("models/stories260K-hf"));
    ASSERT_TRUE(model.ok()) << model.status();
    model_.emplace(*std::move(model));
    auto tokenizer = Tokenizer::Load(SharedPath("models/stories260K/tok512.bin"));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    auto text = ReadTextFile(SharedPath("data/tinystories/tinystories_val_head.txt"));
    ASSERT_TRUE(text.ok());
    windows_ = DrawCalibrationWindows(tokenizer->Encode(*text), model_->config().bos_token_id, 3, 128, 0);
    dir_ = fs::temp_directory_path() / ("anyprec-fisher-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  FisherInformation Collect(AccumulatorPrecision precision) {
    auto fisher = CollectFisherInformation(*model_, windows_, precision, [](const std::string&) {});
    EXPECT_TRUE(fisher.ok()) << fisher.status();
    return *std::move(fisher);
  }

  std::optional<Model> model_;
  std::vector<TokenWindow> windows_;
  fs::path dir_;
};

TEST_F(FisherTest, SumsAreSquaredGradientsOverWindows) {
  const ModelConfig& c = model_->config();
  std::vector<std::vector<double>> want(c.num_layers * 7);
  grad::GradientPass<float> pass(c, model_->weights());
  for (const TokenWindow& w : windows_) {
    ASSERT_TRUE(pass.LossAndGradients(w.inputs, w.targets, [&](int l, int j, std::span<const float> g) {
                      std::vector<double>& sums = want[l * 7 + j];
                      sums.resize(g.size());
                      for (size_t i = 0; i < g.size(); ++i) sums[i] += double(g[i]) * g[i];
                    }).ok());
  }
  const FisherInformation fisher = Collect(AccumulatorPrecision::kF32);
  for (int l = 0; l < c.num_layers; ++l) {
    for (int j = 0; j < 7; ++j) {
      const std::vector<float> got = fisher.Sums(l, j);
      ASSERT_EQ(got.size(), want[l * 7 + j].size());
      double largest = 0;
      for (double v : want[l * 7 + j]) largest = std::max(largest, v);
      ASSERT_GT(largest, 0) << "layer " << l << " linear " << j;
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[l * 7 + j][i], 1e-5 * largest) << l << "/" << j << "/" << i;
    }
  }
  EXPECT_EQ(fisher.provenance()["samples"], 3);
  EXPECT_EQ(fisher.provenance()["tokens"], 3 * 128);
  EXPECT_EQ(fisher.provenance()["source_model"], "stories260K-hf");
}

// bf16 sums against fp32 ones: the cost the documentation states.
TEST_F(FisherTest, Bf16SumsStayCloseToFp32) {
  const FisherInformation f32 = Collect(AccumulatorPrecision::kF32);
  const FisherInformation bf16 = Collect(AccumulatorPrecision::kBF16);
  double worst = 0;
  for (int l = 0; l < model_->config().num_layers; ++l) {
    for (int j = 0; j < 7; ++j) {
      const std::vector<float> a = f32.Sums(l, j), b = bf16.Sums(l, j);
      for (size_t i = 0; i < a.size(); ++i) {
        if (a[i] > 0) worst = std::max(worst, std::abs(double(b[i]) - a[i]) / a[i]);
      }
    }
  }
  std::printf("bf16 sums of 3 windows: largest relative error %.4f\n", worst);
  EXPECT_LT(worst, 3 * std::ldexp(1.0, -8)) << "three roundings to 8 significant bits";
}

TEST_F(FisherTest, FileRoundTripsInBothPrecisions) {
  for (AccumulatorPrecision precision : {AccumulatorPrecision::kF32, AccumulatorPrecision::kBF16}) {
    const FisherInformation fisher = Collect(precision);
    const std::string path = (dir_ / "fisher.safetensors").string();
    ASSERT_TRUE(fisher.Save(path).ok());
    auto loaded = FisherInformation::Load(path, model_->config(), model_->name());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->precision(), precision);
    EXPECT_EQ(loaded->provenance(), fisher.provenance());
    for (int j = 0; j < 7; ++j) EXPECT_EQ(loaded->Sums(2, j), fisher.Sums(2, j));
  }
}

TEST_F(FisherTest, LoadRejectsFilesOfOtherModelsAndDamage) {
  const std::string path = (dir_ / "fisher.safetensors").string();
  ASSERT_TRUE(Collect(AccumulatorPrecision::kF32).Save(path).ok());
  const auto other_name = FisherInformation::Load(path, model_->config(), "TinyStories-656K");
  EXPECT_EQ(other_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(other_name.status().message().find("stories260K-hf"), std::string::npos) << other_name.status();

  auto tiny = Model::Load(SharedPath("models/TinyStories-656K"));
  ASSERT_TRUE(tiny.ok());
  const auto other_shapes = FisherInformation::Load(path, tiny->config(), "stories260K-hf");
  EXPECT_EQ(other_shapes.status().code(), absl::StatusCode::kInvalidArgument) << other_shapes.status();

  const auto not_fisher = FisherInformation::Load(SharedPath("models/stories260K-hf/model.safetensors"), model_->config(),
                                                  model_->name());
  EXPECT_EQ(not_fisher.status().code(), absl::StatusCode::kInvalidArgument) << not_fisher.status();

  fs::resize_file(path, fs::file_size(path) / 2);
  EXPECT_FALSE(FisherInformation::Load(path, model_->config(), model_->name()).ok());
}

// The quantizer with sums loaded from a file makes the same image as with sums it computed.
TEST_F(FisherTest, QuantizerUsesLoadedSumsAsComputedOnes) {
  ModelQuantizeOptions options;
  options.sensitivity = Sensitivity::kFisher;
  options.calibration_text = SharedPath("data/tinystories/tinystories_val_head.txt");
  options.tokenizer_path = SharedPath("models/stories260K/tok512.bin");
  options.fisher.samples = 3;
  options.fisher.seq_len = 128;
  options.save_sensitivity = (dir_ / "sums.safetensors").string();
  // Asked, not measured: the second run has no text to measure --dense-dtype auto's choice with.
  options.dense_dtype = DenseDType::kInt8;
  std::vector<std::string> lines;
  const auto progress = [&](const std::string& line) { lines.push_back(line); };
  ASSERT_TRUE(QuantizeModel(SharedPath("models/stories260K-hf"), (dir_ / "computed").string(), options, progress).ok());
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(), [](const std::string& l) { return l.starts_with("fisher: window"); }), 3);

  options.save_sensitivity.clear();
  options.load_sensitivity = (dir_ / "sums.safetensors").string();
  options.calibration_text.clear();
  ASSERT_TRUE(QuantizeModel(SharedPath("models/stories260K-hf"), (dir_ / "loaded").string(), options, progress).ok());
  const auto computed = ReadTextFile((dir_ / "computed/anyprec.safetensors").string());
  const auto loaded = ReadTextFile((dir_ / "loaded/anyprec.safetensors").string());
  ASSERT_TRUE(computed.ok() && loaded.ok());
  EXPECT_TRUE(*computed == *loaded) << "the images' weights differ";

  auto image = Model::Load((dir_ / "loaded").string());
  ASSERT_TRUE(image.ok()) << image.status();
}

}  // namespace
}  // namespace anyprec::quant
