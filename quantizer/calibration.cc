#include "quantizer/calibration.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/model/arch.h"

namespace anyprec::quant {
namespace {

constexpr int kInputs = arch::kLinearInputs;

}  // namespace

ActivationStatistics::ActivationStatistics(const ModelConfig& c) : sums_(static_cast<size_t>(c.num_layers) * kInputs) {
  for (int layer = 0; layer < c.num_layers; ++layer) {
    for (int input = 0; input < kInputs; ++input) sums_[layer * kInputs + input].assign(arch::Size(c, arch::kInputDims[input]), 0.0);
  }
}

void ActivationStatistics::Observe(int layer, LinearInput input, std::span<const float> rows, int width) {
  std::vector<double>& sums = sums_[layer * kInputs + static_cast<int>(input)];
  const size_t tokens = rows.size() / width;
  for (size_t t = 0; t < tokens; ++t) {
    for (int j = 0; j < width; ++j) {
      const double x = rows[t * width + j];
      sums[j] += x * x;
    }
  }
  if (layer == 0 && input == LinearInput::kAttention) tokens_ += static_cast<long>(tokens);
}

std::vector<float> ActivationStatistics::ColumnSensitivity(int layer, LinearInput input) const {
  const std::vector<double>& sums = sums_[layer * kInputs + static_cast<int>(input)];
  return std::vector<float>(sums.begin(), sums.end());
}

absl::StatusOr<ActivationStatistics> CollectActivationStatistics(const Model& model, std::span<const TokenId> text_tokens,
                                                                 TokenId bos, int window_len, long max_tokens) {
  const ModelConfig& c = model.config();
  window_len = std::min(window_len, c.context_length());
  if (window_len < 2) return absl::InvalidArgumentError("calibration windows need at least 2 tokens");
  const long available = std::min<long>(max_tokens, static_cast<long>(text_tokens.size()));
  if (available <= 0) return absl::InvalidArgumentError("the calibration text has no tokens");

  ActivationStatistics statistics(c);
  Transformer transformer(model);
  KvCache cache(c, window_len);
  std::vector<float> logits(c.vocab_size);
  std::vector<TokenId> window;
  for (long start = 0; start < available; start += window_len - 1) {
    const long count = std::min<long>(window_len - 1, available - start);
    window.clear();
    if (bos >= 0) window.push_back(bos);
    window.insert(window.end(), text_tokens.begin() + start, text_tokens.begin() + start + count);
    cache.Clear();
    ForwardOptions options;
    options.observer = &statistics;
    if (absl::Status s = transformer.Forward(window, cache, LogitsFor::kLastToken, logits, options); !s.ok()) return s;
  }
  return statistics;
}

}  // namespace anyprec::quant
