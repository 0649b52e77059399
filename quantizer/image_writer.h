// Writes an anyprec image folder (docs/FORMAT.md): anyprec.safetensors with the bitplanes,
// fp16 LUTs and unquantized tensors, each with a checksum; the tokenizer files; and
// config.json (written last, so an interrupted write leaves no loadable image).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/model.h"
#include "nlohmann/json.hpp"
#include "quantizer/matrix_quantizer.h"

namespace anyprec::quant {

struct ImageContents {
  // Unquantized tensors and config.json come from here; the head and the embedding are written
  // as it holds them (fp32, or int8 rows after Model::SetDenseInt8).
  const Model* source = nullptr;
  std::vector<QuantizedMatrix> linears;          // per layer, in arch::kLinears order
  // Copied into the image: (source path, file name in the image).
  std::vector<std::pair<std::string, std::string>> tokenizer_files;
  nlohmann::json provenance;                     // how it was made: mode, sensitivity, calibration
};

absl::Status WriteImage(const std::string& out_dir, const ImageContents& image);

}  // namespace anyprec::quant
