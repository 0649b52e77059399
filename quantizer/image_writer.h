// Writes an anyprec image folder (docs/FORMAT.md) as the quantizer makes it, one decoder layer
// at a time, so that no more than one layer's tensors need be in memory: anyprec.safetensors
// with the bitplanes, fp16 LUTs and unquantized tensors, each with a checksum; the tokenizer
// files; and config.json, written last, so an interrupted write leaves no loadable image.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"
#include "quantizer/matrix_quantizer.h"

namespace anyprec::quant {

class ImageWriter {
 public:
  // `source` gives config.json and the unquantized tensors and must outlive the writer. Its
  // head and embedding are planned, and later written, in the form it holds now (fp32, or int8
  // rows after Model::SetDenseInt8). The file's layers come first, then the dense tensors.
  static absl::StatusOr<ImageWriter> Create(const std::string& out_dir, const Model& source, int seed_bits, int max_bits);

  // Layer `layer`'s tensors, for layers 0, 1, ... in turn: its quantized linears in
  // arch::kLinears order, and from `source`, where the layer is loaded, its norms and biases.
  absl::Status AddLayer(int layer, std::span<const QuantizedMatrix> linears);

  // After the last layer: the dense tensors, then the tokenizer files, each (source path, name
  // in the image), and config.json with `provenance` (mode, sensitivity, calibration).
  absl::Status Finish(std::span<const std::pair<std::string, std::string>> tokenizer_files, const nlohmann::json& provenance);

 private:
  ImageWriter(std::string out_dir, const Model& source, int seed_bits, int max_bits, std::vector<SafetensorsWriter::Planned> plan,
              SafetensorsWriter file)
      : out_dir_(std::move(out_dir)), source_(&source), seed_bits_(seed_bits), max_bits_(max_bits), plan_(std::move(plan)),
        file_(std::move(file)) {}

  // The next planned tensor, whole: checked against the plan and checksummed.
  absl::Status Put(const std::string& name, std::span<const std::byte> bytes);
  absl::Status PutF32(const std::string& name, std::span<const float> values) { return Put(name, std::as_bytes(values)); }
  absl::Status PutF16(const std::string& name, std::span<const float> values);
  absl::Status PutMatrix(const std::string& name, const Matrix& m);

  std::string out_dir_;
  const Model* source_;
  int seed_bits_;
  int max_bits_;
  std::vector<SafetensorsWriter::Planned> plan_;
  size_t next_ = 0;  // into plan_
  int next_layer_ = 0;
  SafetensorsWriter file_;
  std::map<std::string, std::string> checksums_;
};

}  // namespace anyprec::quant
