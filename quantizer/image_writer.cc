#include "quantizer/image_writer.h"

#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/model/arch.h"
#include "engine/model/bitplanes.h"
#include "engine/model/float_convert.h"
#include "engine/model/image_format.h"
#include "engine/model/safetensors.h"

namespace anyprec::quant {
namespace {

namespace fs = std::filesystem;

// Tensors to write, with the buffers their bytes live in.
class TensorList {
 public:
  void AddF32(std::string name, std::vector<int64_t> shape, std::span<const float> values) {
    Add(std::move(name), DType::kF32, std::move(shape), std::as_bytes(values));
  }
  void AddF16(std::string name, std::vector<int64_t> shape, std::span<const float> values) {
    std::vector<uint16_t>& halves = halves_.emplace_back(values.size());
    for (size_t i = 0; i < values.size(); ++i) halves[i] = F32ToF16(values[i]);
    Add(std::move(name), DType::kF16, std::move(shape), std::as_bytes(std::span<const uint16_t>(halves)));
  }
  void AddU8(std::string name, std::vector<int64_t> shape, std::span<const uint8_t> bytes) {
    Add(std::move(name), DType::kU8, std::move(shape), std::as_bytes(bytes));
  }
  // A matrix as the model holds it: NAME (fp32), or NAME (I8) and NAME_scale (F32 [rows]).
  void AddMatrix(const std::string& name, const Matrix& m) {
    if (!m.is_int8()) return AddF32(name, {m.rows, m.cols}, m.values);
    Add(name, DType::kI8, {m.rows, m.cols}, std::as_bytes(m.q));
    AddF32(name + "_scale", {m.rows}, m.scales);
  }
  const std::vector<TensorToWrite>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& checksums() const { return checksums_; }

 private:
  void Add(std::string name, DType dtype, std::vector<int64_t> shape, std::span<const std::byte> data) {
    checksums_[image::ChecksumKey(name)] = image::Checksum(data);
    tensors_.push_back({std::move(name), dtype, std::move(shape), data});
  }

  std::vector<TensorToWrite> tensors_;
  std::map<std::string, std::string> checksums_;
  std::deque<std::vector<uint16_t>> halves_;  // stable addresses
};

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

}  // namespace

absl::Status WriteImage(const std::string& out_dir, const ImageContents& image) {
  const Model& model = *image.source;
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  if (image.linears.size() != arch::FlatIndex(c.num_layers, 0)) {
    return absl::InternalError("image needs every quantized linear of every layer");
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out_dir, ": cannot create: ", ec.message()));
  // An earlier image's config.json would make a half-rewritten folder look loadable.
  fs::remove(fs::path(out_dir) / "config.json", ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out_dir, "/config.json: cannot remove: ", ec.message()));

  TensorList list;
  list.AddMatrix(std::string(arch::kEmbeddingTensor), w.embedding);
  if (!c.tie_word_embeddings) list.AddMatrix(std::string(arch::kHeadTensor), w.head);
  list.AddF32(std::string(arch::kFinalNormTensor), {c.hidden_size}, w.final_norm);
  const QuantizedMatrix& first = image.linears.front();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& l = w.layers[layer];
    list.AddF32(arch::LayerTensor(layer, arch::kAttentionNorm) + ".weight", {c.hidden_size}, l.attn_norm);
    list.AddF32(arch::LayerTensor(layer, arch::kMlpNorm) + ".weight", {c.hidden_size}, l.ffn_norm);
    if (c.qk_norm) {
      list.AddF32(arch::LayerTensor(layer, arch::kQueryNorm) + ".weight", {c.head_dim}, l.q_norm);
      list.AddF32(arch::LayerTensor(layer, arch::kKeyNorm) + ".weight", {c.head_dim}, l.k_norm);
    }
    const auto linears = l.linears();
    for (size_t j = 0; j < linears.size(); ++j) {
      const QuantizedMatrix& q = image.linears[arch::FlatIndex(layer, static_cast<int>(j))];
      const std::string prefix = arch::LayerTensor(layer, arch::kLinears[j].name);
      list.AddU8(image::PlanesTensor(prefix), {q.max_bits, q.rows, static_cast<int64_t>(RowBytes(q.cols))}, q.planes);
      for (int bits = q.seed_bits; bits <= q.max_bits; ++bits) {
        list.AddF16(image::LutTensor(prefix, bits), {q.rows, int64_t{1} << bits}, q.luts[bits - q.seed_bits]);
      }
      if (!linears[j]->bias.empty()) list.AddF32(prefix + ".bias", {linears[j]->rows}, linears[j]->bias);
    }
  }
  const fs::path root(out_dir);
  RETURN_IF_ERROR(WriteSafetensors((root / image::kWeightsFile).string(), list.tensors(), list.checksums()));

  for (const auto& [file, name] : image.tokenizer_files) {
    fs::copy_file(file, root / name, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::permissions(root / name, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
    if (ec) return absl::DataLossError(absl::StrCat(file, ": cannot copy into the image: ", ec.message()));
  }

  ASSIGN_OR_RETURN(const std::string source_config, ReadTextFile((fs::path(model.dir()) / "config.json").string()));
  nlohmann::json config = nlohmann::json::parse(source_config);
  nlohmann::json section = image.provenance;
  section["format_version"] = image::kFormatVersion;
  section["seed_bits"] = first.seed_bits;
  section["max_bits"] = first.max_bits;
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
