#include "engine/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/status_macros.h"
#include "engine/model/image_format.h"
#include "nlohmann/json.hpp"

namespace anyprec {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  // `prefix` names a nested object in errors, e.g. "rope_scaling.".
  ConfigReader(const json& root, const std::string& source, std::string prefix = "") : root_(root), source_(source), prefix_(std::move(prefix)) {}

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", what));
  }

  // Reads a positive integer field; `fallback` < 0 makes the field required.
  absl::StatusOr<int> PositiveInt(const char* key, int fallback = -1) const { return IntAtLeast(1, key, fallback); }
  // Reads an integer >= 0, or `fallback` when absent.
  absl::StatusOr<int> NonNegativeInt(const char* key, int fallback) const { return IntAtLeast(0, key, fallback); }

  // Reads a positive number; without `fallback` the field is required.
  absl::StatusOr<double> PositiveNumber(const char* key, std::optional<double> fallback = std::nullopt) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) {
      if (!fallback.has_value()) return Error(absl::StrCat("missing required field '", prefix_, key, "'"));
      return *fallback;
    }
    if (!it->is_number()) return Error(absl::StrCat("field '", prefix_, key, "' must be a number"));
    const double v = it->get<double>();
    if (!(v > 0) || v > std::numeric_limits<float>::max()) return Error(absl::StrCat("field '", prefix_, key, "' = ", v, " must be positive"));
    return v;
  }

  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return Error(absl::StrCat("field '", prefix_, key, "' must be true or false"));
    return it->get<bool>();
  }

  // A string field, or nullopt when absent or null.
  absl::StatusOr<std::optional<std::string>> String(const char* key) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string()) return Error(absl::StrCat("field '", prefix_, key, "' must be a string"));
    return std::optional<std::string>(it->get<std::string>());
  }

  bool Has(const char* key) const {
    const auto it = root_.find(key);
    return it != root_.end() && !it->is_null();
  }
  const json& root() const { return root_; }
  const std::string& source() const { return source_; }

  // Token ids may be absent, an integer, or (for eos) a list of integers.
  absl::StatusOr<std::vector<int>> TokenIds(const char* key) const {
    std::vector<int> ids;
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return ids;
    const auto add = [&](const json& v) -> absl::Status {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int>::max()) {
        return Error(absl::StrCat("field '", prefix_, key, "' must hold non-negative integer token ids"));
      }
      ids.push_back(static_cast<int>(v.get<int64_t>()));
      return absl::OkStatus();
    };
    if (it->is_array()) {
      for (const auto& v : *it) {
        if (absl::Status s = add(v); !s.ok()) return s;
      }
    } else if (absl::Status s = add(*it); !s.ok()) {
      return s;
    }
    return ids;
  }

 private:
  absl::StatusOr<int> IntAtLeast(int minimum, const char* key, int fallback) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) {
      if (fallback < 0) return Error(absl::StrCat("missing required field '", prefix_, key, "'"));
      return fallback;
    }
    if (!it->is_number_integer()) return Error(absl::StrCat("field '", prefix_, key, "' must be an integer"));
    const int64_t v = it->get<int64_t>();
    if (v < minimum || v > (1 << 24)) return Error(absl::StrCat("field '", prefix_, key, "' = ", v, " is out of range"));
    return static_cast<int>(v);
  }

  const json& root_;
  const std::string& source_;
  std::string prefix_;
};

// Which layers attend within a sliding window.
enum class WindowRule {
  kNone,        // none (Llama, Gemma)
  kEveryLayer,  // every layer, unless sliding_window is null (Mistral, Phi-3)
  kOptIn,       // only with use_sliding_window, from layer max_window_layers on (Qwen)
};

// One family: what its Hugging Face configuration class assumes for a field a config leaves
// out, and what its decoder layer does beyond Llama's. Adding a family adds a row here.
struct Family {
  const char* architecture;
  int head_dim = 0;  // 0: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  MlpActivation activation = MlpActivation::kSilu;
  bool reads_hidden_activation = false;  // Gemma: hidden_activation, else hidden_act
  WindowRule window = WindowRule::kNone;
  int sliding_window = 0;  // without the field (0: no window)
  bool qkv_bias = false;   // always; else attention_bias decides q, k, v and o
  bool qk_norm = false;
  bool fused_projections = false;
  bool gemma_scaling = false;  // norms multiply by 1 + w, the embedding by sqrt(hidden_size)
};
constexpr Family kFamilies[] = {
    {.architecture = "LlamaForCausalLM"},
    {.architecture = "MistralForCausalLM", .window = WindowRule::kEveryLayer, .sliding_window = 4096},
    {.architecture = "Qwen2ForCausalLM", .window = WindowRule::kOptIn, .sliding_window = 4096, .qkv_bias = true},
    {.architecture = "Qwen3ForCausalLM", .head_dim = 128, .window = WindowRule::kOptIn, .sliding_window = 4096, .qk_norm = true},
    {.architecture = "GemmaForCausalLM",
     .head_dim = 256,
     .tie_word_embeddings = true,
     .activation = MlpActivation::kGeluTanh,
     .reads_hidden_activation = true,
     .gemma_scaling = true},
    {.architecture = "Phi3ForCausalLM", .rms_norm_eps = 1e-5, .window = WindowRule::kEveryLayer, .fused_projections = true},
};

const Family* FindFamily(const std::string& architecture) {
  for (const Family& f : kFamilies) {
    if (architecture == f.architecture) return &f;
  }
  return nullptr;
}

absl::StatusOr<MlpActivation> ReadActivation(const ConfigReader& reader, const Family& family) {
  const char* key = family.reads_hidden_activation && reader.Has("hidden_activation") ? "hidden_activation" : "hidden_act";
  ASSIGN_OR_RETURN(const std::optional<std::string> name, reader.String(key));
  if (!name.has_value()) return family.activation;
  if (*name == "silu" || *name == "swish") return MlpActivation::kSilu;
  if (*name == "gelu") return MlpActivation::kGelu;
  if (*name == "gelu_pytorch_tanh" || *name == "gelu_new") return MlpActivation::kGeluTanh;
  return reader.Error(absl::StrCat("unsupported ", key, " '", *name, "' (supported: silu, gelu, gelu_pytorch_tanh, gelu_new)"));
}

// rope_scaling as modeling_rope_utils.py resolves it: the type from rope_type, else type.
absl::StatusOr<RopeScaling> ReadRopeScaling(const ConfigReader& config_reader, const ModelConfig& config) {
  RopeScaling scaling;
  const auto it = config_reader.root().find("rope_scaling");
  if (it == config_reader.root().end() || it->is_null()) return scaling;
  if (!it->is_object()) return config_reader.Error("field 'rope_scaling' must be an object");
  const ConfigReader reader(*it, config_reader.source(), "rope_scaling.");
  std::optional<std::string> type;
  ASSIGN_OR_RETURN(type, reader.String(reader.Has("rope_type") ? "rope_type" : "type"));
  if (!type.has_value()) return reader.Error("field 'rope_scaling' names no 'rope_type' (or 'type')");
  if (*type == "default") return scaling;
  if (*type == "linear" || *type == "dynamic") {
    scaling.type = *type == "linear" ? RopeScaling::Type::kLinear : RopeScaling::Type::kDynamic;
    ASSIGN_OR_RETURN(scaling.factor, reader.PositiveNumber("factor"));
  } else if (*type == "llama3") {
    scaling.type = RopeScaling::Type::kLlama3;
    ASSIGN_OR_RETURN(scaling.factor, reader.PositiveNumber("factor"));
    ASSIGN_OR_RETURN(scaling.low_freq_factor, reader.PositiveNumber("low_freq_factor"));
    ASSIGN_OR_RETURN(scaling.high_freq_factor, reader.PositiveNumber("high_freq_factor"));
    ASSIGN_OR_RETURN(scaling.original_max_positions, reader.PositiveInt("original_max_position_embeddings", -1));
    if (!(scaling.high_freq_factor > scaling.low_freq_factor)) {
      return reader.Error("field 'rope_scaling.high_freq_factor' must exceed 'rope_scaling.low_freq_factor'");
    }
  } else if (*type == "yarn") {
    scaling.type = RopeScaling::Type::kYarn;
    ASSIGN_OR_RETURN(scaling.factor, reader.PositiveNumber("factor"));
    ASSIGN_OR_RETURN(scaling.original_max_positions, reader.PositiveInt("original_max_position_embeddings", config.max_position_embeddings));
    ASSIGN_OR_RETURN(scaling.beta_fast, reader.PositiveNumber("beta_fast", 32.0));
    ASSIGN_OR_RETURN(scaling.beta_slow, reader.PositiveNumber("beta_slow", 1.0));
    ASSIGN_OR_RETURN(scaling.truncate, reader.Bool("truncate", true));
    // 0.1 * mscale * ln(factor) + 1 (1 for factor <= 1), as _compute_yarn_parameters.
    const auto mscale = [&](double m) { return scaling.factor <= 1 ? 1.0 : 0.1 * m * std::log(scaling.factor) + 1.0; };
    if (reader.Has("attention_factor")) {
      ASSIGN_OR_RETURN(scaling.attention_factor, reader.PositiveNumber("attention_factor"));
    } else if (reader.Has("mscale") && reader.Has("mscale_all_dim")) {
      double m = 0;
      double all = 0;
      ASSIGN_OR_RETURN(m, reader.PositiveNumber("mscale"));
      ASSIGN_OR_RETURN(all, reader.PositiveNumber("mscale_all_dim"));
      scaling.attention_factor = mscale(m) / mscale(all);
    } else {
      scaling.attention_factor = mscale(1.0);
    }
  } else {
    return reader.Error(absl::StrCat("rope_scaling type '", *type, "' is not supported (supported: linear, dynamic, llama3, yarn)"));
  }
  return scaling;
}

// What the family's decoder layer does beyond Llama's, from its config fields as its
// Hugging Face configuration class reads them.
absl::Status ReadFamily(const ConfigReader& reader, const Family& family, ModelConfig& c) {
  if (family.qkv_bias) {
    c.qkv_bias = true;
  } else {
    ASSIGN_OR_RETURN(c.qkv_bias, reader.Bool("attention_bias", false));
    c.o_bias = c.qkv_bias;
  }
  bool mlp_bias = false;
  ASSIGN_OR_RETURN(mlp_bias, reader.Bool("mlp_bias", false));
  if (mlp_bias) return reader.Error("field 'mlp_bias' = true is not supported");
  c.qk_norm = family.qk_norm;
  c.fused_projections = family.fused_projections;
  if (family.gemma_scaling) {
    c.norm_weight_offset = 1;
    c.embedding_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  }
  ASSIGN_OR_RETURN(c.mlp_activation, ReadActivation(reader, family));

  bool window = family.window == WindowRule::kEveryLayer;
  if (family.window == WindowRule::kOptIn) {
    ASSIGN_OR_RETURN(window, reader.Bool("use_sliding_window", false));
    if (window) {
      ASSIGN_OR_RETURN(c.sliding_window_first_layer, reader.NonNegativeInt("max_window_layers", 28));  // the classes' default
    }
  }
  // An absent sliding_window takes the family's default; null is none.
  const auto field = reader.root().find("sliding_window");
  const bool null_window = field != reader.root().end() && field->is_null();
  if (window && !null_window && (reader.Has("sliding_window") || family.sliding_window > 0)) {
    ASSIGN_OR_RETURN(c.sliding_window, reader.PositiveInt("sliding_window", family.sliding_window));
  }

  double partial_rotary = 1;
  ASSIGN_OR_RETURN(partial_rotary, reader.PositiveNumber("partial_rotary_factor", 1.0));
  if (partial_rotary > 1) return reader.Error(absl::StrCat("field 'partial_rotary_factor' = ", partial_rotary, " exceeds 1"));
  c.rotary_dim = static_cast<int>(c.head_dim * partial_rotary);
  if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0) {
    return reader.Error(absl::StrCat("head_dim x partial_rotary_factor = ", c.rotary_dim, " rotary dims: must be even and at least 2"));
  }
  ASSIGN_OR_RETURN(c.rope_scaling, ReadRopeScaling(reader, c));
  return absl::OkStatus();
}

// Adds the file's eos_token_id (an id or a list) to config.eos_token_ids, and its
// bos_token_id where the config has none yet: config.json's, then generation_config.json's.
absl::Status MergeSpecialTokenIds(const ConfigReader& reader, ModelConfig& config) {
  std::vector<int> ids;
  ASSIGN_OR_RETURN(ids, reader.TokenIds("eos_token_id"));
  for (const int id : ids) {
    if (id >= config.vocab_size) return reader.Error(absl::StrCat("eos_token_id ", id, " is outside the vocabulary"));
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) == config.eos_token_ids.end()) config.eos_token_ids.push_back(id);
  }
  ASSIGN_OR_RETURN(ids, reader.TokenIds("bos_token_id"));
  if (ids.size() > 1) return reader.Error("bos_token_id must be a single id");
  if (!ids.empty() && ids[0] >= config.vocab_size) return reader.Error("bos_token_id is outside the vocabulary");
  if (!ids.empty() && config.bos_token_id < 0) config.bos_token_id = ids[0];
  return absl::OkStatus();
}

}  // namespace

absl::Status MergeGenerationConfig(std::string_view json_text, const std::string& source, ModelConfig& config) {
  const json root = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  return MergeSpecialTokenIds(ConfigReader(root, source), config);
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": top level is not a JSON object"));
  const ConfigReader reader(root, source);

  ModelConfig config;
  const auto arch = root.find("architectures");
  if (arch == root.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
    return reader.Error("missing 'architectures' list");
  }
  config.architecture = (*arch)[0].get<std::string>();
  const Family* family = FindFamily(config.architecture);
  if (family == nullptr) {
    return reader.Error(absl::StrCat("unsupported architecture '", config.architecture, "' (supported: ",
                                     absl::StrJoin(kFamilies, ", ", [](std::string* out, const Family& f) { out->append(f.architecture); }),
                                     ")"));
  }

  ASSIGN_OR_RETURN(config.hidden_size, reader.PositiveInt("hidden_size"));
  ASSIGN_OR_RETURN(config.intermediate_size, reader.PositiveInt("intermediate_size"));
  ASSIGN_OR_RETURN(config.num_layers, reader.PositiveInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(config.num_heads, reader.PositiveInt("num_attention_heads"));
  ASSIGN_OR_RETURN(config.num_kv_heads, reader.PositiveInt("num_key_value_heads", config.num_heads));
  if (config.hidden_size % config.num_heads != 0 && family->head_dim == 0 && root.find("head_dim") == root.end()) {
    return reader.Error("hidden_size is not a multiple of num_attention_heads and head_dim is not given");
  }
  ASSIGN_OR_RETURN(config.head_dim, reader.PositiveInt("head_dim", family->head_dim > 0 ? family->head_dim : config.hidden_size / config.num_heads));
  ASSIGN_OR_RETURN(config.vocab_size, reader.PositiveInt("vocab_size"));
  ASSIGN_OR_RETURN(config.max_position_embeddings, reader.PositiveInt("max_position_embeddings", 2048));
  double number = 0;
  ASSIGN_OR_RETURN(number, reader.PositiveNumber("rms_norm_eps", family->rms_norm_eps));
  config.rms_norm_eps = static_cast<float>(number);
  ASSIGN_OR_RETURN(number, reader.PositiveNumber("rope_theta", 10000.0));
  config.rope_theta = static_cast<float>(number);
  ASSIGN_OR_RETURN(config.tie_word_embeddings, reader.Bool("tie_word_embeddings", family->tie_word_embeddings));

  // Bounds on the products the engine sizes buffers with, so that no int arithmetic on
  // them overflows.
  constexpr int64_t kMaxWidth = 1 << 20;
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"num_attention_heads x head_dim", int64_t{config.num_heads} * config.head_dim},
                                    {"num_key_value_heads x head_dim", int64_t{config.num_kv_heads} * config.head_dim},
                                    {"hidden_size", config.hidden_size},
                                    {"intermediate_size", config.intermediate_size}}) {
    if (value > kMaxWidth) return reader.Error(absl::StrCat(name, " = ", value, " exceeds ", kMaxWidth));
  }
  if (config.num_layers > 4096) return reader.Error("num_hidden_layers exceeds 4096");
  if (config.num_heads % config.num_kv_heads != 0) {
    return reader.Error(absl::StrCat("num_attention_heads (", config.num_heads, ") is not a multiple of num_key_value_heads (", config.num_kv_heads, ")"));
  }
  if (config.head_dim % 2 != 0) return reader.Error("head_dim must be even for rotary embeddings");
  RETURN_IF_ERROR(ReadFamily(reader, *family, config));
  RETURN_IF_ERROR(MergeSpecialTokenIds(reader, config));

  if (const auto section = root.find(image::kConfigSection); section != root.end()) {
    if (!section->is_object()) return reader.Error("'anyprec' section is not an object");
    const ConfigReader image_reader(*section, source);
    int version = 0;
    ASSIGN_OR_RETURN(version, image_reader.PositiveInt("format_version"));
    if (version != image::kFormatVersion) {
      return reader.Error(absl::StrCat("anyprec image format version ", version, " is not supported (this build reads ",
                                       image::kFormatVersion, ")"));
    }
    ModelConfig::Quantization q;
    ASSIGN_OR_RETURN(q.seed_bits, image_reader.PositiveInt("seed_bits"));
    ASSIGN_OR_RETURN(q.max_bits, image_reader.PositiveInt("max_bits"));
    if (q.max_bits > 8 || q.seed_bits > q.max_bits) return reader.Error("anyprec bit-widths must satisfy 1 <= seed_bits <= max_bits <= 8");
    const auto mode = section->find("mode");
    const auto file = section->find("weights_file");
    if (mode == section->end() || !mode->is_string() || file == section->end() || !file->is_string()) {
      return reader.Error("anyprec section needs string fields 'mode' and 'weights_file'");
    }
    q.mode = mode->get<std::string>();
    if (q.mode != "anyprec" && q.mode != "independent" && q.mode != "rtn") {
      return reader.Error(absl::StrCat("anyprec mode '", q.mode, "' is not one of anyprec, independent, rtn"));
    }
    if (q.mode != "anyprec" && q.seed_bits != q.max_bits) return reader.Error("independent and rtn images hold one width (seed_bits = max_bits)");
    q.weights_file = file->get<std::string>();
    if (q.weights_file.empty() || q.weights_file.find('/') != std::string::npos || q.weights_file == "..") {
      return reader.Error("anyprec weights_file must be a plain file name in the image folder");
    }
    if (const auto source = section->find("source_model"); source != section->end() && source->is_string()) {
      q.source_model = source->get<std::string>();
    }
    config.quantization = std::move(q);
  }
  return config;
}

}  // namespace anyprec
