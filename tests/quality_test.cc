// Perplexity of TinyStories-656K at every width for the three quantizers, against the
// method's promises. Prints the table recorded in docs/BENCHMARKS.md.
#include <cstdio>
#include <filesystem>
#include <map>

#include "engine/base/mapped_file.h"
#include "engine/runtime/perplexity.h"
#include "gtest/gtest.h"
#include "quantizer/quantizer.h"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
using testing::SharedPath;

class QualityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("anyprec-quality-" + std::to_string(::getpid()));
    const std::string model = SharedPath("models/TinyStories-656K");
    auto tokenizer = Tokenizer::Load(model + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok());
    auto text = ReadTextFile(SharedPath("data/tinystories/tinystories_val_head.txt"));
    ASSERT_TRUE(text.ok());
    tokens_ = tokenizer->Encode(*text);
    ppl_["fp32"][0] = Perplexity(model, 0);

    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kActivation;
    options.calibration_text = SharedPath("data/wikitext-2-raw/wiki.valid.raw");
    const auto quantize = [&](const std::string& name, quant::Mode mode, int seed, int max) {
      options.quant = {mode, seed, max, quant::SeedMethod::kExact};
      const std::string out = (root_ / name).string();
      const absl::Status status = quant::QuantizeModel(model, out, options, [](const std::string&) {});
      EXPECT_TRUE(status.ok()) << status;
      return out;
    };
    const std::string anyprec = quantize("anyprec", quant::Mode::kAnyPrecision, 3, 8);
    for (int b = 3; b <= 8; ++b) {
      ppl_["anyprec"][b] = Perplexity(anyprec, b);
      ppl_["independent"][b] = Perplexity(quantize("independent" + std::to_string(b), quant::Mode::kIndependent, b, b), b);
      ppl_["rtn"][b] = Perplexity(quantize("rtn" + std::to_string(b), quant::Mode::kRoundToNearest, b, b), b);
    }
    std::printf("| bits | anyprec | independent | rtn |\n|---|---|---|---|\n| fp32 | %.3f | | |\n", ppl_["fp32"][0]);
    for (int b = 3; b <= 8; ++b) {
      std::printf("| %d | %.3f | %.3f | %.3f |\n", b, ppl_["anyprec"][b], ppl_["independent"][b], ppl_["rtn"][b]);
    }
  }

  static void TearDownTestSuite() { fs::remove_all(root_); }

  static double Perplexity(const std::string& dir, int bits) {
    auto model = Model::Load(dir);
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return 0;
    Transformer transformer(*model);
    ForwardOptions options;
    options.bits = bits;
    auto result = EvaluatePerplexity(transformer, tokens_, model->config().bos_token_id, 8, 511, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->perplexity : 0;
  }

  static inline fs::path root_;
  static inline std::vector<TokenId> tokens_;
  static inline std::map<std::string, std::map<int, double>> ppl_;
};

// One test, so that the quantizations above run once under ctest (one process per test).
TEST_F(QualityTest, MethodPromisesHold) {
  EXPECT_DOUBLE_EQ(ppl_["anyprec"][3], ppl_["independent"][3]) << "the seed is the independent 3-bit model";
  for (int b = 4; b <= 8; ++b) EXPECT_LE(ppl_["anyprec"][b], 1.02 * ppl_["independent"][b]) << "anyprec vs independent at " << b;
  for (int b : {3, 4}) EXPECT_LT(ppl_["anyprec"][b], ppl_["rtn"][b]) << "anyprec vs rtn at " << b;
  EXPECT_NEAR(ppl_["anyprec"][8] / ppl_["fp32"][0], 1.0, 0.005) << "8 bits vs fp32";
  for (int b = 4; b <= 8; ++b) EXPECT_LE(ppl_["anyprec"][b], ppl_["anyprec"][b - 1] * 1.002) << "perplexity rose at " << b;
}

}  // namespace
}  // namespace anyprec
