// Activation sensitivity from calibration text: for every linear layer, the sum over
// calibration tokens of each input column's squared activation, w_j = sum_t x_tj^2.
#pragma once

#include <span>
#include <vector>

#include "absl/status/statusor.h"
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

// Runs windows of [BOS] + (window_len - 1) text tokens, consecutive from the start of
// `text_tokens`, until `max_tokens` text tokens have been seen (fewer if the text is shorter).
absl::StatusOr<ActivationStatistics> CollectActivationStatistics(
    const Model& model, std::span<const TokenId> text_tokens, TokenId bos, int window_len, long max_tokens);

}  // namespace anyprec::quant
