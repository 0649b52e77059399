#include "quantizer/calibration.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
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

absl::StatusOr<std::vector<TokenWindow>> ActivationWindows(std::span<const TokenId> text_tokens, TokenId bos, int window_len,
                                                           long max_tokens, int context_length) {
  window_len = std::min(window_len, context_length);
  if (window_len < 2) return absl::InvalidArgumentError("calibration windows need at least 2 tokens");
  const long available = std::min<long>(max_tokens, static_cast<long>(text_tokens.size()));
  if (available <= 0) return absl::InvalidArgumentError("the calibration text has no tokens");
  std::vector<TokenWindow> windows;
  for (long start = 0; start < available; start += window_len - 1) {
    const long count = std::min<long>(window_len - 1, available - start);
    TokenWindow& window = windows.emplace_back();
    if (bos >= 0) window.inputs.push_back(bos);
    window.inputs.insert(window.inputs.end(), text_tokens.begin() + start, text_tokens.begin() + start + count);
  }
  return windows;
}

absl::StatusOr<LayerByLayerPass> LayerByLayerPass::Start(const Model& model, std::vector<TokenWindow> windows) {
  size_t longest = 0;
  for (const TokenWindow& w : windows) longest = std::max(longest, w.inputs.size());
  if (longest == 0) return absl::InvalidArgumentError("no calibration tokens to run");
  LayerByLayerPass pass(std::move(windows), static_cast<int>(longest));
  KvCache cache(model.config(), pass.longest_);
  for (size_t w = 0; w < pass.windows_.size(); ++w) {
    pass.hidden_[w].resize(pass.windows_[w].inputs.size() * model.config().hidden_size);
    RETURN_IF_ERROR(pass.Run(model, 0, 0, nullptr, {}, static_cast<int>(w), cache));
  }
  return pass;
}

absl::Status LayerByLayerPass::Run(const Model& model, int first, int end, LinearInputObserver* observer, std::span<float> logits,
                                   int window, KvCache& cache) {
  Transformer transformer(model);
  ForwardOptions options;
  options.observer = observer;
  options.first_layer = first;
  options.end_layer = end;
  options.hidden = hidden_[window];
  cache.Clear();
  return transformer.Forward(windows_[window].inputs, cache, LogitsFor::kAllTokens, logits, options);
}

absl::Status LayerByLayerPass::RunLayer(const Model& model, int layer, LinearInputObserver* observer) {
  if (layer != next_layer_ || !model.layer_loaded(layer)) {
    return absl::InternalError(absl::StrCat("calibration: layer ", layer, " run out of order or not loaded"));
  }
  KvCache cache(model.config(), longest_);
  for (size_t w = 0; w < windows_.size(); ++w) RETURN_IF_ERROR(Run(model, layer, layer + 1, observer, {}, static_cast<int>(w), cache));
  ++next_layer_;
  return absl::OkStatus();
}

absl::StatusOr<double> LayerByLayerPass::MeanNll(const Model& model) {
  const ModelConfig& c = model.config();
  if (next_layer_ != c.num_layers) return absl::InternalError("calibration: the loss is read after the last layer");
  double sum = 0;
  long count = 0;
  std::vector<float> logits;
  KvCache cache(c, longest_);
  for (size_t w = 0; w < windows_.size(); ++w) {
    const TokenWindow& window = windows_[w];
    logits.resize(window.inputs.size() * c.vocab_size);
    RETURN_IF_ERROR(Run(model, c.num_layers, c.num_layers, nullptr, logits, static_cast<int>(w), cache));
    for (size_t t = 0; t < window.targets.size(); ++t) {
      sum += NegativeLogLikelihood(std::span<const float>(logits).subspan(t * c.vocab_size, c.vocab_size), window.targets[t]);
    }
    count += static_cast<long>(window.targets.size());
  }
  if (count == 0) return absl::InvalidArgumentError("calibration: no targets to score");
  return sum / static_cast<double>(count);
}

}  // namespace anyprec::quant
