// Calibration passes that hold one decoder layer at a time, so that a checkpoint larger than
// memory can be measured: activation sensitivity (for every linear layer, the sum over
// calibration tokens of each input column's squared activation, w_j = sum_t x_tj^2), and the
// loss of the model with its head and embedding in one form or another.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/device/kv_cache.h"
#include "engine/runtime/perplexity.h"
#include "engine/runtime/transformer.h"

namespace anyprec::quant {

class ActivationStatistics : public LinearInputObserver {
 public:
  explicit ActivationStatistics(const ModelConfig& config);

  void Observe(int layer, LinearInput input, std::span<const float> rows, int width) override;

  // Sensitivity of each input column of the linears fed by `input` in `layer`.
  std::vector<float> ColumnSensitivity(int layer, LinearInput input) const;
  long tokens() const { return tokens_; }

 private:
  std::vector<std::vector<double>> sums_;  // [layer * arch::kLinearInputs + input][column]
  long tokens_ = 0;
};

// Windows of [BOS] + (window_len - 1) text tokens (no BOS for bos < 0), consecutive from the
// start of `text_tokens`, until `max_tokens` text tokens are in (fewer if the text is
// shorter); window_len is capped at `context_length`. No targets: they are run to be observed.
absl::StatusOr<std::vector<TokenWindow>> ActivationWindows(std::span<const TokenId> text_tokens, TokenId bos, int window_len,
                                                           long max_tokens, int context_length);

// Windows carried through a model one decoder layer at a time: each window's hidden states
// (tokens x hidden floats) stay in memory between layers, the layers' weights need not. The
// caller loads layer i, runs it in every pass it has going, and may release it before i + 1.
class LayerByLayerPass {
 public:
  // Embeds the windows with the model's embedding as it is now (fp32 or int8 rows).
  static absl::StatusOr<LayerByLayerPass> Start(const Model& model, std::vector<TokenWindow> windows);

  // Runs decoder layer `layer`, loaded in `model`, over every window, showing its linears'
  // inputs to `observer` if given. Layers run in order from 0.
  absl::Status RunLayer(const Model& model, int layer, LinearInputObserver* observer = nullptr);

  // After the last layer: the mean negative log-likelihood of every window's targets through
  // the final norm and the model's head as it is now.
  absl::StatusOr<double> MeanNll(const Model& model);

 private:
  LayerByLayerPass(std::vector<TokenWindow> windows, int longest)
      : windows_(std::move(windows)), hidden_(windows_.size()), longest_(longest) {}
  // Runs layers [first, end) of one window on `model`'s CPU device, from an empty `cache`.
  absl::Status Run(const Model& model, int first, int end, LinearInputObserver* observer, std::span<float> logits, int window,
                   KvCache& cache);

  std::vector<TokenWindow> windows_;
  std::vector<std::vector<float>> hidden_;  // per window, [inputs, hidden_size]
  int longest_;                             // inputs of the longest window
  int next_layer_ = 0;
};

}  // namespace anyprec::quant
