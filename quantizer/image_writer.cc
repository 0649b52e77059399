#include "quantizer/image_writer.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/model/arch.h"
#include "engine/model/bitplanes.h"
#include "engine/model/float_convert.h"
#include "engine/model/image_format.h"

namespace anyprec::quant {
namespace {

namespace fs = std::filesystem;

absl::Status WriteText(const fs::path& path, const std::string& text) {
  const fs::path temporary = path.string() + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return absl::DataLossError(absl::StrCat(temporary.string(), ": write failed"));
  }
  std::error_code ec;
  fs::rename(temporary, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat(path.string(), ": ", ec.message()));
  return absl::OkStatus();
}

// Every tensor of the image in the order written: each layer's, then the dense ones.
std::vector<SafetensorsWriter::Planned> PlanTensors(const Model& model, int seed_bits, int max_bits) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  std::vector<SafetensorsWriter::Planned> plan;
  const auto f32 = [&](std::string name, std::vector<int64_t> shape) { plan.push_back({std::move(name), DType::kF32, std::move(shape)}); };
  const auto matrix = [&](const std::string& name, const Matrix& m) {
    if (!m.is_int8()) return f32(name, {m.rows, m.cols});
    plan.push_back({name, DType::kI8, {m.rows, m.cols}});
    f32(name + "_scale", {m.rows});
  };
  for (int layer = 0; layer < c.num_layers; ++layer) {
    f32(arch::LayerTensor(layer, arch::kAttentionNorm) + ".weight", {c.hidden_size});
    f32(arch::LayerTensor(layer, arch::kMlpNorm) + ".weight", {c.hidden_size});
    if (c.qk_norm) {
      f32(arch::LayerTensor(layer, arch::kQueryNorm) + ".weight", {c.head_dim});
      f32(arch::LayerTensor(layer, arch::kKeyNorm) + ".weight", {c.head_dim});
    }
    for (int j = 0; j < arch::kLinearsPerLayer; ++j) {
      const auto [rows, cols] = arch::Shape(c, j);
      const std::string prefix = arch::LayerTensor(layer, arch::kLinears[j].name);
      plan.push_back({image::PlanesTensor(prefix), DType::kU8, {max_bits, rows, static_cast<int64_t>(RowBytes(cols))}});
      for (int bits = seed_bits; bits <= max_bits; ++bits) plan.push_back({image::LutTensor(prefix, bits), DType::kF16, {rows, int64_t{1} << bits}});
      if (arch::HasBias(c, arch::kLinears[j].id)) f32(prefix + ".bias", {rows});
    }
  }
  f32(std::string(arch::kFinalNormTensor), {c.hidden_size});
  matrix(std::string(arch::kEmbeddingTensor), w.embedding);
  if (!c.tie_word_embeddings) matrix(std::string(arch::kHeadTensor), w.head);
  return plan;
}

}  // namespace

absl::StatusOr<ImageWriter> ImageWriter::Create(const std::string& out_dir, const Model& source, int seed_bits, int max_bits) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out_dir, ": cannot create: ", ec.message()));
  // An earlier image's config.json would make a half-rewritten folder look loadable.
  fs::remove(fs::path(out_dir) / "config.json", ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out_dir, "/config.json: cannot remove: ", ec.message()));
  std::vector<SafetensorsWriter::Planned> plan = PlanTensors(source, seed_bits, max_bits);
  // Each checksum's room in the header, filled in as the tensors are written.
  std::map<std::string, std::string> placeholders;
  for (const SafetensorsWriter::Planned& t : plan) placeholders[image::ChecksumKey(t.name)] = std::string(16, '0');
  ASSIGN_OR_RETURN(SafetensorsWriter file,
                   SafetensorsWriter::Create((fs::path(out_dir) / image::kWeightsFile).string(), plan, placeholders));
  return ImageWriter(out_dir, source, seed_bits, max_bits, std::move(plan), std::move(file));
}

absl::Status ImageWriter::Put(const std::string& name, std::span<const std::byte> bytes) {
  if (next_ >= plan_.size() || plan_[next_].name != name) {
    return absl::InternalError(absl::StrCat("image writer: '", name, "' written out of order"));
  }
  const uint64_t planned = plan_[next_++].bytes();
  if (bytes.size() != planned) {
    return absl::InternalError(absl::StrCat("image writer: '", name, "' holds ", bytes.size(), " bytes, planned ", planned));
  }
  checksums_[image::ChecksumKey(name)] = image::Checksum(bytes);
  return file_.Append(bytes);
}

absl::Status ImageWriter::PutF16(const std::string& name, std::span<const float> values) {
  std::vector<uint16_t> halves(values.size());
  for (size_t i = 0; i < values.size(); ++i) halves[i] = F32ToF16(values[i]);
  return Put(name, std::as_bytes(std::span<const uint16_t>(halves)));
}

absl::Status ImageWriter::PutMatrix(const std::string& name, const Matrix& m) {
  if (!m.is_int8()) return PutF32(name, m.values);
  RETURN_IF_ERROR(Put(name, std::as_bytes(m.q)));
  return PutF32(name + "_scale", m.scales);
}

absl::Status ImageWriter::AddLayer(int layer, std::span<const QuantizedMatrix> linears) {
  const ModelConfig& c = source_->config();
  if (layer != next_layer_ || layer >= c.num_layers || linears.size() != arch::kLinearsPerLayer || !source_->layer_loaded(layer)) {
    return absl::InternalError(absl::StrCat("image writer: layer ", layer, " given out of order, incomplete or not loaded"));
  }
  const LayerWeights& l = source_->weights().layers[layer];
  RETURN_IF_ERROR(PutF32(arch::LayerTensor(layer, arch::kAttentionNorm) + ".weight", l.attn_norm));
  RETURN_IF_ERROR(PutF32(arch::LayerTensor(layer, arch::kMlpNorm) + ".weight", l.ffn_norm));
  if (c.qk_norm) {
    RETURN_IF_ERROR(PutF32(arch::LayerTensor(layer, arch::kQueryNorm) + ".weight", l.q_norm));
    RETURN_IF_ERROR(PutF32(arch::LayerTensor(layer, arch::kKeyNorm) + ".weight", l.k_norm));
  }
  const auto source_linears = l.linears();
  for (size_t j = 0; j < linears.size(); ++j) {
    const QuantizedMatrix& q = linears[j];
    if (q.seed_bits != seed_bits_ || q.max_bits != max_bits_) {
      return absl::InternalError(absl::StrCat("image writer: layer ", layer, " quantized at other widths than planned"));
    }
    const std::string prefix = arch::LayerTensor(layer, arch::kLinears[j].name);
    RETURN_IF_ERROR(Put(image::PlanesTensor(prefix), std::as_bytes(std::span<const uint8_t>(q.planes))));
    for (int bits = seed_bits_; bits <= max_bits_; ++bits) RETURN_IF_ERROR(PutF16(image::LutTensor(prefix, bits), q.luts[bits - seed_bits_]));
    if (!source_linears[j]->bias.empty()) RETURN_IF_ERROR(PutF32(prefix + ".bias", source_linears[j]->bias));
  }
  ++next_layer_;
  return absl::OkStatus();
}

absl::Status ImageWriter::Finish(std::span<const std::pair<std::string, std::string>> tokenizer_files, const nlohmann::json& provenance) {
  const ModelConfig& c = source_->config();
  const ModelWeights& w = source_->weights();
  RETURN_IF_ERROR(PutF32(std::string(arch::kFinalNormTensor), w.final_norm));
  RETURN_IF_ERROR(PutMatrix(std::string(arch::kEmbeddingTensor), w.embedding));
  if (!c.tie_word_embeddings) RETURN_IF_ERROR(PutMatrix(std::string(arch::kHeadTensor), w.head));
  if (next_ != plan_.size()) return absl::InternalError(absl::StrCat("image writer: ", plan_.size() - next_, " planned tensors not written"));
  RETURN_IF_ERROR(file_.Finish(checksums_));

  const fs::path root(out_dir_);
  std::error_code ec;
  for (const auto& [file, name] : tokenizer_files) {
    fs::copy_file(file, root / name, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::permissions(root / name, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    if (ec) return absl::DataLossError(absl::StrCat(file, ": cannot copy into the image: ", ec.message()));
  }

  ASSIGN_OR_RETURN(const std::string source_config, ReadTextFile((fs::path(source_->dir()) / "config.json").string()));
  nlohmann::json config = nlohmann::json::parse(source_config);
  nlohmann::json section = provenance;
  section["format_version"] = image::kFormatVersion;
  section["seed_bits"] = seed_bits_;
  section["max_bits"] = max_bits_;
  section["weights_file"] = std::string(image::kWeightsFile);
  section["dense_dtype"] = w.head.is_int8() ? "int8" : "fp32";
  nlohmann::json quantized = nlohmann::json::array();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    for (const arch::LinearSpec& linear : arch::kLinears) quantized.push_back(arch::LayerTensor(layer, linear.name));
  }
  section["quantized"] = quantized;
  config[std::string(image::kConfigSection)] = section;
  return WriteText(root / "config.json", config.dump(2) + "\n");
}

}  // namespace anyprec::quant
