#include "engine/model/model_config.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/model/image_format.h"
#include "nlohmann/json.hpp"

namespace anyprec {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", what));
  }

  // Reads a positive integer field; `fallback` < 0 makes the field required.
  absl::StatusOr<int> PositiveInt(const char* key, int fallback = -1) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) {
      if (fallback < 0) return Error(absl::StrCat("missing required field '", key, "'"));
      return fallback;
    }
    if (!it->is_number_integer()) return Error(absl::StrCat("field '", key, "' must be an integer"));
    const int64_t v = it->get<int64_t>();
    if (v <= 0 || v > (1 << 24)) return Error(absl::StrCat("field '", key, "' = ", v, " is out of range"));
    return static_cast<int>(v);
  }

  absl::StatusOr<float> PositiveFloat(const char* key, float fallback) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return fallback;
    if (!it->is_number()) return Error(absl::StrCat("field '", key, "' must be a number"));
    const double v = it->get<double>();
    if (!(v > 0) || v > std::numeric_limits<float>::max()) return Error(absl::StrCat("field '", key, "' = ", v, " must be positive"));
    return static_cast<float>(v);
  }

  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return Error(absl::StrCat("field '", key, "' must be true or false"));
    return it->get<bool>();
  }

  // Token ids may be absent, an integer, or (for eos) a list of integers.
  absl::StatusOr<std::vector<int>> TokenIds(const char* key) const {
    std::vector<int> ids;
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return ids;
    const auto add = [&](const json& v) -> absl::Status {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int>::max()) {
        return Error(absl::StrCat("field '", key, "' must hold non-negative integer token ids"));
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
  const json& root_;
  const std::string& source_;
};

}  // namespace

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
  if (config.architecture != "LlamaForCausalLM" && config.architecture != "MistralForCausalLM" &&
      config.architecture != "Qwen2ForCausalLM") {
    return reader.Error(absl::StrCat("unsupported architecture '", config.architecture,
                                     "' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"));
  }

  ASSIGN_OR_RETURN(config.hidden_size, reader.PositiveInt("hidden_size"));
  ASSIGN_OR_RETURN(config.intermediate_size, reader.PositiveInt("intermediate_size"));
  ASSIGN_OR_RETURN(config.num_layers, reader.PositiveInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(config.num_heads, reader.PositiveInt("num_attention_heads"));
  ASSIGN_OR_RETURN(config.num_kv_heads, reader.PositiveInt("num_key_value_heads", config.num_heads));
  if (config.hidden_size % config.num_heads != 0 && root.find("head_dim") == root.end()) {
    return reader.Error("hidden_size is not a multiple of num_attention_heads and head_dim is not given");
  }
  ASSIGN_OR_RETURN(config.head_dim, reader.PositiveInt("head_dim", config.hidden_size / config.num_heads));
  ASSIGN_OR_RETURN(config.vocab_size, reader.PositiveInt("vocab_size"));
  ASSIGN_OR_RETURN(config.max_position_embeddings, reader.PositiveInt("max_position_embeddings", 2048));
  ASSIGN_OR_RETURN(config.rms_norm_eps, reader.PositiveFloat("rms_norm_eps", 1e-6f));
  ASSIGN_OR_RETURN(config.rope_theta, reader.PositiveFloat("rope_theta", 10000.0f));
  ASSIGN_OR_RETURN(config.tie_word_embeddings, reader.Bool("tie_word_embeddings", false));

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
  if (const auto act = root.find("hidden_act"); act != root.end() && !(act->is_string() && act->get<std::string>() == "silu")) {
    return reader.Error("unsupported hidden_act (only silu)");
  }
  // Without sliding-window attention, the engine is exact only within the window: cap the context there.
  const auto use_window = root.find("use_sliding_window");
  const bool window_applies = config.architecture == "MistralForCausalLM" ||
                              (use_window != root.end() && use_window->is_boolean() && use_window->get<bool>());
  if (const auto window = root.find("sliding_window"); window_applies && window != root.end() && !window->is_null()) {
    int sliding_window = 0;
    ASSIGN_OR_RETURN(sliding_window, reader.PositiveInt("sliding_window"));
    config.max_position_embeddings = std::min(config.max_position_embeddings, sliding_window);
  }
  if (const auto scaling = root.find("rope_scaling"); scaling != root.end() && !scaling->is_null()) {
    return reader.Error("rope_scaling is not supported yet");
  }

  std::vector<int> bos;
  ASSIGN_OR_RETURN(bos, reader.TokenIds("bos_token_id"));
  if (bos.size() > 1) return reader.Error("bos_token_id must be a single id");
  if (!bos.empty()) config.bos_token_id = bos[0];
  ASSIGN_OR_RETURN(config.eos_token_ids, reader.TokenIds("eos_token_id"));
  for (int id : config.eos_token_ids) {
    if (id >= config.vocab_size) return reader.Error(absl::StrCat("eos_token_id ", id, " is outside the vocabulary"));
  }
  if (config.bos_token_id >= config.vocab_size) return reader.Error("bos_token_id is outside the vocabulary");

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
