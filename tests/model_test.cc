#include "engine/model/model.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "engine/base/mapped_file.h"
#include "engine/model/float_convert.h"
#include "engine/model/rope.h"
#include "engine/model/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
using testing::SharedPath;

// A scratch model folder, removed when the test ends.
class TempModelDir {
 public:
  TempModelDir() : path_(fs::temp_directory_path() / ("anyprec-model-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++))) {
    fs::create_directories(path_);
  }
  ~TempModelDir() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }
  void Write(const std::string& name, const std::string& contents) const {
    std::ofstream(path_ / name, std::ios::binary) << contents;
  }
  void CopyFrom(const std::string& source_file, const std::string& name) const {
    fs::copy_file(source_file, path_ / name, fs::copy_options::overwrite_existing);
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// A tensor to serialize: its dtype name, shape and bytes.
struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Serializes `tensors` into one safetensors file, in the order given.
std::string Serialize(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  const std::string text = header.dump();
  const uint64_t len = text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + text + data;
}

Tensor CopyOf(const TensorView& view) {
  return {DTypeName(view.dtype), view.shape, std::string(reinterpret_cast<const char*>(view.data.data()), view.data.size())};
}

// Serializes `names` of `source` into one safetensors file.
std::string WriteShard(const SafetensorsFile& source, const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : names) tensors.emplace_back(name, CopyOf(source.tensors().at(name)));
  return Serialize(tensors);
}

std::string ErrorOf(const std::string& dir) {
  auto model = Model::Load(dir);
  EXPECT_FALSE(model.ok());
  return model.ok() ? "" : std::string(model.status().message());
}

TEST(Model, LoadsTinyStoriesInBothLayouts) {
  auto bf16 = Model::Load(SharedPath("models/TinyStories-656K"));
  auto f32 = Model::Load(SharedPath("models/TinyStories-656K-f32"));
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  ASSERT_TRUE(f32.ok()) << f32.status();
  const ModelConfig& c = bf16->config();
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(bf16->name(), "TinyStories-656K");
  // The F32 copy stores the tied matrix only as lm_head.weight, aliased by metadata.
  const auto a = bf16->weights().embedding.values;
  const auto b = f32->weights().embedding.values;
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
  EXPECT_EQ(f32->weights().head.values.data(), f32->weights().embedding.values.data());
  const auto down_a = bf16->weights().layers[1].w_down.dense;
  const auto down_b = f32->weights().layers[1].w_down.dense;
  EXPECT_TRUE(std::equal(down_a.begin(), down_a.end(), down_b.begin()));
}

// A quantizer streaming a checkpoint loads one layer at a time: each as Load reads it (norm
// offsets, fused projections split, biases, q/k norms, in place or widened), and gone again
// when released.
TEST(Model, LoadsAndReleasesOneLayerAtATime) {
  for (const std::string& dir : {SharedPath("models/TinyStories-656K-f32"), SharedPath("models/synthetic-arch/gemma"),
                                SharedPath("models/synthetic-arch/phi3"), SharedPath("models/synthetic-arch/qwen2"),
                                SharedPath("models/synthetic-arch/qwen3"), SharedPath("models/synthetic-arch/llama32-bf16")}) {
    SCOPED_TRACE(dir);
    auto whole = Model::Load(dir);
    auto lazy = Model::Load(dir, {.layers = false});
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_TRUE(lazy.ok()) << lazy.status();
    const int layers = whole->config().num_layers;
    const auto same = [](std::span<const float> a, std::span<const float> b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); };
    EXPECT_TRUE(same(whole->weights().embedding.values, lazy->weights().embedding.values));
    EXPECT_TRUE(same(whole->weights().final_norm, lazy->weights().final_norm));
    for (int i = 0; i < layers; ++i) {
      EXPECT_FALSE(lazy->layer_loaded(i));
      EXPECT_TRUE(lazy->weights().layers[i].wq.dense.empty());
      ASSERT_TRUE(lazy->LoadLayer(i).ok());
      ASSERT_TRUE(lazy->LoadLayer(i).ok()) << "loading a loaded layer is nothing";
      const LayerWeights& want = whole->weights().layers[i];
      const LayerWeights& got = lazy->weights().layers[i];
      for (const arch::Norm norm : {arch::Norm::kAttention, arch::Norm::kMlp, arch::Norm::kQuery, arch::Norm::kKey}) {
        EXPECT_TRUE(same(whole->weights().NormWeight(norm, i), lazy->weights().NormWeight(norm, i)));
      }
      for (int j = 0; j < arch::kLinearsPerLayer; ++j) {
        EXPECT_EQ(want.linears()[j]->rows, got.linears()[j]->rows);
        EXPECT_FALSE(got.linears()[j]->dense.empty());
        EXPECT_TRUE(same(want.linears()[j]->dense, got.linears()[j]->dense)) << "layer " << i << " linear " << j;
        EXPECT_TRUE(same(want.linears()[j]->bias, got.linears()[j]->bias));
      }
      lazy->ReleaseLayer(i);
      EXPECT_FALSE(lazy->layer_loaded(i));
      EXPECT_TRUE(lazy->weights().layers[i].w_down.dense.empty());
      EXPECT_TRUE(lazy->weights().layers[i].attn_norm.empty());
    }
    // Released and loaded again, a layer reads the same.
    ASSERT_TRUE(lazy->LoadLayer(0).ok());
    EXPECT_TRUE(same(whole->weights().layers[0].w_up.dense, lazy->weights().layers[0].w_up.dense));
    EXPECT_EQ(lazy->LoadLayer(layers).code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ(lazy->LoadLayer(-1).code(), absl::StatusCode::kOutOfRange);
  }
}

TEST(Model, LoadsShardedCheckpoints) {
  const std::string source_dir = SharedPath("models/stories260K-hf");
  auto source = SafetensorsFile::Open(source_dir + "/model.safetensors");
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<std::string> first;
  std::vector<std::string> second;
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, view] : source->tensors()) {
    const bool in_first = name.find("layers.3") == std::string::npos && name.find("layers.4") == std::string::npos;
    (in_first ? first : second).push_back(name);
    index["weight_map"][name] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  TempModelDir dir;
  dir.CopyFrom(source_dir + "/config.json", "config.json");
  dir.Write("model-00001-of-00002.safetensors", WriteShard(*source, first));
  dir.Write("model-00002-of-00002.safetensors", WriteShard(*source, second));
  dir.Write("model.safetensors.index.json", index.dump());
  auto sharded = Model::Load(dir.path());
  auto whole = Model::Load(source_dir);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ASSERT_TRUE(whole.ok()) << whole.status();
  const auto a = sharded->weights().layers[4].wq.dense;
  const auto b = whole->weights().layers[4].wq.dense;
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));

  // A shard missing a tensor, and a path escaping the folder, are named in the error.
  dir.Write("model-00002-of-00002.safetensors", WriteShard(*source, {second.begin(), second.end() - 1}));
  EXPECT_NE(ErrorOf(dir.path()).find("missing tensor"), std::string::npos);
  index["weight_map"][second.front()] = "../evil.safetensors";
  dir.Write("model.safetensors.index.json", index.dump());
  EXPECT_NE(ErrorOf(dir.path()).find("plain file name"), std::string::npos);
  dir.Write("model.safetensors.index.json", "{\"weight_map\": 3}");
  EXPECT_NE(ErrorOf(dir.path()).find("weight_map"), std::string::npos);
}

TEST(Model, ReportsBadFoldersClearly) {
  const std::string source_dir = SharedPath("models/TinyStories-656K");
  EXPECT_NE(ErrorOf("/nonexistent-model").find("not a model folder"), std::string::npos);

  TempModelDir dir;
  EXPECT_NE(ErrorOf(dir.path()).find("config.json"), std::string::npos);

  auto config_text = ReadTextFile(source_dir + "/config.json");
  ASSERT_TRUE(config_text.ok());
  dir.Write("config.json", *config_text);
  EXPECT_NE(ErrorOf(dir.path()).find("model.safetensors"), std::string::npos);

  // Truncated weights.
  auto weights = ReadTextFile(source_dir + "/model.safetensors");
  ASSERT_TRUE(weights.ok());
  dir.Write("model.safetensors", weights->substr(0, weights->size() / 2));
  EXPECT_NE(ErrorOf(dir.path()).find("run past the data section"), std::string::npos);

  // A config whose shapes disagree with the tensors.
  dir.Write("model.safetensors", *weights);
  nlohmann::json config = nlohmann::json::parse(*config_text);
  config["intermediate_size"] = 512;
  dir.Write("config.json", config.dump());
  const std::string shape_error = ErrorOf(dir.path());
  EXPECT_NE(shape_error.find("has shape [384, 128], the config needs [512, 128]"), std::string::npos) << shape_error;
  EXPECT_NE(shape_error.find("model.safetensors"), std::string::npos) << shape_error;
}

// The int8 head of an image (FORMAT.md: NAME as I8 and NAME_scale as F32 [rows]) in a folder:
// read when whole, and every way of getting it wrong named in the error.
TEST(Model, Int8HeadNeedsItsScalesAndNothingElseIsInt8) {
  const std::string source_dir = SharedPath("models/synthetic-arch/llama");
  auto source = SafetensorsFile::Open(source_dir + "/model.safetensors");
  ASSERT_TRUE(source.ok()) << source.status();
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, view] : source->tensors()) tensors[name] = CopyOf(view);
  const auto write = [](const TempModelDir& dir, const std::map<std::string, Tensor>& all) {
    dir.Write("model.safetensors", Serialize({all.begin(), all.end()}));
  };
  const std::vector<int64_t> shape = tensors.at("lm_head.weight").shape;
  const auto scales = [](size_t rows, float value) {
    const std::vector<float> v(rows, value);
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  tensors["lm_head.weight"] = {"I8", shape, std::string(static_cast<size_t>(shape[0] * shape[1]), '\x05')};
  TempModelDir dir;
  dir.CopyFrom(source_dir + "/config.json", "config.json");

  write(dir, tensors);
  EXPECT_NE(ErrorOf(dir.path()).find("missing tensor 'lm_head.weight_scale'"), std::string::npos) << ErrorOf(dir.path());
  tensors["lm_head.weight_scale"] = {"F32", {shape[0]}, scales(shape[0], 0.0f)};
  write(dir, tensors);
  EXPECT_NE(ErrorOf(dir.path()).find("not finite and positive"), std::string::npos) << ErrorOf(dir.path());
  tensors["lm_head.weight_scale"] = {"F32", {shape[0] - 1}, scales(shape[0] - 1, 0.5f)};
  write(dir, tensors);
  EXPECT_NE(ErrorOf(dir.path()).find("lm_head.weight_scale' has shape"), std::string::npos) << ErrorOf(dir.path());

  tensors["lm_head.weight_scale"] = {"F32", {shape[0]}, scales(shape[0], 0.5f)};
  write(dir, tensors);
  auto model = Model::Load(dir.path());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(model->weights().head.is_int8());
  std::vector<float> row(shape[1]);
  model->weights().head.CopyRow(3, row);
  EXPECT_EQ(row[0], 2.5f);
  // Switching to int8 needs both matrices in fp32 first; this one cannot switch at all.
  EXPECT_EQ(model->SetDenseInt8(true).code(), absl::StatusCode::kFailedPrecondition);

  const Tensor norm = tensors.at("model.norm.weight");
  tensors["model.norm.weight"] = {"I8", norm.shape, std::string(static_cast<size_t>(norm.shape[0]), '\x01')};
  write(dir, tensors);
  EXPECT_NE(ErrorOf(dir.path()).find("'model.norm.weight' is I8, not floating point"), std::string::npos) << ErrorOf(dir.path());
}

absl::Status ConfigStatus(const std::string& text) { return ParseModelConfig(text, "config.json").status(); }

TEST(ModelConfig, RejectsMalformedConfigs) {
  const nlohmann::json good = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 172},
                               {"num_hidden_layers", 5}, {"num_attention_heads", 8}, {"num_key_value_heads", 4},
                               {"vocab_size", 512}, {"eos_token_id", 2}};
  ASSERT_TRUE(ConfigStatus(good.dump()).ok());
  const auto expect_error = [](const std::string& text, const std::string& fragment) {
    const absl::Status status = ConfigStatus(text);
    ASSERT_FALSE(status.ok()) << text;
    EXPECT_NE(std::string(status.message()).find(fragment), std::string::npos) << status;
    EXPECT_NE(std::string(status.message()).find("config.json"), std::string::npos) << status;
  };
  expect_error("{\"hidden_size\": 6", "not valid JSON");
  expect_error("{\"architectures\": [\"Llama\xff\"]}", "not valid JSON");
  expect_error("[]", "not a JSON object");
  auto bad = good;
  bad["architectures"] = {"GPT2LMHeadModel"};
  expect_error(bad.dump(), "unsupported architecture 'GPT2LMHeadModel'");
  bad = good;
  bad.erase("hidden_size");
  expect_error(bad.dump(), "missing required field 'hidden_size'");
  bad = good;
  bad["num_key_value_heads"] = 3;
  expect_error(bad.dump(), "not a multiple");
  bad = good;
  bad["hidden_size"] = -64;
  expect_error(bad.dump(), "out of range");
  bad = good;
  bad["vocab_size"] = "512";
  expect_error(bad.dump(), "must be an integer");
  // What the families' configs may ask for that the engine cannot do, or that makes no sense.
  bad = good;
  bad["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
  expect_error(bad.dump(), "rope_scaling type 'longrope' is not supported");
  bad["rope_scaling"] = {{"type", "linear"}};
  expect_error(bad.dump(), "missing required field 'rope_scaling.factor'");
  bad["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}};
  expect_error(bad.dump(), "missing required field 'rope_scaling.original_max_position_embeddings'");
  bad["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", -4.0}};
  expect_error(bad.dump(), "field 'rope_scaling.factor' = -4 must be positive");
  bad["rope_scaling"] = {{"factor", 2.0}};
  expect_error(bad.dump(), "names no 'rope_type'");
  bad["rope_scaling"] = "linear";
  expect_error(bad.dump(), "field 'rope_scaling' must be an object");
  bad = good;
  bad["architectures"] = {"MistralForCausalLM"};
  bad["sliding_window"] = 0;
  expect_error(bad.dump(), "field 'sliding_window' = 0 is out of range");
  bad = good;
  bad["hidden_size"] = 66;
  expect_error(bad.dump(), "hidden_size is not a multiple of num_attention_heads");
  bad = good;
  bad["partial_rotary_factor"] = 0.1;
  expect_error(bad.dump(), "rotary dims: must be even");
  bad = good;
  bad["hidden_act"] = "relu";
  expect_error(bad.dump(), "unsupported hidden_act 'relu'");
  bad = good;
  bad["mlp_bias"] = true;
  expect_error(bad.dump(), "field 'mlp_bias' = true is not supported");
  bad = good;
  bad["eos_token_id"] = 9999;
  expect_error(bad.dump(), "outside the vocabulary");
  // Products that would overflow the engine's buffer arithmetic.
  bad = good;
  bad["num_attention_heads"] = 65536;
  bad["num_key_value_heads"] = 65536;
  bad["head_dim"] = 65538;
  expect_error(bad.dump(), "exceeds");
  bad = good;
  bad["anyprec"] = {{"format_version", 2}, {"seed_bits", 3}, {"max_bits", 8}, {"mode", "anyprec"}, {"weights_file", "a.safetensors"}};
  expect_error(bad.dump(), "format version 2");
  bad["anyprec"]["format_version"] = 1;
  bad["anyprec"]["weights_file"] = "../a.safetensors";
  expect_error(bad.dump(), "plain file name");
}

TEST(ModelConfig, ReadsDefaultsAndVariants) {
  auto qwen = ParseModelConfig(R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,
      "num_hidden_layers":1,"num_attention_heads":4,"vocab_size":100,"eos_token_id":[5,7],"rope_theta":1000000.0})", "config.json");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ(qwen->num_kv_heads, 4);
  EXPECT_EQ(qwen->head_dim, 16);
  EXPECT_EQ(qwen->eos_token_ids, (std::vector<int>{5, 7}));
  EXPECT_FLOAT_EQ(qwen->rope_theta, 1e6f);

  // Mistral's sliding window applies to every layer; Qwen's only with use_sliding_window,
  // from max_window_layers on.
  auto mistral = ParseModelConfig(R"({"architectures":["MistralForCausalLM"],"hidden_size":64,"intermediate_size":128,
      "num_hidden_layers":1,"num_attention_heads":4,"vocab_size":100,"max_position_embeddings":32768,"sliding_window":4096})", "config.json");
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(mistral->max_position_embeddings, 32768);
  EXPECT_EQ(mistral->WindowOf(0), 4096);
  auto windowed_qwen = ParseModelConfig(R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,
      "num_hidden_layers":4,"num_attention_heads":4,"vocab_size":100,"sliding_window":64,"use_sliding_window":true,"max_window_layers":2})",
                                        "config.json");
  ASSERT_TRUE(windowed_qwen.ok()) << windowed_qwen.status();
  EXPECT_EQ(windowed_qwen->WindowOf(1), 0);
  EXPECT_EQ(windowed_qwen->WindowOf(2), 64);
  EXPECT_TRUE(windowed_qwen->qkv_bias);
  EXPECT_FALSE(windowed_qwen->o_bias);
  auto qwen_without = ParseModelConfig(R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,
      "num_hidden_layers":4,"num_attention_heads":4,"vocab_size":100,"sliding_window":64,"use_sliding_window":false})", "config.json");
  ASSERT_TRUE(qwen_without.ok()) << qwen_without.status();
  EXPECT_EQ(qwen_without->WindowOf(3), 0) << "use_sliding_window false: the window is ignored, as Hugging Face documents";

  // What each family's configuration class assumes for a field its config leaves out.
  const auto parse = [](const std::string& architecture, const std::string& extra) {
    return ParseModelConfig(R"({"architectures":[")" + architecture + R"("],"hidden_size":64,"intermediate_size":128,
        "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100)" + extra + "}", "config.json");
  };
  auto gemma = parse("GemmaForCausalLM", "");
  ASSERT_TRUE(gemma.ok()) << gemma.status();
  EXPECT_EQ(gemma->head_dim, 256);
  EXPECT_EQ(gemma->mlp_activation, MlpActivation::kGeluTanh);
  EXPECT_TRUE(gemma->tie_word_embeddings);
  EXPECT_FLOAT_EQ(gemma->embedding_scale, 8.0f);
  auto qwen3 = parse("Qwen3ForCausalLM", "");
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  EXPECT_EQ(qwen3->head_dim, 128);
  EXPECT_TRUE(qwen3->qk_norm);
  auto mistral_default = parse("MistralForCausalLM", "");
  ASSERT_TRUE(mistral_default.ok()) << mistral_default.status();
  EXPECT_EQ(mistral_default->WindowOf(0), 4096);
  auto mistral_none = parse("MistralForCausalLM", R"(,"sliding_window":null)");
  ASSERT_TRUE(mistral_none.ok()) << mistral_none.status();
  EXPECT_EQ(mistral_none->WindowOf(0), 0);
  auto phi3 = parse("Phi3ForCausalLM", "");
  ASSERT_TRUE(phi3.ok()) << phi3.status();
  EXPECT_EQ(phi3->WindowOf(0), 0);
  EXPECT_FLOAT_EQ(phi3->rms_norm_eps, 1e-5f);
  auto every_layer = parse("Qwen2ForCausalLM", R"(,"use_sliding_window":true,"max_window_layers":0)");
  ASSERT_TRUE(every_layer.ok()) << every_layer.status();
  EXPECT_EQ(every_layer->WindowOf(0), 4096);
}

// The frequencies each rope_scaling type gives, against the values the synthetic checkpoints'
// references were computed with (their reference.json "rope" section, from an independent
// implementation of Hugging Face's modeling_rope_utils.py).
TEST(RopeScaling, FrequenciesMatchTheReferences) {
  for (const std::string variant : {"llama", "llama31", "llama32-bf16", "llama-linear", "llama-dynamic", "qwen2-yarn", "phi3", "qwen3"}) {
    SCOPED_TRACE(variant);
    const std::string dir = testing::SharedPath("models/synthetic-arch/" + variant);
    absl::StatusOr<std::string> config_text = ReadTextFile(dir + "/config.json");
    absl::StatusOr<std::string> reference_text = ReadTextFile(dir + "/reference.json");
    ASSERT_TRUE(config_text.ok() && reference_text.ok());
    absl::StatusOr<ModelConfig> config = ParseModelConfig(*config_text, "config.json");
    ASSERT_TRUE(config.ok()) << config.status();
    const nlohmann::json rope = nlohmann::json::parse(*reference_text)["rope"];
    const RopeFrequencies f = RopeFrequenciesFor(*config, 48);
    const auto want = rope["inv_freq"].get<std::vector<double>>();
    ASSERT_EQ(f.inv_freq.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(f.inv_freq[i], want[i], 1e-12 * want[0]) << i;
    EXPECT_NEAR(f.attention_factor, rope["attention_factor"].get<double>(), 1e-12);
    EXPECT_EQ(config->rotary_dim, rope["rotary_dim"].get<int>());
  }
}

TEST(FloatConvert, HalfRoundTripsExactlyAndRoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) continue;  // NaN payloads
    ASSERT_EQ(F32ToF16(F16ToF32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(F32ToF16(1.0f + 1.0f / 2048), F32ToF16(1.0f)) << "a tie rounds to the even neighbour";
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00u);
}

}  // namespace
}  // namespace anyprec
