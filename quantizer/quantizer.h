// anyprec's quantizer: a Hugging Face Llama-family folder in, an anyprec image out.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "quantizer/matrix_quantizer.h"

namespace anyprec::quant {

enum class Sensitivity {
  kActivation,  // w_ij = sum over calibration tokens of x_tj^2 (the layer's input column j)
  kNone,        // every weight counts the same
};

struct ModelQuantizeOptions {
  QuantOptions quant;
  Sensitivity sensitivity = Sensitivity::kActivation;
  std::string calibration_text;    // a UTF-8 text file; needed for kActivation
  long calibration_tokens = 16384;
  int calibration_window = 512;    // [BOS] + 511 text tokens per window
  std::string tokenizer_path;      // empty: the model folder's tokenizer.json
};

// Progress lines ("layer 3/32 quantized", ...) go to `progress`.
absl::Status QuantizeModel(const std::string& model_dir, const std::string& out_dir, const ModelQuantizeOptions& options,
                           const std::function<void(const std::string&)>& progress);

}  // namespace anyprec::quant
