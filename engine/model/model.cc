#include "engine/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/model/arch.h"
#include "engine/model/bitplanes.h"
#include "engine/model/float_convert.h"
#include "engine/model/image_format.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"

namespace anyprec {

namespace fs = std::filesystem;

namespace {

struct Located {
  const TensorView* view;
  const SafetensorsFile* file;
};

// Every tensor name of the model, across shards, with safetensors metadata aliases
// (e.g. {"model.embed_tokens.weight": "lm_head.weight"}) resolved.
class TensorIndex {
 public:
  void AddFile(const SafetensorsFile& file) {
    for (const auto& [name, view] : file.tensors()) tensors_[name] = {&view, &file};
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

// What a set of weights (the model's dense tensors, or one decoder layer) holds on to: the
// tensors widened to fp32, and the mapped ones it views in place.
struct TensorHold {
  std::vector<std::vector<float>> widened;
  std::vector<Located> mapped;

  // Hands the mapped pages back and frees the widened copies.
  void Release() {
    for (const Located& t : mapped) t.file->DropPages(*t.view);
    *this = {};
  }
};

class WeightReader {
 public:
  WeightReader(const TensorIndex& index, TensorHold& hold, std::string dir) : index_(index), hold_(hold), dir_(std::move(dir)) {}

  absl::StatusOr<std::span<const float>> Get(const std::string& name, std::vector<int64_t> shape) {
    const Located* found = index_.Find(name);
    if (found == nullptr) return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor '", name, "'"));
    const TensorView& view = *found->view;
    if (view.dtype == DType::kU8 || view.dtype == DType::kI8) {
      return absl::InvalidArgumentError(absl::StrCat(found->file->source(), ": tensor '", name, "' is ", DTypeName(view.dtype), ", not floating point"));
    }
    if (view.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(found->file->source(), ": tensor '", name, "' has shape [",
                                                     absl::StrJoin(view.shape, ", "), "], the config needs [",
                                                     absl::StrJoin(shape, ", "), "]"));
    }
    const size_t n = static_cast<size_t>(view.NumElements());
    if (view.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(view.data.data()) % alignof(float) == 0) {
      hold_.mapped.push_back(*found);
      return std::span<const float>(reinterpret_cast<const float*>(view.data.data()), n);
    }
    // Widened once, however many parts of it are asked for (Phi-3's fused projections); the
    // source's pages are not needed again.
    if (const auto it = widened_by_name_.find(name); it != widened_by_name_.end()) return it->second;
    std::vector<float>& out = hold_.widened.emplace_back(n);
    WidenToF32(view.dtype, view.data, out);
    found->file->DropPages(view);
    return widened_by_name_[name] = std::span<const float>(out);
  }

  // fp32 (widened if need be), or int8 with its per-row scales in NAME_scale (FORMAT.md).
  absl::StatusOr<Matrix> GetMatrix(const std::string& name, int rows, int cols) {
    const Located* found = index_.Find(name);
    if (found == nullptr || found->view->dtype != DType::kI8) {
      ASSIGN_OR_RETURN(std::span<const float> values, Get(name, {rows, cols}));
      return Matrix{rows, cols, values, {}, {}};
    }
    const TensorView& view = *found->view;
    if (view.shape != std::vector<int64_t>{rows, cols}) {
      return absl::InvalidArgumentError(absl::StrCat(found->file->source(), ": tensor '", name, "' has shape [", absl::StrJoin(view.shape, ", "),
                                                     "], the config needs [", rows, ", ", cols, "]"));
    }
    const std::string scale_name = name + "_scale";
    ASSIGN_OR_RETURN(std::span<const float> scales, Get(scale_name, {rows}));
    if (!std::all_of(scales.begin(), scales.end(), [](float v) { return std::isfinite(v) && v > 0; })) {
      return absl::InvalidArgumentError(absl::StrCat(dir_, ": tensor '", scale_name, "' holds a scale that is not finite and positive"));
    }
    const auto q = std::span<const int8_t>(reinterpret_cast<const int8_t*>(view.data.data()), view.data.size());
    hold_.mapped.push_back(*found);
    return Matrix{rows, cols, {}, q, scales};
  }

  bool Has(const std::string& name) const { return index_.Find(name) != nullptr; }
  TensorHold& hold() { return hold_; }

 private:
  const TensorIndex& index_;
  TensorHold& hold_;
  std::map<std::string, std::span<const float>> widened_by_name_;
  std::string dir_;
};

}  // namespace

struct Model::Storage {
  std::vector<SafetensorsFile> files;
  TensorIndex index;  // into `files`
  TensorHold dense;   // the embedding, the head and the final norm
  std::vector<TensorHold> layers;
  std::vector<bool> layer_loaded;
  // SetDenseInt8: the fp32 head and embedding as loaded, and their int8 rows once made.
  struct DenseForms {
    Matrix embedding, head;
    std::vector<int8_t> embedding_q, head_q;
    std::vector<float> embedding_scales, head_scales;
  };
  std::optional<DenseForms> dense_forms;
};

void Matrix::CopyRow(int r, std::span<float> out) const {
  const size_t begin = static_cast<size_t>(r) * cols;
  if (!is_int8()) {
    std::copy(values.begin() + begin, values.begin() + begin + cols, out.begin());
    return;
  }
  for (int c = 0; c < cols; ++c) out[c] = scales[r] * q[begin + c];
}

std::vector<float> Matrix::ToF32() const {
  std::vector<float> out(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) CopyRow(r, std::span<float>(out).subspan(static_cast<size_t>(r) * cols, cols));
  return out;
}

namespace {

// Row r of `m` as int8 with one scale: the row's largest magnitude / 127 (1 where that is zero
// or subnormal, which any scale reproduces).
absl::Status QuantizeRows(const Matrix& m, const std::string& name, std::vector<int8_t>& q, std::vector<float>& scales) {
  q.resize(static_cast<size_t>(m.rows) * m.cols);
  scales.resize(m.rows);
  for (int r = 0; r < m.rows; ++r) {
    const std::span<const float> row = m.Row(r);
    float max_abs = 0;
    for (const float v : row) {
      if (!std::isfinite(v)) return absl::InvalidArgumentError(absl::StrCat(name, " holds a non-finite value in row ", r));
      max_abs = std::max(max_abs, std::abs(v));
    }
    scales[r] = max_abs / 127.0f > 0 ? max_abs / 127.0f : 1.0f;
    for (int c = 0; c < m.cols; ++c) q[static_cast<size_t>(r) * m.cols + c] = static_cast<int8_t>(std::lround(row[c] / scales[r]));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Model::SetDenseInt8(bool int8) {
  ModelWeights& w = weights_;
  if (!storage_->dense_forms) {
    if (w.embedding.is_int8() || w.head.is_int8()) {
      if (int8 && w.embedding.is_int8() && w.head.is_int8()) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(dir_, ": the head or the embedding is stored as int8; there is no fp32 form to switch from"));
    }
    if (!int8) return absl::OkStatus();
    Storage::DenseForms& d = storage_->dense_forms.emplace();
    d.embedding = w.embedding;
    d.head = w.head;
    RETURN_IF_ERROR(QuantizeRows(d.embedding, dir_ + ": the embedding", d.embedding_q, d.embedding_scales));
    if (!d.head.SameAs(d.embedding)) RETURN_IF_ERROR(QuantizeRows(d.head, dir_ + ": the head", d.head_q, d.head_scales));
  }
  const Storage::DenseForms& d = *storage_->dense_forms;
  const bool tied = d.head.SameAs(d.embedding);
  w.embedding = int8 ? Matrix{d.embedding.rows, d.embedding.cols, {}, d.embedding_q, d.embedding_scales} : d.embedding;
  w.head = !int8 ? d.head : tied ? w.embedding : Matrix{d.head.rows, d.head.cols, {}, d.head_q, d.head_scales};
  return absl::OkStatus();
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

std::string Model::name() const {
  if (config_.quantization && !config_.quantization->source_model.empty()) return config_.quantization->source_model;
  fs::path p(dir_);
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

namespace {

absl::Status ChecksumError(const std::string& file, const std::string& tensor, const std::string& what) {
  return absl::DataLossError(absl::StrCat(file, ": tensor '", tensor, "' ", what, "; the image is damaged"));
}

absl::Status VerifyChecksums(const SafetensorsFile& file) {
  for (const auto& [name, view] : file.tensors()) {
    const auto it = file.metadata().find(image::ChecksumKey(name));
    if (it == file.metadata().end()) return ChecksumError(file.source(), name, "has no checksum");
    if (it->second != image::Checksum(view.data)) return ChecksumError(file.source(), name, "fails its checksum");
  }
  return absl::OkStatus();
}

// An image stores the gains the forward pass multiplies by; a checkpoint whose family adds an
// offset (Gemma's 1 + w) gets it added at load, once.
float NormOffset(const ModelConfig& c) { return c.quantization ? 0.0f : c.norm_weight_offset; }

absl::StatusOr<std::span<const float>> ReadNorm(WeightReader& reader, const std::string& name, int width, float offset) {
  ASSIGN_OR_RETURN(const std::span<const float> stored, reader.Get(name, {width}));
  if (offset == 0) return stored;
  std::vector<float>& gains = reader.hold().widened.emplace_back(stored.begin(), stored.end());
  for (float& g : gains) g += offset;
  return std::span<const float>(gains);
}

// Reads one quantized linear of an image: its canonical planes, mapped, and its LUTs widened
// to fp32, held by `reader`.
absl::StatusOr<QuantizedMatrix> LoadQuantizedLinear(const TensorIndex& index, WeightReader& reader, const ModelConfig::Quantization& q,
                                                    const std::string& dir, const std::string& prefix, int rows, int cols) {
  const std::string planes_name = image::PlanesTensor(prefix);
  const Located* planes = index.Find(planes_name);
  if (planes == nullptr) return absl::NotFoundError(absl::StrCat(dir, ": missing tensor '", planes_name, "'"));
  const std::vector<int64_t> planes_shape = {q.max_bits, rows, static_cast<int64_t>(RowBytes(cols))};
  if (planes->view->dtype != DType::kU8 || planes->view->shape != planes_shape) {
    return absl::InvalidArgumentError(absl::StrCat(planes->file->source(), ": tensor '", planes_name, "' must be U8 [",
                                                   absl::StrJoin(planes_shape, ", "), "]"));
  }
  QuantizedMatrix m{q.seed_bits, q.max_bits,
                    {reinterpret_cast<const uint8_t*>(planes->view->data.data()), planes->view->data.size()}, {}};
  reader.hold().mapped.push_back(*planes);
  for (int bits = q.seed_bits; bits <= q.max_bits; ++bits) {
    const std::string lut_name = image::LutTensor(prefix, bits);
    if (const Located* found = index.Find(lut_name); found != nullptr && found->view->dtype != DType::kF16) {
      return absl::InvalidArgumentError(absl::StrCat(found->file->source(), ": tensor '", lut_name, "' must be F16"));
    }
    ASSIGN_OR_RETURN(std::span<const float> lut, reader.Get(lut_name, {rows, int64_t{1} << bits}));
    if (!std::all_of(lut.begin(), lut.end(), [](float v) { return std::isfinite(v); })) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": tensor '", lut_name, "' holds a non-finite centroid"));
    }
    m.luts.push_back(lut.data());
  }
  return m;
}

}  // namespace

std::string Model::LogicalName(int bits) const { return bits == 0 ? name() : absl::StrCat(name(), "@", bits); }

uint64_t Model::BytesReadPerToken(int bits) const {
  const ModelWeights& w = weights_;
  uint64_t bytes = 0;
  for (const LayerWeights& layer : w.layers) {
    for (const Linear* linear : layer.linears()) {
      if (linear->is_quantized()) {
        bytes += static_cast<uint64_t>(bits) * linear->rows * RowBytes(linear->cols) + (static_cast<uint64_t>(linear->rows) << bits) * 2;
      } else {
        bytes += sizeof(float) * linear->dense.size();
      }
      bytes += sizeof(float) * linear->bias.size();
    }
    bytes += sizeof(float) * (layer.attn_norm.size() + layer.ffn_norm.size());
  }
  bytes += sizeof(float) * w.final_norm.size() + w.head.bytes();
  if (!w.head.SameAs(w.embedding)) bytes += w.embedding.bytes() / w.embedding.rows;
  return bytes;
}

absl::StatusOr<Model> Model::Load(const std::string& dir, const LoadOptions& options) {
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a model folder"));

  Model model;
  model.dir_ = dir;
  model.storage_ = std::make_unique<Storage>();
  const std::string config_path = (root / "config.json").string();
  ASSIGN_OR_RETURN(const std::string config_text, ReadTextFile(config_path));
  ASSIGN_OR_RETURN(model.config_, ParseModelConfig(config_text, config_path));
  if (const fs::path generation = root / "generation_config.json"; fs::exists(generation, ec)) {
    ASSIGN_OR_RETURN(const std::string generation_text, ReadTextFile(generation.string()));
    RETURN_IF_ERROR(MergeGenerationConfig(generation_text, generation.string(), model.config_));
  }
  const ModelConfig& c = model.config_;
  const bool is_image = c.quantization.has_value();

  std::vector<std::string> shard_names;
  if (is_image) {
    shard_names = {c.quantization->weights_file};
  } else if (const fs::path index_path = root / "model.safetensors.index.json"; fs::exists(index_path, ec)) {
    ASSIGN_OR_RETURN(shard_names, ShardNames(index_path));
  } else {
    shard_names = {"model.safetensors"};
  }
  Storage& storage = *model.storage_;
  storage.files.reserve(shard_names.size());  // the index points into them
  for (const std::string& shard : shard_names) {
    ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open((root / shard).string()));
    if (is_image) RETURN_IF_ERROR(VerifyChecksums(file));
    storage.index.AddFile(storage.files.emplace_back(std::move(file)));
  }

  WeightReader reader(storage.index, storage.dense, dir);
  ModelWeights& w = model.weights_;
  const bool has_embedding = reader.Has(std::string(arch::kEmbeddingTensor));
  const bool has_head = reader.Has(std::string(arch::kHeadTensor));
  if (!has_embedding && !(has_head && c.tie_word_embeddings)) {
    return absl::NotFoundError(absl::StrCat(dir, ": missing tensor 'model.embed_tokens.weight'"));
  }
  ASSIGN_OR_RETURN(w.embedding, reader.GetMatrix(std::string(has_embedding ? arch::kEmbeddingTensor : arch::kHeadTensor), c.vocab_size, c.hidden_size));
  // As in Hugging Face, tied embeddings make the head the embedding, whatever lm_head holds.
  if (c.tie_word_embeddings) {
    w.head = w.embedding;
  } else if (has_head) {
    ASSIGN_OR_RETURN(w.head, reader.GetMatrix(std::string(arch::kHeadTensor), c.vocab_size, c.hidden_size));
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)"));
  }
  ASSIGN_OR_RETURN(w.final_norm, ReadNorm(reader, std::string(arch::kFinalNormTensor), c.hidden_size, NormOffset(c)));

  w.layers.resize(c.num_layers);
  storage.layers.resize(c.num_layers);
  storage.layer_loaded.assign(c.num_layers, false);
  for (int i = 0; options.layers && i < c.num_layers; ++i) RETURN_IF_ERROR(model.LoadLayer(i));
  return model;
}

bool Model::layer_loaded(int layer) const { return storage_->layer_loaded[layer]; }

absl::Status Model::LoadLayer(int i) {
  const ModelConfig& c = config_;
  if (i < 0 || i >= c.num_layers) return absl::OutOfRangeError(absl::StrCat("layer ", i, " of a model with ", c.num_layers));
  Storage& storage = *storage_;
  if (storage.layer_loaded[i]) return absl::OkStatus();
  TensorHold& hold = storage.layers[i];
  WeightReader reader(storage.index, hold, dir_);
  LayerWeights l;
  ASSIGN_OR_RETURN(l.attn_norm, ReadNorm(reader, arch::LayerTensor(i, arch::kAttentionNorm) + ".weight", c.hidden_size, NormOffset(c)));
  ASSIGN_OR_RETURN(l.ffn_norm, ReadNorm(reader, arch::LayerTensor(i, arch::kMlpNorm) + ".weight", c.hidden_size, NormOffset(c)));
  if (c.qk_norm) {
    ASSIGN_OR_RETURN(l.q_norm, ReadNorm(reader, arch::LayerTensor(i, arch::kQueryNorm) + ".weight", c.head_dim, NormOffset(c)));
    ASSIGN_OR_RETURN(l.k_norm, ReadNorm(reader, arch::LayerTensor(i, arch::kKeyNorm) + ".weight", c.head_dim, NormOffset(c)));
  }
  const auto linears = l.linears();
  for (size_t j = 0; j < linears.size(); ++j) {
    Linear& linear = *linears[j];
    std::tie(linear.rows, linear.cols) = arch::Shape(c, static_cast<int>(j));
    const std::string prefix = arch::LayerTensor(i, arch::kLinears[j].name);
    if (c.quantization) {
      ASSIGN_OR_RETURN(linear.quantized, LoadQuantizedLinear(storage.index, reader, *c.quantization, dir_, prefix, linear.rows, linear.cols));
    } else if (c.fused_projections && !arch::kLinears[j].fused.empty()) {
      // Rows of a row-major [out, in] matrix are contiguous: each part views the fused one.
      const auto [before, fused_rows] = arch::FusedRows(c, static_cast<int>(j));
      ASSIGN_OR_RETURN(const std::span<const float> fused,
                       reader.Get(arch::LayerTensor(i, arch::kLinears[j].fused) + ".weight", {fused_rows, linear.cols}));
      linear.dense = fused.subspan(static_cast<size_t>(before) * linear.cols, static_cast<size_t>(linear.rows) * linear.cols);
    } else {
      ASSIGN_OR_RETURN(linear.dense, reader.Get(prefix + ".weight", {linear.rows, linear.cols}));
    }
    if (arch::HasBias(c, arch::kLinears[j].id)) {
      ASSIGN_OR_RETURN(linear.bias, reader.Get(prefix + ".bias", {linear.rows}));
    }
  }
  weights_.layers[i] = l;
  storage.layer_loaded[i] = true;
  return absl::OkStatus();
}

void Model::ReleaseLayer(int layer) {
  if (layer < 0 || layer >= config_.num_layers || !storage_->layer_loaded[layer]) return;
  weights_.layers[layer] = {};
  storage_->layers[layer].Release();
  storage_->layer_loaded[layer] = false;
}

}  // namespace anyprec
