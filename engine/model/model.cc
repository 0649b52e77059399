#include "engine/model/model.h"

#include <cstring>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/model/float_convert.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"

namespace anyprec {

namespace fs = std::filesystem;

struct Model::Storage {
  std::vector<SafetensorsFile> files;
  std::vector<std::vector<float>> widened;
};

namespace {

struct Located {
  const TensorView* view;
  const std::string* file;
};

// Every tensor name of the model, across shards, with safetensors metadata aliases
// (e.g. {"model.embed_tokens.weight": "lm_head.weight"}) resolved.
class TensorIndex {
 public:
  void AddFile(const SafetensorsFile& file) {
    for (const auto& [name, view] : file.tensors()) tensors_[name] = {&view, &file.source()};
    for (const auto& [alias, target] : file.metadata()) aliases_[alias] = target;
  }

  const Located* Find(const std::string& name) const {
    if (auto it = tensors_.find(name); it != tensors_.end()) return &it->second;
    if (auto alias = aliases_.find(name); alias != aliases_.end()) {
      if (auto it = tensors_.find(alias->second); it != tensors_.end()) return &it->second;
    }
    return nullptr;
  }

 private:
  std::map<std::string, Located> tensors_;
  std::map<std::string, std::string> aliases_;
};

absl::StatusOr<std::vector<std::string>> ShardNames(const fs::path& index_path) {
  ASSIGN_OR_RETURN(const std::string text, ReadTextFile(index_path.string()));
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": not valid JSON: ", e.what()));
  }
  const auto map = index.is_object() ? index.find("weight_map") : index.end();
  if (!index.is_object() || map == index.end() || !map->is_object() || map->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": missing or empty 'weight_map' object"));
  }
  std::vector<std::string> shards;
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string()) return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": shard of '", tensor, "' is not a string"));
    const std::string name = file.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": shard name '", name, "' must be a plain file name in the model folder"));
    }
    if (std::find(shards.begin(), shards.end(), name) == shards.end()) shards.push_back(name);
  }
  return shards;
}

class WeightReader {
 public:
  WeightReader(const TensorIndex& index, std::vector<std::vector<float>>& widened, std::string dir)
      : index_(index), widened_(widened), dir_(std::move(dir)) {}

  absl::StatusOr<std::span<const float>> Get(const std::string& name, std::vector<int64_t> shape) {
    const Located* found = index_.Find(name);
    if (found == nullptr) return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor '", name, "'"));
    const TensorView& view = *found->view;
    if (view.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(*found->file, ": tensor '", name, "' has shape [",
                                                     absl::StrJoin(view.shape, ", "), "], the config needs [",
                                                     absl::StrJoin(shape, ", "), "]"));
    }
    const size_t n = static_cast<size_t>(view.NumElements());
    if (view.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(view.data.data()) % alignof(float) == 0) {
      return std::span<const float>(reinterpret_cast<const float*>(view.data.data()), n);
    }
    std::vector<float>& out = widened_.emplace_back(n);
    WidenToF32(view.dtype, view.data, out);
    return std::span<const float>(out);
  }

  absl::StatusOr<Matrix> GetMatrix(const std::string& name, int rows, int cols) {
    ASSIGN_OR_RETURN(std::span<const float> values, Get(name, {rows, cols}));
    return Matrix{rows, cols, values};
  }

  bool Has(const std::string& name) const { return index_.Find(name) != nullptr; }

 private:
  const TensorIndex& index_;
  std::vector<std::vector<float>>& widened_;
  std::string dir_;
};

}  // namespace

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

std::string Model::name() const {
  fs::path p(dir_);
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

absl::StatusOr<Model> Model::Load(const std::string& dir) {
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a model folder"));

  Model model;
  model.dir_ = dir;
  model.storage_ = std::make_unique<Storage>();
  const std::string config_path = (root / "config.json").string();
  ASSIGN_OR_RETURN(const std::string config_text, ReadTextFile(config_path));
  ASSIGN_OR_RETURN(model.config_, ParseModelConfig(config_text, config_path));

  std::vector<std::string> shard_names;
  if (const fs::path index_path = root / "model.safetensors.index.json"; fs::exists(index_path, ec)) {
    ASSIGN_OR_RETURN(shard_names, ShardNames(index_path));
  } else {
    shard_names = {"model.safetensors"};
  }
  Storage& storage = *model.storage_;
  storage.files.reserve(shard_names.size());
  TensorIndex index;
  for (const std::string& shard : shard_names) {
    ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open((root / shard).string()));
    index.AddFile(storage.files.emplace_back(std::move(file)));
  }

  const ModelConfig& c = model.config_;
  WeightReader reader(index, storage.widened, dir);
  ModelWeights& w = model.weights_;
  const bool has_embedding = reader.Has("model.embed_tokens.weight");
  const bool has_head = reader.Has("lm_head.weight");
  if (!has_embedding && !(has_head && c.tie_word_embeddings)) {
    return absl::NotFoundError(absl::StrCat(dir, ": missing tensor 'model.embed_tokens.weight'"));
  }
  ASSIGN_OR_RETURN(w.embedding, reader.GetMatrix(has_embedding ? "model.embed_tokens.weight" : "lm_head.weight", c.vocab_size, c.hidden_size));
  if (has_head) {
    ASSIGN_OR_RETURN(w.head, reader.GetMatrix("lm_head.weight", c.vocab_size, c.hidden_size));
  } else if (c.tie_word_embeddings) {
    w.head = w.embedding;
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)"));
  }
  ASSIGN_OR_RETURN(w.final_norm, reader.Get("model.norm.weight", {c.hidden_size}));

  w.layers.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    LayerWeights& l = w.layers[i];
    ASSIGN_OR_RETURN(l.attn_norm, reader.Get(p + "input_layernorm.weight", {c.hidden_size}));
    ASSIGN_OR_RETURN(l.ffn_norm, reader.Get(p + "post_attention_layernorm.weight", {c.hidden_size}));
    ASSIGN_OR_RETURN(l.wq, reader.GetMatrix(p + "self_attn.q_proj.weight", c.q_dim(), c.hidden_size));
    ASSIGN_OR_RETURN(l.wk, reader.GetMatrix(p + "self_attn.k_proj.weight", c.kv_dim(), c.hidden_size));
    ASSIGN_OR_RETURN(l.wv, reader.GetMatrix(p + "self_attn.v_proj.weight", c.kv_dim(), c.hidden_size));
    ASSIGN_OR_RETURN(l.wo, reader.GetMatrix(p + "self_attn.o_proj.weight", c.hidden_size, c.q_dim()));
    if (c.attention_bias) {
      ASSIGN_OR_RETURN(l.bq, reader.Get(p + "self_attn.q_proj.bias", {c.q_dim()}));
      ASSIGN_OR_RETURN(l.bk, reader.Get(p + "self_attn.k_proj.bias", {c.kv_dim()}));
      ASSIGN_OR_RETURN(l.bv, reader.Get(p + "self_attn.v_proj.bias", {c.kv_dim()}));
    }
    ASSIGN_OR_RETURN(l.w_gate, reader.GetMatrix(p + "mlp.gate_proj.weight", c.intermediate_size, c.hidden_size));
    ASSIGN_OR_RETURN(l.w_up, reader.GetMatrix(p + "mlp.up_proj.weight", c.intermediate_size, c.hidden_size));
    ASSIGN_OR_RETURN(l.w_down, reader.GetMatrix(p + "mlp.down_proj.weight", c.hidden_size, c.intermediate_size));
  }
  return model;
}

}  // namespace anyprec
