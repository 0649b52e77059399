// anyprec's quantizer: a Hugging Face Llama-family folder in, an anyprec image out.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "quantizer/fisher.h"
#include "quantizer/matrix_quantizer.h"

namespace anyprec::quant {

enum class Sensitivity {
  kAuto,        // kFisher when its pass fits in the memory available (fp32 sums, else bf16), else kActivation
  kFisher,      // w_ij = sum over calibration windows of (dL/dW_ij)^2 (SqueezeLLM)
  kActivation,  // w_ij = sum over calibration tokens of x_tj^2 (the layer's input column j)
  kNone,        // every weight counts the same
};

// How the image stores the head and the embedding (FORMAT.md).
enum class DenseDType {
  kAuto,  // kInt8 when the source model's perplexity on the calibration text with it stays within
          // kDenseInt8Tolerance of fp32's, else kF32
  kF32,
  kInt8,  // int8 rows with one scale each: a quarter of the bytes, and of what the head reads per token
};
constexpr double kDenseInt8Tolerance = 0.001;

struct ModelQuantizeOptions {
  QuantOptions quant;
  Sensitivity sensitivity = Sensitivity::kAuto;
  std::string calibration_text;    // a UTF-8 text file; needed unless kNone or the sensitivity is loaded
  long calibration_tokens = 16384; // kActivation: text tokens at most
  int calibration_window = 512;    // kActivation: [BOS] + 511 text tokens per window
  FisherOptions fisher;            // kFisher: windows, seed, accumulator precision
  std::string save_sensitivity;    // kFisher: write the sums here
  std::string load_sensitivity;    // kFisher: read the sums from here instead of running the pass
  std::string tokenizer_path;      // empty: the model folder's tokenizer.json
  std::string model_name;          // what the image's models are called; empty: the model folder's name
  DenseDType dense_dtype = DenseDType::kAuto;  // the head and the embedding
};

// Progress lines ("layer 3/32 quantized", ...) go to `progress`.
absl::Status QuantizeModel(const std::string& model_dir, const std::string& out_dir, const ModelQuantizeOptions& options,
                           const std::function<void(const std::string&)>& progress);

}  // namespace anyprec::quant
