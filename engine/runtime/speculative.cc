#include "engine/runtime/speculative.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/model/width.h"

namespace anyprec {

absl::Status ValidateSpeculation(const ModelConfig& config, int target_bits, const SpeculativeOptions& options) {
  const WidthRange widths = ModelWidths(config);
  RETURN_IF_ERROR(widths.Check(options.draft_bits, "draft width", "the model's"));
  if (options.draft_bits >= target_bits) {
    return absl::InvalidArgumentError(absl::StrCat("draft width ", options.draft_bits, " must be below the target width ", target_bits));
  }
  if (options.lookahead < 1 || options.lookahead > 16) {
    return absl::InvalidArgumentError(absl::StrCat("lookahead must be in 1..16, got ", options.lookahead));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> RunSpeculativeCycle(Transformer& transformer, KvCache& cache, Decoder& decoder, int target_bits,
                                         const SpeculativeOptions& options, const std::function<void(const DecodeStep&)>& on_step,
                                         SpeculativeCounts& counts) {
  const int vocab = transformer.config().vocab_size;
  const int context = static_cast<int>(decoder.context().size());
  if (cache.length() != context - 1) {
    return absl::FailedPreconditionError(absl::StrCat("the cache holds ", cache.length(), " positions, not the context's ", context, " less one"));
  }
  // A cycle commits up to k + 1 tokens, which the sequence's length limit must leave room for.
  const int lookahead = std::clamp(decoder.max_positions() - context - 1, 0, options.lookahead);

  // Draft: k single-token steps at the draft width, each from the distribution the decoder
  // would sample from there.
  std::vector<TokenId> tokens = {decoder.context().back()};  // the verify step's input
  std::vector<TokenDistribution> drafts;
  std::vector<float> logits(static_cast<size_t>(lookahead + 1) * vocab);
  ForwardOptions draft_forward;
  draft_forward.bits = options.draft_bits;
  for (int j = 0; j < lookahead; ++j) {
    const std::span<float> row(logits.data(), vocab);
    RETURN_IF_ERROR(transformer.Forward(std::span(&tokens.back(), 1), cache, LogitsFor::kLastToken, row, draft_forward));
    drafts.push_back(decoder.Distribution(row, std::span(tokens).subspan(1)));
    tokens.push_back(decoder.Draw(drafts.back()));
  }
  cache.Truncate(context - 1);

  // Verify: the context's last token and the drafted ones in one step at the target width.
  ForwardOptions target_forward;
  target_forward.bits = target_bits;
  RETURN_IF_ERROR(transformer.Forward(tokens, cache, LogitsFor::kAllTokens, logits, target_forward));
  ++counts.cycles;
  counts.drafted += lookahead;

  const auto target_at = [&](int j) {
    return decoder.Distribution(std::span<const float>(logits).subspan(static_cast<size_t>(j) * vocab, vocab),
                                std::span(tokens).subspan(1, j));
  };
  bool ended = false;
  bool rejected = false;
  for (int j = 0; j < lookahead && !ended && !rejected; ++j) {
    const Verdict verdict = decoder.Verify(target_at(j), drafts[j], tokens[j + 1]);
    counts.accepted += verdict.accepted;
    rejected = !verdict.accepted;
    const DecodeStep step = decoder.Commit(verdict.token);
    ended = step.end.has_value();
    on_step(step);
  }
  if (!ended && !rejected) {
    // Every drafted token stood: the target's next one comes free from the verify step.
    const DecodeStep step = decoder.Commit(decoder.Draw(target_at(lookahead)));
    ended = step.end.has_value();
    on_step(step);
  }
  cache.Truncate(static_cast<int>(decoder.context().size()) - 1);
  return ended;
}

}  // namespace anyprec
