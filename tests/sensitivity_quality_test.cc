// Perplexity of anyprec images made with each sensitivity (fisher, activation, none) for
// both real models, on TinyStories and WikiText-2, at every width. Prints the table kept in
// docs/BENCHMARKS.md and checks only that every cell was produced: which sensitivity wins is
// a finding to report, not a property to hold.
#include <cmath>
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

struct ModelUnderTest {
  const char* name;
  const char* dir;
  const char* tokenizer;
};
constexpr ModelUnderTest kModels[] = {
    {"TinyStories-656K", "models/TinyStories-656K", "models/TinyStories-656K/tokenizer.json"},
    {"stories260K-hf", "models/stories260K-hf", "models/stories260K/tok512.bin"},
};
constexpr const char* kTexts[] = {"data/tinystories/tinystories_val_head.txt", "data/wikitext-2-raw/wiki.test.raw"};
constexpr std::pair<const char*, quant::Sensitivity> kSensitivities[] = {
    {"fisher", quant::Sensitivity::kFisher}, {"activation", quant::Sensitivity::kActivation}, {"none", quant::Sensitivity::kNone}};

TEST(SensitivityQuality, TableForEveryModelTextAndWidth) {
  const fs::path root = fs::temp_directory_path() / ("anyprec-sensitivity-" + std::to_string(::getpid()));
  int cells = 0;
  std::printf("| model | text | bits | fisher | activation | none |\n|---|---|---|---|---|---|\n");
  for (const ModelUnderTest& m : kModels) {
    auto tokenizer = Tokenizer::Load(SharedPath(m.tokenizer));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    std::map<std::string, std::map<std::string, std::map<int, double>>> ppl;  // [text][sensitivity][bits]
    for (const auto& [sensitivity_name, sensitivity] : kSensitivities) {
      quant::ModelQuantizeOptions options;
      options.sensitivity = sensitivity;
      options.calibration_text = SharedPath("data/wikitext-2-raw/wiki.valid.raw");
      options.tokenizer_path = SharedPath(m.tokenizer);
      const std::string out = (root / m.name / sensitivity_name).string();
      const absl::Status status = quant::QuantizeModel(SharedPath(m.dir), out, options, [](const std::string&) {});
      ASSERT_TRUE(status.ok()) << status;
      auto image = Model::Load(out);
      ASSERT_TRUE(image.ok()) << image.status();
      // Differences between sensitivities are a few percent: keep the int8 kernel's error out.
      Transformer transformer(*image, {.exact_kernels = true});
      for (const char* text_path : kTexts) {
        auto text = ReadTextFile(SharedPath(text_path));
        ASSERT_TRUE(text.ok()) << text.status();
        const std::vector<TokenId> tokens = tokenizer->Encode(*text);
        for (int bits = 3; bits <= 8; ++bits) {
          ForwardOptions forward;
          forward.bits = bits;
          auto result = EvaluatePerplexity(transformer, tokens, image->config().bos_token_id, 8, 511, forward);
          ASSERT_TRUE(result.ok()) << result.status();
          ppl[text_path][sensitivity_name][bits] = result->perplexity;
        }
      }
    }
    for (const char* text_path : kTexts) {
      for (int bits = 3; bits <= 8; ++bits) {
        std::printf("| %s | %s | %d |", m.name, fs::path(text_path).filename().c_str(), bits);
        for (const auto& [sensitivity_name, sensitivity] : kSensitivities) {
          const double value = ppl[text_path][sensitivity_name][bits];
          EXPECT_TRUE(std::isfinite(value) && value > 1) << m.name << " " << text_path << " " << sensitivity_name << " " << bits;
          std::printf(" %.3f |", value);
          ++cells;
        }
        std::printf("\n");
      }
    }
  }
  fs::remove_all(root);
  EXPECT_EQ(cells, 2 * 2 * 6 * 3);
}

}  // namespace
}  // namespace anyprec
