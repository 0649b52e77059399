// Fisher sensitivity as SqueezeLLM computes it: for each calibration window (batch size 1),
// the gradient of the language-model loss with respect to every linear layer's weight,
// squared element-wise and summed over the windows. The sums are the k-means sample weights.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/runtime/perplexity.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace anyprec::quant {

// fp32 sums are exact to fp32 rounding. bf16 sums halve the accumulators' memory but keep
// 8 significant bits: each addition rounds to 2^-9 relative, and a sample whose square is
// below 2^-9 of the running sum adds nothing (docs/BENCHMARKS.md measures the effect).
enum class AccumulatorPrecision { kF32, kBF16 };

struct FisherOptions {
  int samples = 100;
  int seq_len = 512;    // tokens per window, as `anyprec eval` runs them: [BOS] + seq_len - 1
  uint64_t seed = 0;    // of the window draw
  AccumulatorPrecision precision = AccumulatorPrecision::kF32;
};

// The text cut into consecutive chunks of seq_len tokens ([BOS] + seq_len - 1 inputs, the
// seq_len tokens as targets; without a BOS, seq_len + 1 tokens shifted by one), of which
// `samples` are drawn without replacement by a Fisher-Yates shuffle driven by
// std::mt19937_64(seed), in the order drawn; all of them when the text has fewer.
std::vector<TokenWindow> DrawCalibrationWindows(std::span<const TokenId> text, TokenId bos, int samples, int seq_len,
                                                uint64_t seed);

// Sums of squared gradients, one per weight of every linear layer.
class FisherInformation {
 public:
  FisherInformation(const ModelConfig& config, AccumulatorPrecision precision);

  // Bytes the accumulators of `config` take at `precision`.
  static size_t AccumulatorBytes(const ModelConfig& config, AccumulatorPrecision precision);

  // Adds gradient^2 to the sums of linear `linear` (an index into arch::kLinears) of `layer`.
  void AddSquared(int layer, int linear, std::span<const float> gradient);
  // The sums of one matrix, as floats [rows, cols].
  std::vector<float> Sums(int layer, int linear) const;

  AccumulatorPrecision precision() const { return precision_; }
  // How the sums were made (samples, tokens, window, calibration file, source model).
  nlohmann::json& provenance() { return provenance_; }
  const nlohmann::json& provenance() const { return provenance_; }

  // A safetensors file: one tensor per linear layer, named like its weight, in the
  // accumulators' precision; the provenance in the metadata.
  absl::Status Save(const std::string& path) const;
  // Loads a file that Save wrote for a model of `config`'s shapes named `model_name`.
  static absl::StatusOr<FisherInformation> Load(const std::string& path, const ModelConfig& config,
                                                const std::string& model_name);

 private:
  struct Matrix {
    int rows = 0;
    int cols = 0;
    std::vector<float> f32;      // when kF32
    std::vector<uint16_t> bf16;  // when kBF16
  };

  AccumulatorPrecision precision_;
  std::vector<Matrix> matrices_;  // [arch::FlatIndex(layer, linear)]
  nlohmann::json provenance_ = nlohmann::json::object();
};

// Runs the forward and backward pass over every window (all cores) and sums the squared
// gradients. `progress` gets one line per window.
absl::StatusOr<FisherInformation> CollectFisherInformation(const Model& model, std::span<const TokenWindow> windows,
                                                           AccumulatorPrecision precision,
                                                           const std::function<void(const std::string&)>& progress);

// Memory the Fisher pass needs beside the model's weights: accumulators, one window's
// activations and the gradient buffer.
size_t FisherPassBytes(const ModelConfig& config, int seq_len, AccumulatorPrecision precision);

}  // namespace anyprec::quant
