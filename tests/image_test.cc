// The anyprec image on disk: sizes as inspect reports them, and damage detected at load.
#include <filesystem>
#include <fstream>

#include "engine/base/mapped_file.h"
#include "engine/base/relative_error.h"
#include "engine/model/bitplanes.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"
#include "engine/runtime/transformer.h"
#include "gtest/gtest.h"
#include "quantizer/quantizer.h"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
using testing::SharedPath;

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("anyprec-image-test-" + std::to_string(::getpid()));
    image_ = (root_ / "image").string();
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kNone;
    ASSERT_TRUE(quant::QuantizeModel(SharedPath("models/stories260K-hf"), image_, options, [](const std::string&) {}).ok());
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string WeightsPath() const { return image_ + "/anyprec.safetensors"; }

  std::string LoadError() const {
    auto model = Model::Load(image_);
    EXPECT_FALSE(model.ok());
    return model.ok() ? "" : std::string(model.status().message());
  }

  fs::path root_;
  std::string image_;
};

TEST_F(ImageTest, LoadsAndCarriesEveryWidth) {
  auto model = Model::Load(image_);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE(model->config().quantization.has_value());
  EXPECT_EQ(model->config().quantization->seed_bits, 3);
  EXPECT_EQ(model->config().quantization->max_bits, 8);
  EXPECT_EQ(model->name(), "stories260K-hf");
  const Linear& down = model->weights().layers[4].w_down;
  EXPECT_TRUE(down.is_quantized());
  EXPECT_EQ(down.cols, 172);
  EXPECT_EQ(down.quantized.luts.size(), 6u);
}

TEST_F(ImageTest, BitFlipsAnywhereAreRejected) {
  auto original = ReadTextFile(WeightsPath());
  ASSERT_TRUE(original.ok());
  // A flip in the data section, one in a plane, and one near the end.
  for (const size_t offset : {original->size() / 2, original->size() - 3, original->size() / 3}) {
    std::string damaged = *original;
    damaged[offset] ^= 0x10;
    std::ofstream(WeightsPath(), std::ios::binary | std::ios::trunc) << damaged;
    const std::string error = LoadError();
    EXPECT_NE(error.find("fails its checksum"), std::string::npos) << error;
    EXPECT_NE(error.find("anyprec.safetensors"), std::string::npos) << error;
  }
}

TEST_F(ImageTest, TruncationIsRejected) {
  auto original = ReadTextFile(WeightsPath());
  ASSERT_TRUE(original.ok());
  for (const size_t size : {size_t{0}, size_t{100}, original->size() - 1}) {
    std::ofstream(WeightsPath(), std::ios::binary | std::ios::trunc) << original->substr(0, size);
    const std::string error = LoadError();
    EXPECT_NE(error.find("anyprec.safetensors"), std::string::npos) << error;
  }
}

TEST_F(ImageTest, MissingChecksumAndWrongVersionAreRejected) {
  auto config = ReadTextFile(image_ + "/config.json");
  ASSERT_TRUE(config.ok());
  std::string future = *config;
  future.replace(future.find("\"format_version\": 1"), 19, "\"format_version\": 9");
  std::ofstream(image_ + "/config.json", std::ios::trunc) << future;
  EXPECT_NE(LoadError().find("format version 9"), std::string::npos);
  std::ofstream(image_ + "/config.json", std::ios::trunc) << *config;
  fs::remove(WeightsPath());
  EXPECT_NE(LoadError().find("anyprec.safetensors"), std::string::npos);
}

// Continuous batching must not change any sequence's result: one batched step over several
// sequences (prompt chunks and decode tokens, different widths) gives each sequence exactly
// the logits it gets when run alone.
TEST_F(ImageTest, BatchedStepsEqualSingleSequences) {
  auto model = Model::Load(image_);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = model->config();
  const int vocab = c.vocab_size;
  const std::vector<TokenId> prefix_b = {1, 403, 407, 261};
  const std::vector<TokenId> a = {1, 403, 407, 261, 378};
  const std::vector<TokenId> b = {432};
  const std::vector<TokenId> d = {1, 300, 301};

  Transformer alone(*model);
  std::vector<float> want_a(vocab), want_b(vocab), want_d(d.size() * vocab), scratch(vocab);
  KvCache cache_a(c, 16), cache_b(c, 16), cache_d(c, 16);
  ASSERT_TRUE(alone.Forward(a, cache_a, LogitsFor::kLastToken, want_a, {3}).ok());
  ASSERT_TRUE(alone.Forward(prefix_b, cache_b, LogitsFor::kLastToken, scratch, {8}).ok());
  ASSERT_TRUE(alone.Forward(b, cache_b, LogitsFor::kLastToken, want_b, {8}).ok());
  ASSERT_TRUE(alone.Forward(d, cache_d, LogitsFor::kAllTokens, want_d, {4}).ok());

  Transformer batched(*model);
  KvCache batch_a(c, 16), batch_b(c, 16), batch_d(c, 16);
  ASSERT_TRUE(batched.Forward(prefix_b, batch_b, LogitsFor::kLastToken, scratch, {8}).ok());
  const std::vector<SequenceStep> steps = {{a, &batch_a, 3, LogitsFor::kLastToken},
                                           {b, &batch_b, 8, LogitsFor::kLastToken},
                                           {d, &batch_d, 4, LogitsFor::kAllTokens}};
  std::vector<float> got((2 + d.size()) * vocab);
  ASSERT_TRUE(batched.ForwardBatch(steps, got).ok());
  EXPECT_TRUE(std::equal(want_a.begin(), want_a.end(), got.begin()));
  EXPECT_TRUE(std::equal(want_b.begin(), want_b.end(), got.begin() + vocab));
  EXPECT_TRUE(std::equal(want_d.begin(), want_d.end(), got.begin() + 2 * vocab));
  EXPECT_EQ(batch_a.length(), 5);
  EXPECT_EQ(batch_b.length(), 5);
  EXPECT_EQ(batch_d.length(), 3);

  // A bad width in any step rejects the whole batch and leaves every cache as it was.
  const std::vector<SequenceStep> bad = {{b, &batch_a, 3, LogitsFor::kLastToken}, {b, &batch_b, 9, LogitsFor::kLastToken}};
  std::vector<float> two(2 * vocab);
  EXPECT_EQ(batched.ForwardBatch(bad, two).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(batch_a.length(), 5);
}

TEST(TiedImage, StoresTheTiedHeadOnce) {
  // The F32 copy of TinyStories-656K stores its tied matrix only as lm_head.weight.
  const fs::path out = fs::temp_directory_path() / ("anyprec-tied-" + std::to_string(::getpid()));
  quant::ModelQuantizeOptions options;
  options.sensitivity = quant::Sensitivity::kNone;
  ASSERT_TRUE(quant::QuantizeModel(SharedPath("models/TinyStories-656K-f32"), out.string(), options, [](const std::string&) {}).ok());
  auto weights = SafetensorsFile::Open((out / "anyprec.safetensors").string());
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->tensors().count("lm_head.weight"), 0u);
  EXPECT_EQ(weights->tensors().count("model.embed_tokens.weight"), 1u);
  auto model = Model::Load(out.string());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(model->weights().head.SameAs(model->weights().embedding));
  fs::remove_all(out);
}

// --dense-dtype int8 stores the head and the embedding as int8 rows with their scales, once
// when tied; the model reads them as int8 and its logits stay those of the fp32 image.
TEST(Int8DenseImage, HeadAndEmbeddingAreInt8AndTheLogitsFollowFp32) {
  for (const char* source : {"models/synthetic-arch/llama", "models/TinyStories-656K"}) {
    SCOPED_TRACE(source);
    const fs::path root = fs::temp_directory_path() / ("anyprec-int8-dense-" + std::to_string(::getpid()));
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kNone;
    options.dense_dtype = quant::DenseDType::kF32;
    ASSERT_TRUE(quant::QuantizeModel(SharedPath(source), (root / "fp32").string(), options, [](const std::string&) {}).ok());
    options.dense_dtype = quant::DenseDType::kInt8;
    ASSERT_TRUE(quant::QuantizeModel(SharedPath(source), (root / "int8").string(), options, [](const std::string&) {}).ok());

    auto fp32 = Model::Load((root / "fp32").string());
    auto int8 = Model::Load((root / "int8").string());
    ASSERT_TRUE(fp32.ok()) << fp32.status();
    ASSERT_TRUE(int8.ok()) << int8.status();
    const ModelConfig& c = int8->config();
    auto file = SafetensorsFile::Open((root / "int8" / "anyprec.safetensors").string());
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(file->tensors().at("model.embed_tokens.weight").dtype, DType::kI8);
    EXPECT_EQ(file->tensors().at("model.embed_tokens.weight_scale").shape, (std::vector<int64_t>{c.vocab_size}));
    EXPECT_EQ(file->tensors().count("lm_head.weight"), c.tie_word_embeddings ? 0u : 1u);
    const ModelWeights& w = int8->weights();
    EXPECT_TRUE(w.embedding.is_int8());
    EXPECT_TRUE(w.head.is_int8());
    EXPECT_EQ(w.head.SameAs(w.embedding), c.tie_word_embeddings);
    EXPECT_LT(int8->BytesReadPerToken(c.quantization->max_bits), fp32->BytesReadPerToken(c.quantization->max_bits));

    const std::vector<TokenId> prompt = {1, 20, 30, 40, 50, 60};
    std::vector<float> want(prompt.size() * c.vocab_size), got(want.size());
    Transformer reference(*fp32, {.exact_kernels = true}), quantized(*int8, {.exact_kernels = true});
    KvCache reference_cache(c, 16), quantized_cache(c, 16);
    ASSERT_TRUE(reference.Forward(prompt, reference_cache, LogitsFor::kAllTokens, want, {c.quantization->max_bits}).ok());
    ASSERT_TRUE(quantized.Forward(prompt, quantized_cache, LogitsFor::kAllTokens, got, {c.quantization->max_bits}).ok());
    EXPECT_LT(MaxRelativeError(got, want), 0.02);
    fs::remove_all(root);
  }
}

}  // namespace
}  // namespace anyprec
