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
  if (options.lookahead < 1 || options.lookahead > kMaxLookahead) {
    return absl::InvalidArgumentError(absl::StrCat("lookahead must be in 1..", kMaxLookahead, ", got ", options.lookahead));
  }
  return absl::OkStatus();
}

int CycleLookahead(const Decoder& decoder, const SpeculativeOptions& options) {
  return std::clamp(decoder.max_positions() - static_cast<int>(decoder.context().size()) - 1, 0, options.lookahead);
}

TokenId DraftInput(const Decoder& decoder, const Draft& draft) {
  return draft.tokens.empty() ? decoder.context().back() : draft.tokens.back();
}

std::vector<TokenId> VerifyInput(const Decoder& decoder, const Draft& draft) {
  std::vector<TokenId> tokens = {decoder.context().back()};
  tokens.insert(tokens.end(), draft.tokens.begin(), draft.tokens.end());
  return tokens;
}

void DrawDraft(Decoder& decoder, std::span<const float> logits, Draft& draft) {
  draft.distributions.push_back(decoder.Distribution(logits, draft.tokens));
  draft.tokens.push_back(decoder.Draw(draft.distributions.back()));
}

bool CommitVerdicts(Decoder& decoder, const Draft& draft, std::span<const float> logits, int vocab,
                    const std::function<void(const DecodeStep&, std::span<const float>)>& on_step, SpeculativeCounts& counts) {
  const int drafted = static_cast<int>(draft.tokens.size());
  ++counts.cycles;
  counts.drafted += drafted;
  for (int j = 0; j <= drafted; ++j) {
    const std::span<const float> row = logits.subspan(static_cast<size_t>(j) * vocab, vocab);
    const TokenDistribution target = decoder.Distribution(row, std::span(draft.tokens).first(j));
    // Past the last drafted token, every one stood: the target's next token comes free.
    const Verdict verdict = j < drafted ? decoder.Verify(target, draft.distributions[j], draft.tokens[j]) : Verdict{decoder.Draw(target), false};
    counts.accepted += j < drafted && verdict.accepted;
    const DecodeStep step = decoder.Commit(verdict.token);
    on_step(step, row);
    if (step.end) return true;
    if (!verdict.accepted) return false;
  }
  return false;
}

absl::StatusOr<bool> RunSpeculativeCycle(Transformer& transformer, KvCache& cache, Decoder& decoder, int target_bits,
                                         const SpeculativeOptions& options, const std::function<void(const DecodeStep&)>& on_step,
                                         SpeculativeCounts& counts) {
  const int vocab = transformer.config().vocab_size;
  const int context = static_cast<int>(decoder.context().size());
  if (cache.length() != context - 1) {
    return absl::FailedPreconditionError(absl::StrCat("the cache holds ", cache.length(), " positions, not the context's ", context, " less one"));
  }
  const int lookahead = CycleLookahead(decoder, options);
  // Draft: single-token steps at the draft width.
  Draft draft;
  std::vector<float> logits(static_cast<size_t>(lookahead + 1) * vocab);
  ForwardOptions draft_forward;
  draft_forward.bits = options.draft_bits;
  for (int j = 0; j < lookahead; ++j) {
    const TokenId input = DraftInput(decoder, draft);
    const std::span<float> row(logits.data(), vocab);
    RETURN_IF_ERROR(transformer.Forward(std::span(&input, 1), cache, LogitsFor::kLastToken, row, draft_forward));
    DrawDraft(decoder, row, draft);
  }
  cache.Truncate(context - 1);

  // Verify: the context's last token and the drafted ones in one step at the target width.
  const std::vector<TokenId> tokens = VerifyInput(decoder, draft);
  ForwardOptions target_forward;
  target_forward.bits = target_bits;
  RETURN_IF_ERROR(transformer.Forward(tokens, cache, LogitsFor::kAllTokens, logits, target_forward));
  const bool ended = CommitVerdicts(decoder, draft, logits, vocab, [&](const DecodeStep& step, std::span<const float>) { on_step(step); }, counts);
  cache.Truncate(static_cast<int>(decoder.context().size()) - 1);
  return ended;
}

}  // namespace anyprec
