// The `anyprec` command line as users run it: exit codes, output formats, errors.
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "engine/cpu/ops.h"
#include "engine/model/model.h"
#include "nlohmann/json.hpp"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

using testing::SharedPath;

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

CliRun RunProgram(const std::string& program, const std::string& args) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string out = dir + "/anyprec-cli-test-" + std::to_string(::getpid()) + ".out";
  const std::string err = dir + "/anyprec-cli-test-" + std::to_string(::getpid()) + ".err";
  const int status = std::system((program + " " + args + " >" + out + " 2>" + err + " </dev/null").c_str());
  CliRun run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, Slurp(out), Slurp(err)};
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return run;
}

CliRun RunCli(const std::string& args) { return RunProgram(ANYPREC_CLI, args); }
// `anyprec` with the bitplane kernel that ANYPREC_CPU_KERNEL names.
CliRun RunCliOnKernel(const std::string& kernel, const std::string& args) {
  return RunProgram("ANYPREC_CPU_KERNEL=" + kernel + " " + ANYPREC_CLI, args);
}
CliRun RunQuantize(const std::string& args) { return RunProgram(ANYPREC_QUANTIZE, args); }

// `run` ended with `exit_code`, its stderr saying `says`.
void ExpectEnded(const CliRun& run, int exit_code, const std::string& says) {
  EXPECT_EQ(run.exit_code, exit_code) << run.err;
  EXPECT_NE(run.err.find(says), std::string::npos) << run.err;
}

TEST(Cli, HelpOnEveryCommand) {
  for (const char* command : {"--help", "generate --help", "eval --help", "inspect --help", "tokenize --help", "render-chat --help"}) {
    const CliRun run = RunCli(command);
    EXPECT_EQ(run.exit_code, 0) << command;
    EXPECT_NE(run.out.find("Usage"), std::string::npos) << command;
  }
}

TEST(Cli, BadUsageExitsWithTwo) {
  const std::string model = SharedPath("models/TinyStories-656K");
  for (const std::string& args : {std::string(""), std::string("frobnicate"), "generate --model " + model,
                                 "generate --model " + model + " --prompt hi --temperature -1",
                                 "generate --model " + model + " --prompt hi --max-new-tokens abc",
                                 "generate --model " + model + " --prompt hi --no-such-flag",
                                 "eval --model " + model + " --text /nonexistent.txt"}) {
    const CliRun run = RunCli(args);
    EXPECT_EQ(run.exit_code, 2) << args << "\n" << run.err;
    EXPECT_FALSE(run.err.empty()) << args;
  }
}

TEST(Cli, QuantizeRejectsFlagsOfAnotherMode) {
  const std::string model = SharedPath("models/TinyStories-656K");
  for (const std::string& args : {"--model " + model + " --out /tmp/x --bits 4", "--model " + model + " --out /tmp/x --mode rtn",
                                 "--model " + model + " --out /tmp/x --mode rtn --bits 4 --max-bits 6",
                                 "--model " + model + " --out /tmp/x --seed-bits 5 --max-bits 4", "--model " + model,
                                 "--model " + model + " --out /tmp/x --model-name a@b", "--model " + model + " --out /tmp/x --model-name ''"}) {
    const CliRun run = RunQuantize(args);
    EXPECT_EQ(run.exit_code, 2) << args << "\n" << run.err;
  }
}

// The name the server's logical models carry (NAME@3): the folder's, unless --model-name says
// otherwise, as in a container that mounts every model at the same path.
TEST(Cli, QuantizeNamesTheImage) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("anyprec-cli-name-" + std::to_string(::getpid()));
  const std::string args = "--model " + SharedPath("models/stories260K-hf") + " --tokenizer " + SharedPath("models/stories260K/tok512.bin") +
                           " --sensitivity none --seed-method lloyd --out ";
  const auto source_model = [](const std::filesystem::path& image) {
    return nlohmann::json::parse(Slurp((image / "config.json").string()))["anyprec"].value("source_model", "");
  };
  ASSERT_EQ(RunQuantize(args + (dir / "default").string()).exit_code, 0);
  EXPECT_EQ(source_model(dir / "default"), "stories260K-hf");
  ASSERT_EQ(RunQuantize(args + (dir / "named").string() + " --model-name stories-test").exit_code, 0);
  EXPECT_EQ(source_model(dir / "named"), "stories-test");
  std::filesystem::remove_all(dir);
}

TEST(Cli, QuantizeFisherSavesLoadsAndChecksItsSums) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("anyprec-cli-fisher-" + std::to_string(::getpid()));
  const std::string sums = (dir / "sums.safetensors").string();
  std::filesystem::create_directories(dir);
  const std::string small = "--model " + SharedPath("models/stories260K-hf") + " --tokenizer " + SharedPath("models/stories260K/tok512.bin") +
                            " --calib " + SharedPath("data/tinystories/tinystories_val_head.txt");
  const CliRun saved = RunQuantize(small + " --out " + (dir / "a").string() +
                                   " --sensitivity fisher --calib-samples 2 --calib-seq-len 64 --save-sensitivity " + sums);
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  EXPECT_NE(saved.err.find("fisher: window 2/2"), std::string::npos) << saved.err;
  EXPECT_NE(saved.err.find("peak resident memory"), std::string::npos) << saved.err;

  const CliRun loaded = RunQuantize(small + " --out " + (dir / "b").string() + " --load-sensitivity " + sums);
  ExpectEnded(loaded, 0, "sensitivity: loaded from");

  const CliRun other = RunQuantize("--model " + SharedPath("models/TinyStories-656K") + " --out " + (dir / "c").string() +
                                   " --load-sensitivity " + sums);
  ExpectEnded(other, 1, "holds the sensitivity of stories260K-hf");
  EXPECT_FALSE(std::filesystem::exists(dir / "c" / "config.json"));

  for (const std::string& args : {small + " --out /tmp/x --sensitivity activation --save-sensitivity " + sums,
                                 small + " --out /tmp/x --sensitivity none --load-sensitivity " + sums,
                                 small + " --out /tmp/x --sensitivity bogus", small + " --out /tmp/x --calib-samples 0",
                                 small + " --out /tmp/x --fisher-accumulator fp8"}) {
    const CliRun run = RunQuantize(args);
    EXPECT_EQ(run.exit_code, 2) << args << "\n" << run.err;
  }
  std::filesystem::remove_all(dir);
}

TEST(Cli, GenerateStreamsGreedyStory) {
  const CliRun run = RunCli("generate --model " + SharedPath("models/TinyStories-656K") +
                         " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 20");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.out.starts_with("Once upon a time, a little girl named Lily lived in a small house")) << run.out;
}

// --stop ends the story where the text begins, the earliest of several (the Decoder that the
// server runs too); an empty one is a usage error.
TEST(Cli, GenerateEndsAtAStopSequence) {
  const std::string args = "generate --model " + SharedPath("models/TinyStories-656K") +
                           " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 40";
  const CliRun run = RunCli(args + " --stop 'small house' --stop 'Lily'");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "Once upon a time, a little girl named \n");
  // The space before "Lily" ends an earlier token's text: held back while it could begin the
  // stop sequence, it is never output.
  EXPECT_EQ(RunCli(args + " --stop ' Lily'").out, "Once upon a time, a little girl named\n");
  EXPECT_EQ(RunCli(args + " --stop ''").exit_code, 2);
}

// Without a GPU (as in CI), auto runs on the CPU and says why; cuda is an error that says why.
// With one, both run on it, after a self-check against the CPU. The GPU has no exact kernel:
// --exact-kernels runs on the CPU and says so, and with --device cuda is refused.
TEST(Cli, DeviceSelectionSaysWhichAndWhy) {
  const std::string args = "generate --model " + SharedPath("models/TinyStories-656K") + " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 5";
  const CliRun automatic = RunCli(args + " --device auto");
  EXPECT_EQ(automatic.exit_code, 0) << automatic.err;
  EXPECT_TRUE(automatic.out.starts_with("Once upon a time, a little girl")) << automatic.out;
  EXPECT_NE(automatic.err.find("device: "), std::string::npos) << automatic.err;
  const CliRun cpu = RunCli(args + " --device cpu");
  EXPECT_NE(cpu.err.find("device: cpu (--device cpu)"), std::string::npos) << cpu.err;
  const CliRun cuda = RunCli(args + " --device cuda");
  if (automatic.err.find("device: cpu (no GPU") != std::string::npos) {
    ExpectEnded(cuda, 1, "--device cuda: ");
  } else {
    EXPECT_EQ(cuda.exit_code, 0) << cuda.err;
  }
  EXPECT_EQ(RunCli(args + " --device tpu").exit_code, 2);
  const CliRun exact = RunCli(args + " --exact-kernels");
  ExpectEnded(exact, 0, "device: cpu (");
  EXPECT_NE(exact.err.find("), exact fp32 (--exact-kernels), KV cache"), std::string::npos) << exact.err;
  const CliRun exact_cuda = RunCli(args + " --device cuda --exact-kernels");
  ExpectEnded(exact_cuda, 1, "--device cuda: the GPU has no exact kernel (--exact-kernels); pass --device cpu");
}

// The KV cache's dtype: fp16 on the CPU by default, each choice named in the start-up line and
// giving the same greedy story; a GPU, whose attention reads fp32, cannot take the 16-bit ones:
// auto then runs on the CPU, and --device cuda is refused.
TEST(Cli, KvCacheDTypeIsChosenAndNamed) {
  const std::string args = "generate --model " + SharedPath("models/TinyStories-656K") +
                           " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 12 --device cpu";
  const CliRun automatic = RunCli(args);
  EXPECT_NE(automatic.err.find(", KV cache fp16"), std::string::npos) << automatic.err;
  for (const char* dtype : {"fp32", "bf16", "fp16"}) {
    const CliRun run = RunCli(args + " --kv-cache-dtype " + dtype);
    ExpectEnded(run, 0, std::string(", KV cache ") + dtype);
    EXPECT_TRUE(run.out.starts_with("Once upon a time, a little girl named Lily")) << dtype << ": " << run.out;
  }
  EXPECT_EQ(RunCli(args + " --kv-cache-dtype fp8").exit_code, 2);
  const std::string bf16 = "generate --model " + SharedPath("models/TinyStories-656K") + " --prompt hi --kv-cache-dtype bf16";
  const CliRun automatic_bf16 = RunCli(bf16 + " --device auto");
  ExpectEnded(automatic_bf16, 0, "device: cpu (");
  const CliRun cuda_bf16 = RunCli(bf16 + " --device cuda");
  ExpectEnded(cuda_bf16, 1, "--device cuda: the GPU's attention reads fp32 keys and values (--kv-cache-dtype bf16)");
}

TEST(Cli, EvalPrintsOneJsonLinePerPrecision) {
  const CliRun run = RunCli("eval --model " + SharedPath("models/stories260K-hf") + " --tokenizer " +
                         SharedPath("models/stories260K/tok512.bin") + " --text " +
                         SharedPath("data/tinystories/tinystories_val_head.txt") + " --windows 2 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto line = nlohmann::json::parse(run.out);
  EXPECT_EQ(line["bits"], 0);
  EXPECT_EQ(line["tokens"], 2 * 511);
  EXPECT_GT(line["ppl"].get<double>(), 1.0);
}

// eval --token-ids on a model without a tokenizer runs the ids as the synthetic references do:
// the same NLL and the same top-1 id at every position, from a JSON array or plain ids; and
// on an image, one line per width.
TEST(Cli, EvalTokenIdsRunsIdsAsGiven) {
  const std::string dir = SharedPath("models/synthetic-arch/mistral");
  const nlohmann::json reference = nlohmann::json::parse(Slurp(dir + "/reference.json"));
  const auto ids = reference["input_ids"].get<std::vector<int>>();
  const std::string scratch = std::filesystem::temp_directory_path() / ("anyprec-ids-" + std::to_string(::getpid()));
  std::ofstream(scratch + ".json") << nlohmann::json(ids).dump();
  std::ofstream plain(scratch + ".txt");
  for (const int id : ids) plain << id << (id % 3 == 0 ? "\n" : "  ");
  plain.close();
  for (const std::string& file : {scratch + ".json", scratch + ".txt"}) {
    const CliRun run = RunCli("eval --model " + dir + " --token-ids " + file + " --kv-cache-dtype fp32 --json");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const auto line = nlohmann::json::parse(run.out);
    EXPECT_EQ(line["bits"], 0);
    EXPECT_EQ(line["tokens"], ids.size() - 1);
    EXPECT_NEAR(line["mean_nll"].get<double>(), reference["mean_nll"].get<double>(), 1e-4 * reference["mean_nll"].get<double>());
    ASSERT_EQ(line["top1"].size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(line["top1"][i], reference["top5"][i][0]) << "position " << i;
  }
  const CliRun image = RunCli("eval --model " + SharedPath("models/stories260K-hf") + " --tokenizer " +
                              SharedPath("models/stories260K/tok512.bin") + " --token-ids " + scratch + ".txt --bits 0");
  EXPECT_EQ(image.exit_code, 0) << image.err;
  EXPECT_NE(image.out.find("mean NLL"), std::string::npos) << image.out;

  std::ofstream(scratch + ".bad") << "[1, 2, -3]";
  ExpectEnded(RunCli("eval --model " + dir + " --token-ids " + scratch + ".bad"), 1, "'-3' is not a token id");
  std::ofstream(scratch + ".bad") << "1 2 x";
  ExpectEnded(RunCli("eval --model " + dir + " --token-ids " + scratch + ".bad"), 1, "'x' is not a token id");
  std::ofstream(scratch + ".bad") << "1 2 512";
  ExpectEnded(RunCli("eval --model " + dir + " --token-ids " + scratch + ".bad"), 1, "id 512 at index 2 is outside the model's vocabulary of 512");
  EXPECT_EQ(RunCli("eval --model " + dir + " --token-ids " + scratch + ".json --text " + scratch + ".txt").exit_code, 2);
  EXPECT_EQ(RunCli("eval --model " + dir).exit_code, 2);
  ExpectEnded(RunCli("eval --model " + dir + " --text " + scratch + ".txt"), 1, "no tokenizer.json or tokenizer.bin");
  for (const char* suffix : {".json", ".txt", ".bad"}) std::filesystem::remove(scratch + suffix);
}

// anyprec-synthesize writes each family's checkpoint as Hugging Face does (Phi-3's fused
// projections, Qwen's biases, Qwen3's q/k norms), which the engine then loads and runs.
// The `index`th conversation of a chat template's reference file (../shared/chat-templates),
// its messages written to `messages_path`.
nlohmann::json ReferenceConversation(const std::string& name, int index, const std::string& messages_path) {
  std::ifstream lines(SharedPath("chat-templates/" + name + ".reference.jsonl"));
  std::string line;
  for (int i = 0; i <= index; ++i) std::getline(lines, line);
  nlohmann::json reference = nlohmann::json::parse(line);
  std::ofstream(messages_path) << reference["messages"].dump();
  return reference;
}

TEST(Cli, RenderChatPrintsTheReferenceRendering) {
  const std::string messages = std::filesystem::temp_directory_path() / ("anyprec-cli-chat-" + std::to_string(::getpid()) + ".json");
  // gemma3, system + user: the template from its file, the special tokens given.
  const nlohmann::json gemma = ReferenceConversation("gemma3", 1, messages);
  const CliRun from_file = RunCli("render-chat --template " + SharedPath("chat-templates/gemma3.jinja") + " --messages " + messages +
                                  " --add-generation-prompt --bos-token '<bos>' --eos-token '<end_of_turn>'");
  EXPECT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_EQ(from_file.out, gemma["rendered"].get<std::string>());
  // Llama 3.1, multi-turn: the template and BOS from the tokenizer folder, the date as a --var.
  const nlohmann::json llama = ReferenceConversation("llama-3.1", 2, messages);
  const CliRun from_model = RunCli("render-chat --model " + SharedPath("tokenizers/llama-3.1") + " --messages " + messages +
                                   " --add-generation-prompt --var 'date_string=\"05 Dec 2025\"'");
  EXPECT_EQ(from_model.exit_code, 0) << from_model.err;
  EXPECT_EQ(from_model.out, llama["rendered"].get<std::string>());
  // A template that raises fails with its message.
  ReferenceConversation("gemma3", 9, messages);
  ExpectEnded(RunCli("render-chat --template " + SharedPath("chat-templates/gemma3.jinja") + " --messages " + messages), 1,
              "Conversation roles must alternate user/assistant/user/assistant/...");
  std::filesystem::remove(messages);
}

TEST(Cli, RenderChatUsageErrors) {
  const std::string chat_template = SharedPath("chat-templates/qwen3.jinja");
  const std::string messages = std::filesystem::temp_directory_path() / ("anyprec-cli-chat-usage-" + std::to_string(::getpid()) + ".json");
  std::ofstream(messages) << R"([{"role": "user", "content": "hi"}])";
  for (const std::string& args : {"render-chat --messages " + messages, "render-chat --template " + chat_template,
                                 "render-chat --template " + chat_template + " --model " + SharedPath("tokenizers/qwen3") + " --messages " + messages,
                                 "render-chat --template " + chat_template + " --messages " + messages + " --var enable_thinking",
                                 "render-chat --template " + chat_template + " --messages " + messages + " --var 'x={bad'"}) {
    const CliRun run = RunCli(args);
    EXPECT_EQ(run.exit_code, 2) << args << "\n" << run.err;
  }
  std::ofstream(messages) << "{}";
  ExpectEnded(RunCli("render-chat --template " + chat_template + " --messages " + messages), 1, "not a JSON array of messages");
  ExpectEnded(RunCli("render-chat --model " + SharedPath("tokenizers/gpt2") + " --messages " + messages), 1, "has no chat template");
  std::filesystem::remove(messages);
}

TEST(Cli, SynthesizeWritesEachFamilysTensors) {
  const std::string out = std::filesystem::temp_directory_path() / ("anyprec-synth-" + std::to_string(::getpid()));
  std::ofstream(out + ".ids") << "1 2 3 4 5";
  const std::map<std::string, std::vector<std::string>> must_hold = {
      {"phi3", {"layers.0.self_attn.qkv_proj.weight", "layers.0.mlp.gate_up_proj.weight"}},
      {"qwen2", {"layers.0.self_attn.q_proj.bias", "layers.0.self_attn.v_proj.bias"}},
      {"qwen3", {"layers.0.self_attn.q_norm.weight", "layers.0.self_attn.k_norm.weight"}},
      {"llama31", {"layers.0.self_attn.q_proj.weight", "lm_head.weight"}},
      {"gemma", {"layers.0.mlp.gate_proj.weight"}}};
  for (const auto& [variant, names] : must_hold) {
    SCOPED_TRACE(variant);
    const CliRun made = RunProgram(ANYPREC_SYNTHESIZE, "--config " + SharedPath("models/synthetic-arch/" + variant + "/config.json") +
                                                           " --layers 1 --out " + out);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    const std::string weights = Slurp(out + "/model.safetensors");
    for (const std::string& name : names) EXPECT_NE(weights.find(name), std::string::npos) << name;
    if (variant == "phi3") {
      EXPECT_EQ(weights.find("self_attn.q_proj"), std::string::npos) << "fused, as Phi-3 stores it";
    }
    const CliRun run = RunCli("eval --model " + out + " --token-ids " + out + ".ids --json");
    EXPECT_EQ(run.exit_code, 0) << run.err;
    std::filesystem::remove_all(out);
  }
  std::filesystem::remove(out + ".ids");
}

// anyprec-quantize streams a checkpoint one decoder layer at a time, calibration included, so
// its peak memory does not grow with the layers (a Llama-3.1-8B BF16 checkpoint quantizes in
// under 8 GiB). Of two checkpoints of one shape, with 2 and 6 layers, the second may peak above
// the first by less than one layer's fp32 weights; widening every layer would add four.
TEST(Cli, QuantizePeakMemoryDoesNotGrowWithTheLayers) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("anyprec-cli-stream-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 1024},
                                 {"intermediate_size", 4096}, {"num_attention_heads", 8}, {"num_key_value_heads", 8},
                                 {"num_hidden_layers", 2}, {"vocab_size", 512}, {"max_position_embeddings", 1024},
                                 {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}, {"bos_token_id", 1}, {"eos_token_id", 2}};
  std::ofstream((dir / "config.json").string()) << config.dump();
  constexpr double kLayerMiB = (4.0 * 1024 * 1024 + 3.0 * 4096 * 1024) * sizeof(float) / (1 << 20);
  double peak_mib[2];
  for (const int layers : {2, 6}) {
    SCOPED_TRACE(layers);
    const std::string model = (dir / ("model" + std::to_string(layers))).string();
    const CliRun made = RunProgram(ANYPREC_SYNTHESIZE, "--config " + (dir / "config.json").string() + " --layers " +
                                                           std::to_string(layers) + " --out " + model);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    // Activation sensitivity and the dense dtype's measurement: every calibration pass runs.
    const CliRun run = RunQuantize("--model " + model + " --out " + model + "-image --tokenizer " + SharedPath("models/stories260K/tok512.bin") +
                                   " --sensitivity activation --calib-tokens 512 --seed-method lloyd --max-bits 4");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.err.find("dense dtype: int8 (perplexity on"), std::string::npos) << run.err;
    const size_t at = run.err.find("peak resident memory ");
    ASSERT_NE(at, std::string::npos) << run.err;
    peak_mib[layers == 6] = std::stod(run.err.substr(at + std::strlen("peak resident memory ")));
    auto image = Model::Load(model + "-image");
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->config().num_layers, layers);
  }
  EXPECT_LT(peak_mib[1] - peak_mib[0], kLayerMiB) << "peaks " << peak_mib[0] << " and " << peak_mib[1] << " MiB; a layer is " << kLayerMiB;
  std::filesystem::remove_all(dir);
}

TEST(Cli, RuntimeErrorsAreOneClearLine) {
  const std::string dir = std::filesystem::temp_directory_path().string() + "/anyprec-cli-bad-model-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << "{\"architectures\": [\"BertModel\"]}";
  const CliRun run = RunCli("generate --model " + dir + " --prompt hi");
  std::filesystem::remove_all(dir);
  ExpectEnded(run, 1, "unsupported architecture 'BertModel'");
  EXPECT_NE(run.err.find("config.json"), std::string::npos) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;

  const CliRun too_short = RunCli("eval --model " + SharedPath("models/TinyStories-656K") + " --text " +
                               SharedPath("data/tinystories/tinystories_v2_train_sample.txt"));
  ExpectEnded(too_short, 1, "fewer than 8 windows");
}

// `anyprec tokenize` on Llama 3.1's real tokenizer.json gives the ids of its reference.jsonl
// (written by Hugging Face's tokenizers), with BOS and without, and the vocabulary's pieces.
TEST(Cli, TokenizeMatchesTheReference) {
  const std::string tokenizer = SharedPath("tokenizers/llama-3.1/tokenizer.json");
  const std::string text_file = std::filesystem::temp_directory_path().string() + "/anyprec-cli-tokenize-" + std::to_string(::getpid());
  std::ifstream in(SharedPath("tokenizers/llama-3.1/reference.jsonl"));
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    const auto ref = nlohmann::json::parse(line);
    const std::string name = ref["case"];
    if (name != "contractions_upper" && name != "special_tokens_in_text" && name != "wiki_head_2465b") continue;
    SCOPED_TRACE(name);
    std::ofstream(text_file, std::ios::binary) << ref["text"].get<std::string>();
    const CliRun with_bos = RunCli("tokenize --tokenizer " + tokenizer + " --file " + text_file + " --json");
    ASSERT_EQ(with_bos.exit_code, 0) << with_bos.err;
    const auto got = nlohmann::json::parse(with_bos.out);
    EXPECT_EQ(got["ids"], ref["ids_with_special"]);
    const CliRun without = RunCli("tokenize --tokenizer " + tokenizer + " --file " + text_file + " --json --no-special");
    ASSERT_EQ(without.exit_code, 0) << without.err;
    EXPECT_EQ(nlohmann::json::parse(without.out)["ids"], ref["ids"]);
    // No Llama 3.1 token strips whitespace, so the reference's token strings are the pieces.
    EXPECT_EQ(nlohmann::json::parse(without.out)["pieces"], ref["tokens"]);
    ++cases;
  }
  std::filesystem::remove(text_file);
  EXPECT_EQ(cases, 3);

  // One line per token, from the model folder's tokenizer.json.
  const CliRun lines = RunCli("tokenize --model " + SharedPath("tokenizers/llama-3.1") + " --text 'Hello world'");
  ASSERT_EQ(lines.exit_code, 0) << lines.err;
  EXPECT_EQ(lines.out, "128000\t<|begin_of_text|>\n9906\tHello\n1917\tĠworld\n");
  // A backslash is escaped, so that the piece "\n" (backslash, n) cannot pass for a newline.
  const CliRun backslash = RunCli("tokenize --tokenizer " + tokenizer + " --no-special --text '\\n'");
  ASSERT_EQ(backslash.exit_code, 0) << backslash.err;
  EXPECT_EQ(backslash.out, "1734\t\\\\n\n");
}

TEST(Cli, TokenizeEscapesControlCharactersInPieces) {
  const std::string text_file = std::filesystem::temp_directory_path().string() + "/anyprec-cli-tokenize-" + std::to_string(::getpid());
  std::ofstream(text_file, std::ios::binary) << "The end.\nA";
  const CliRun run = RunCli("tokenize --model " + SharedPath("models/TinyStories-656K") + " --file " + text_file + " --no-special");
  std::filesystem::remove(text_file);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "80\t▁\n247\tThe▁\n183\tend\n501\t.\\nA\n");
}

TEST(Cli, TokenizeUsageErrorsExitWithTwo) {
  const std::string tokenizer = SharedPath("tokenizers/llama-3.1/tokenizer.json");
  const std::string text = SharedPath("data/tinystories/tinystories_v2_train_sample.txt");
  ExpectEnded(RunCli("tokenize --tokenizer " + tokenizer), 2, "Exactly 1 option from [--text,--file] is required");
  ExpectEnded(RunCli("tokenize --tokenizer " + tokenizer + " --text hi --file " + text), 2, "2 were given");
  ExpectEnded(RunCli("tokenize --tokenizer " + tokenizer + " --file /nonexistent.txt"), 2, "/nonexistent.txt");
  ExpectEnded(RunCli("tokenize --tokenizer /nonexistent.json --text hi"), 2, "/nonexistent.json");
  ExpectEnded(RunCli("tokenize --text hi"), 2, "[--model,--tokenizer]");
  // A folder without a tokenizer is not a usage error: the command ran and found none.
  ExpectEnded(RunCli("tokenize --model " + SharedPath("data") + " --text hi"), 1, "no tokenizer.json or tokenizer.bin");
}

// Quantize, inspect, evaluate and generate through the two command-line tools.
class CliImageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = std::filesystem::temp_directory_path() / ("anyprec-cli-image-" + std::to_string(::getpid()));
    image_ = (root_ / "anyprec").string();
    const CliRun run = RunQuantize("--model " + SharedPath("models/TinyStories-656K") + " --out " + image_ + " --calib " +
                                   SharedPath("data/tinystories/tinystories_val_head.txt") + " --sensitivity activation --calib-tokens 4096");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.err.find("layer 1/2 quantized in "), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("layer 2/2 quantized in "), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("s; about 0 s left"), std::string::npos) << "the last layer leaves nothing: " << run.err;
    // --dense-dtype auto measures its choice on the calibration text and records it.
    EXPECT_NE(run.err.find("dense dtype: int8 (perplexity on 4 calibration windows"), std::string::npos) << run.err;
    EXPECT_EQ(nlohmann::json::parse(Slurp(image_ + "/config.json"))["anyprec"]["dense_dtype"], "int8");
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(root_); }

  static inline std::filesystem::path root_;
  static inline std::string image_;
};

TEST_F(CliImageTest, InspectReportsOverlaidSizes) {
  const CliRun run = RunCli("inspect " + image_ + " --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto report = nlohmann::json::parse(run.out);
  EXPECT_TRUE(report["cpu_kernel"].get<std::string>().starts_with(cpu::HasInt8BitplaneKernel() ? "int8 " : "exact")) << run.out;
  // 128-column rows pack into whole bytes, so the planes carry no padding.
  EXPECT_EQ(report["plane_bytes"].get<uint64_t>(), 8 * report["quantized_weights"].get<uint64_t>() / 8);
  ASSERT_EQ(report["widths"].size(), 6u);
  uint64_t previous = 0;
  for (const auto& w : report["widths"]) {
    EXPECT_GT(w["bytes_per_token"].get<uint64_t>(), previous);
    previous = w["bytes_per_token"].get<uint64_t>();
  }

  // The one image against six images quantized separately at 3..8 bits, as files.
  uint64_t separate = 0;
  for (int b = 3; b <= 8; ++b) {
    const std::string out = (root_ / ("independent" + std::to_string(b))).string();
    const CliRun quantize = RunQuantize("--model " + SharedPath("models/TinyStories-656K") + " --out " + out +
                                        " --mode independent --bits " + std::to_string(b) + " --sensitivity none");
    ASSERT_EQ(quantize.exit_code, 0) << quantize.err;
    separate += std::filesystem::file_size(out + "/anyprec.safetensors");
  }
  EXPECT_LT(report["image_bytes"].get<uint64_t>(), separate);
}

TEST_F(CliImageTest, EvalPrintsALinePerWidth) {
  const CliRun run = RunCli("eval --model " + image_ + " --text " + SharedPath("data/tinystories/tinystories_val_head.txt") +
                            " --windows 1 --bits 3,4,8 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::istringstream lines(run.out);
  std::string line;
  std::vector<int> widths;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    widths.push_back(j["bits"]);
    EXPECT_EQ(j["tokens"], 511);
  }
  EXPECT_EQ(widths, (std::vector<int>{3, 4, 8}));
  EXPECT_EQ(RunCli("eval --model " + image_ + " --text " + SharedPath("data/tinystories/tinystories_val_head.txt") + " --bits 9")
                .exit_code,
            2);
}

TEST_F(CliImageTest, GenerateRunsAnyWidth) {
  for (const char* bits : {"3", "8"}) {
    const CliRun run = RunCli("generate --model " + image_ + " --bits " + bits + " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 10");
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_TRUE(run.out.starts_with("Once upon a time")) << run.out;
  }
  // Every front checks a width by one rule (engine/model/width.h) and says so alike.
  const CliRun narrow = RunCli("generate --model " + image_ + " --bits 2 --prompt hi");
  ExpectEnded(narrow, 2, "--bits 2 is outside the model's widths 3..8");
  const CliRun eval = RunCli("eval --model " + image_ + " --bits 3,2 --text " + SharedPath("data/tinystories/tinystories_val_head.txt"));
  ExpectEnded(eval, 2, "--bits 2 is outside the model's widths 3..8");
  const CliRun unquantized = RunCli("generate --model " + SharedPath("models/TinyStories-656K") + " --bits 3 --prompt hi");
  ExpectEnded(unquantized, 2, "--bits 3 is outside the model's widths 0..0");
}

// anyprec generate decodes speculatively when asked: the same text as plain decoding at --bits,
// and the acceptance rate on stderr; a draft that is not narrower is refused.
TEST_F(CliImageTest, GenerateSpeculativelyPrintsWhatPlainGenerates) {
  const std::string args = "generate --model " + image_ + " --bits 8 --prompt 'Once upon a time' --temperature 0 --max-new-tokens 48";
  const CliRun plain = RunCli(args);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const CliRun fast = RunCli(args + " --speculative-draft-bits 3 --speculative-lookahead 4");
  ASSERT_EQ(fast.exit_code, 0) << fast.err;
  EXPECT_EQ(fast.out, plain.out);
  EXPECT_NE(fast.err.find("drafted tokens accepted"), std::string::npos) << fast.err;
  ExpectEnded(RunCli(args + " --speculative-draft-bits 8"), 2, "draft width 8 must be below the target width 8");
}

// Each int8 kernel this CPU runs, chosen as users choose it, keeps perplexity on two real
// models within 0.5% of the exact kernel at every width (and prints the table in
// docs/BENCHMARKS.md); the start-up line names the kernel; a name that is unknown or that
// this CPU cannot run is refused.
TEST_F(CliImageTest, EveryKernelKeepsPerplexityWithinHalfPercentOfExact) {
  const std::string stories260k = (root_ / "stories260K").string();
  const CliRun quantize = RunQuantize("--model " + SharedPath("models/stories260K-hf") + " --out " + stories260k + " --sensitivity none");
  ASSERT_EQ(quantize.exit_code, 0) << quantize.err;
  const std::string text = " --text " + SharedPath("data/tinystories/tinystories_val_head.txt") + " --json";
  const std::vector<std::pair<std::string, std::string>> models = {
      {"TinyStories-656K", "eval --model " + image_ + text},
      {"stories260K", "eval --model " + stories260k + " --tokenizer " + SharedPath("models/stories260K/tok512.bin") + text}};
  std::vector<std::string> kernels = {"exact"};
  for (const cpu::Int8Kernel kernel : cpu::SupportedInt8Kernels()) kernels.emplace_back(cpu::Int8KernelName(kernel));
  // ppl[model][kernel][bits]
  std::vector<std::vector<std::map<int, double>>> ppl(models.size(), std::vector<std::map<int, double>>(kernels.size()));
  for (size_t m = 0; m < models.size(); ++m) {
    for (size_t k = 0; k < kernels.size(); ++k) {
      const CliRun run = RunCliOnKernel(kernels[k], models[m].second);
      ASSERT_EQ(run.exit_code, 0) << kernels[k] << ": " << run.err;
      EXPECT_NE(run.err.find(k == 0 ? "exact fp32 (ANYPREC_CPU_KERNEL=exact)" : "int8 " + kernels[k] + " (ANYPREC_CPU_KERNEL)"),
                std::string::npos)
          << run.err;
      std::istringstream lines(run.out);
      for (std::string line; std::getline(lines, line);) {
        const auto j = nlohmann::json::parse(line);
        ppl[m][k][j["bits"].get<int>()] = j["ppl"].get<double>();
      }
      ASSERT_EQ(ppl[m][k].size(), 6u) << run.out;
    }
  }
  std::printf("| model | bits | exact |");
  for (size_t k = 1; k < kernels.size(); ++k) std::printf(" %s | vs exact |", kernels[k].c_str());
  std::printf("\n|---|---|---|");
  for (size_t k = 1; k < kernels.size(); ++k) std::printf("---|---|");
  std::printf("\n");
  for (size_t m = 0; m < models.size(); ++m) {
    for (const auto& [bits, exact] : ppl[m][0]) {
      std::printf("| %s | %d | %.3f |", models[m].first.c_str(), bits, exact);
      for (size_t k = 1; k < kernels.size(); ++k) {
        const double relative = ppl[m][k][bits] / exact - 1;
        std::printf(" %.3f | %+.2f%% |", ppl[m][k][bits], 100 * relative);
        EXPECT_LT(std::abs(relative), 0.005) << models[m].first << " at " << bits << " bits on " << kernels[k];
      }
      std::printf("\n");
    }
  }

  const CliRun unknown = RunCliOnKernel("sse9", models[0].second);
  ExpectEnded(unknown, 1, "ANYPREC_CPU_KERNEL='sse9' is none of");
  for (const std::string name : {"avx512-vbmi", "avx2-vnni", "avx2"}) {
    if (std::find(kernels.begin(), kernels.end(), name) != kernels.end()) continue;
    const CliRun lacking = RunCliOnKernel(name, models[0].second);
    ExpectEnded(lacking, 1, "which this CPU lacks");
  }
}

}  // namespace
}  // namespace anyprec
