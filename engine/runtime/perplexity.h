// Perplexity by anyprec's protocol (the one shared/models/README.md's references use):
// the first windows x window_len tokens of a text, each window run as [BOS] + window
// from an empty cache, ppl = exp(mean NLL of every window token). For a model whose prompts
// open with no BOS (bos < 0, e.g. Qwen), each window takes one more text token, which opens
// it unscored.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/transformer.h"

namespace anyprec {

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  long tokens = 0;
};

// Tokens run from an empty cache, inputs[t] predicting targets[t].
struct TokenWindow {
  std::vector<TokenId> inputs;
  std::vector<TokenId> targets;
};

// The windows EvaluatePerplexity runs: window w's targets are its window_len text tokens, its
// inputs the BOS (or, without one, the text token before them) and all but the last target.
// Fails when the text is too short or a window exceeds `context_length` positions.
absl::StatusOr<std::vector<TokenWindow>> PerplexityWindows(std::span<const TokenId> text_tokens, TokenId bos, int windows,
                                                           int window_len, int context_length);

// `options` picks the width of an anyprec image and the kernels, `kv_dtype` how the cache
// stores keys and values. `progress` (if set) is called after each window with (windows
// done, windows in all).
absl::StatusOr<PerplexityResult> EvaluatePerplexity(Transformer& transformer, std::span<const TokenId> text_tokens,
                                                    TokenId bos, int windows, int window_len,
                                                    const ForwardOptions& options = {}, cpu::KvDType kv_dtype = cpu::KvDType::kF32,
                                                    const std::function<void(int, int)>& progress = {});

// Token ids run exactly as given: one causal pass from position 0, no BOS added (as the
// synthetic-arch references are computed). mean_nll over positions 0..n-2 predicting the next
// id; top1[i]: the most likely id after ids[0..i].
struct TokenIdsResult {
  double mean_nll = 0;
  long tokens = 0;  // the predicted ones: n - 1
  std::vector<TokenId> top1;
};
absl::StatusOr<TokenIdsResult> EvaluateTokenIds(Transformer& transformer, std::span<const TokenId> ids, const ForwardOptions& options = {},
                                                cpu::KvDType kv_dtype = cpu::KvDType::kF32);

// -log softmax(logits)[target], computed in double.
double NegativeLogLikelihood(std::span<const float> logits, TokenId target);

}  // namespace anyprec
