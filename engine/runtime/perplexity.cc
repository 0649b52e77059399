#include "engine/runtime/perplexity.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/runtime/logprobs.h"

namespace anyprec {

double NegativeLogLikelihood(std::span<const float> logits, TokenId target) { return LogSumExp(logits) - logits[target]; }

absl::StatusOr<std::vector<TokenWindow>> PerplexityWindows(std::span<const TokenId> text_tokens, TokenId bos, int windows,
                                                           int window_len, int context_length) {
  if (windows <= 0 || window_len <= 0) return absl::InvalidArgumentError("windows and window length must be positive");
  // Without a BOS each window's first text token opens it, unscored.
  const int lead = bos >= 0 ? 0 : 1;
  const long stride = window_len + lead;
  const long needed = windows * stride;
  if (static_cast<long>(text_tokens.size()) < needed) {
    return absl::InvalidArgumentError(absl::StrCat("the text has ", text_tokens.size(), " tokens, fewer than ", windows,
                                                   " windows x ", window_len));
  }
  if (window_len + 1 > context_length) {
    return absl::InvalidArgumentError(absl::StrCat("window of ", window_len, " tokens plus BOS exceeds the model's ",
                                                   context_length, " positions"));
  }
  std::vector<TokenWindow> out(windows);
  for (int w = 0; w < windows; ++w) {
    const std::span<const TokenId> segment = text_tokens.subspan(static_cast<size_t>(w * stride), stride);
    TokenWindow& window = out[w];
    window.targets.assign(segment.begin() + lead, segment.end());
    // The last target predicts nothing inside the window, so it is not run.
    window.inputs.push_back(bos >= 0 ? bos : segment[0]);
    window.inputs.insert(window.inputs.end(), window.targets.begin(), window.targets.end() - 1);
  }
  return out;
}

absl::StatusOr<PerplexityResult> EvaluatePerplexity(Transformer& transformer, std::span<const TokenId> text_tokens,
                                                    TokenId bos, int windows, int window_len,
                                                    const ForwardOptions& options, cpu::KvDType kv_dtype,
                                                    const std::function<void(int, int)>& progress) {
  const ModelConfig& config = transformer.config();
  ASSIGN_OR_RETURN(const std::vector<TokenWindow> runs, PerplexityWindows(text_tokens, bos, windows, window_len, config.context_length()));
  KvCache cache(config, window_len, kv_dtype);
  std::vector<float> logits(static_cast<size_t>(window_len) * config.vocab_size);
  double nll_sum = 0;
  for (int w = 0; w < windows; ++w) {
    cache.Clear();
    if (absl::Status s = transformer.Forward(runs[w].inputs, cache, LogitsFor::kAllTokens, logits, options); !s.ok()) return s;
    for (int t = 0; t < window_len; ++t) {
      nll_sum += NegativeLogLikelihood(std::span<const float>(logits).subspan(static_cast<size_t>(t) * config.vocab_size, config.vocab_size),
                                       runs[w].targets[t]);
    }
    if (progress) progress(w + 1, windows);
  }
  PerplexityResult result;
  result.tokens = static_cast<long>(windows) * window_len;
  result.mean_nll = nll_sum / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

absl::StatusOr<TokenIdsResult> EvaluateTokenIds(Transformer& transformer, std::span<const TokenId> ids, const ForwardOptions& options,
                                                cpu::KvDType kv_dtype) {
  const ModelConfig& config = transformer.config();
  if (ids.size() < 2) return absl::InvalidArgumentError(absl::StrCat("need at least 2 token ids, got ", ids.size()));
  if (ids.size() > static_cast<size_t>(config.context_length())) {
    return absl::InvalidArgumentError(absl::StrCat(ids.size(), " token ids exceed the model's ", config.context_length(), " positions"));
  }
  const size_t vocab = config.vocab_size;
  KvCache cache(config, static_cast<int>(ids.size()), kv_dtype);
  std::vector<float> logits(ids.size() * vocab);
  if (absl::Status s = transformer.Forward(ids, cache, LogitsFor::kAllTokens, logits, options); !s.ok()) return s;
  TokenIdsResult result;
  double nll_sum = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const std::span<const float> row = std::span<const float>(logits).subspan(t * vocab, vocab);
    result.top1.push_back(static_cast<TokenId>(std::max_element(row.begin(), row.end()) - row.begin()));
    if (t + 1 < ids.size()) nll_sum += NegativeLogLikelihood(row, ids[t + 1]);
  }
  result.tokens = static_cast<long>(ids.size()) - 1;
  result.mean_nll = nll_sum / static_cast<double>(result.tokens);
  return result;
}

}  // namespace anyprec
