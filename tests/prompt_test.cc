// The prompt and stop rules (engine/runtime/prompt.h) over the real tokenizer folders, with
// their tokenizer_config.json and generation_config.json: which BOS opens a prompt and which
// tokens end a generation, as Hugging Face's tokenizer and generation config decide them.
#include "engine/runtime/prompt.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/base/mapped_file.h"
#include "gtest/gtest.h"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

Tokenizer LoadFolder(const std::string& folder) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(testing::SharedPath("tokenizers/" + folder + "/tokenizer.json"));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return *std::move(tokenizer);
}

// config.json's ids as the family's checkpoints write them, then the folder's
// generation_config.json, as Model::Load merges them.
ModelConfig ConfigOf(const std::string& folder, int vocab, int bos, std::vector<int> eos) {
  ModelConfig config;
  config.vocab_size = vocab;
  config.bos_token_id = bos;
  config.eos_token_ids = std::move(eos);
  const std::string generation = testing::SharedDir() + "/tokenizers/" + folder + "/generation_config.json";
  if (std::filesystem::exists(generation)) {
    absl::StatusOr<std::string> text = ReadTextFile(generation);
    EXPECT_TRUE(text.ok());
    const absl::Status status = MergeGenerationConfig(*text, generation, config);
    EXPECT_TRUE(status.ok()) << status;
  }
  return config;
}

TEST(Prompt, Llama31OpensWithBeginOfTextAndStopsAtEveryEndToken) {
  const Tokenizer tokenizer = LoadFolder("llama-3.1");
  const ModelConfig config = ConfigOf("llama-3.1", 128256, 128000, {128009});
  EXPECT_EQ(BosToken(config, tokenizer), 128000);
  // generation_config's 128001 (end_of_text), 128008 (eom) and 128009 (eot); tokenizer_config's eot.
  EXPECT_EQ(StopTokens(config, tokenizer), (std::vector<TokenId>{128009, 128001, 128008}));
  const std::vector<TokenId> prompt = EncodePrompt(config, tokenizer, "Hello");
  EXPECT_EQ(prompt, (std::vector<TokenId>{128000, 9906}));
}

TEST(Prompt, Qwen3AddsNoBosWhateverConfigJsonSays) {
  // Qwen3's config.json names <|endoftext|> as bos_token_id; its tokenizer_config.json says
  // add_bos_token false, and Hugging Face's tokenizer adds nothing.
  const Tokenizer tokenizer = LoadFolder("qwen3");
  EXPECT_EQ(tokenizer.adds_bos(), false);
  const ModelConfig config = ConfigOf("qwen3", 151936, 151643, {151645});
  EXPECT_EQ(BosToken(config, tokenizer), -1);
  EXPECT_EQ(EncodePrompt(config, tokenizer, "Hello"), tokenizer.Encode("Hello"));
  EXPECT_EQ(StopTokens(config, tokenizer), (std::vector<TokenId>{151645, 151643}));
}

TEST(Prompt, GemmaAndMistralAddTheirBos) {
  const Tokenizer gemma = LoadFolder("gemma3");
  EXPECT_EQ(gemma.adds_bos(), true);
  EXPECT_EQ(BosToken(ConfigOf("gemma3", 262144, -1, {1}), gemma), 2);
  EXPECT_EQ(StopTokens(ConfigOf("gemma3", 262144, -1, {1}), gemma), (std::vector<TokenId>{1, 106}));
  const Tokenizer mistral = LoadFolder("mistral-7b-v0.1");
  EXPECT_EQ(BosToken(ConfigOf("mistral-7b-v0.1", 32000, -1, {}), mistral), 1);
  EXPECT_EQ(StopTokens(ConfigOf("mistral-7b-v0.1", 32000, -1, {}), mistral), (std::vector<TokenId>{2}));
}

// A tokenizer_config.json that the tokenizer cannot honour is an error naming the file and
// the field; without one, the tokenizer.json decides.
TEST(Prompt, BadTokenizerConfigsSayWhatIsWrong) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("anyprec-prompt-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(testing::SharedPath("tokenizers/mistral-7b-v0.1/tokenizer.json"), dir / "tokenizer.json");
  const auto expect_error = [&](const std::string& config, const std::string& says) {
    std::ofstream(dir / "tokenizer_config.json") << config;
    const absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load((dir / "tokenizer.json").string());
    ASSERT_FALSE(tokenizer.ok()) << config;
    EXPECT_NE(tokenizer.status().message().find(says), std::string::npos) << tokenizer.status();
    EXPECT_NE(tokenizer.status().message().find("tokenizer_config.json"), std::string::npos) << tokenizer.status();
  };
  expect_error("[]", "not a JSON object");
  expect_error(R"({"eos_token": "<none>"})", "'eos_token' names '<none>', which the vocabulary does not hold");
  expect_error(R"({"eos_token": {"lstrip": false}})", "'eos_token' is an object without 'content'");
  expect_error(R"({"add_bos_token": true})", "'add_bos_token' is true but 'bos_token' names no single token");
  expect_error(R"({"add_bos_token": "yes", "bos_token": "<s>"})", "'add_bos_token' must be true or false");
  std::ofstream(dir / "tokenizer_config.json") << R"({"add_bos_token": false, "add_eos_token": true, "eos_token": ["</s>"]})";
  absl::StatusOr<Tokenizer> amended = Tokenizer::Load((dir / "tokenizer.json").string());
  ASSERT_TRUE(amended.ok()) << amended.status();
  const std::vector<TokenId> body = amended->Encode("Hi");
  std::vector<TokenId> want = body;
  want.push_back(2);
  EXPECT_EQ(amended->EncodeWithSpecialTokens("Hi"), want) << "no <s>, and </s> after the text";
  std::filesystem::remove_all(dir);

  ModelConfig config;
  config.vocab_size = 100;
  EXPECT_FALSE(MergeGenerationConfig(R"({"eos_token_id": [5, 100]})", "generation_config.json", config).ok());
  EXPECT_FALSE(MergeGenerationConfig(R"({"eos_token_id": "5"})", "generation_config.json", config).ok());
  EXPECT_FALSE(MergeGenerationConfig("[", "generation_config.json", config).ok());
}

}  // namespace
}  // namespace anyprec
