// Self-speculative decoding from one any-precision image: the model at a low width drafts
// tokens, the model at the requested width checks them all in one step, and the output is
// exactly the requested width's (token for token when greedy; in distribution when sampling,
// by Sampler::Verify). The draft costs no weight memory: its planes are a prefix of the
// target's.
//
// The draft shares the target's KV cache. A cycle starts with the cache holding the context
// but its last token, at the target width. Drafting k tokens runs k single-token steps at the
// draft width, which write k positions at that width; the cache is then cut back, and the
// verify step runs the context's last token and the k drafted ones at the target width,
// rewriting those positions. After the verdicts the cache is cut to the committed context
// again, so every position it keeps was computed at the target width.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/decoder.h"
#include "engine/runtime/transformer.h"

namespace anyprec {

// Tokens drafted per cycle when a caller names no number, and the most a cycle may draft.
inline constexpr int kDefaultLookahead = 4;
inline constexpr int kMaxLookahead = 16;

struct SpeculativeOptions {
  int draft_bits = 0;                  // a width the image serves, below the target's
  int lookahead = kDefaultLookahead;  // tokens drafted per cycle, at most
};

// Tokens drafted and accepted, and verify steps run.
struct SpeculativeCounts {
  long drafted = 0;
  long accepted = 0;
  long cycles = 0;
  double acceptance_rate() const { return drafted > 0 ? static_cast<double>(accepted) / drafted : 0; }
};

// Checks that the draft width is one the model serves below `target_bits` and the lookahead
// is in 1..kMaxLookahead.
absl::Status ValidateSpeculation(const ModelConfig& config, int target_bits, const SpeculativeOptions& options);

// A cycle's drafted tokens and the distributions they were drawn from.
struct Draft {
  std::vector<TokenId> tokens;
  std::vector<TokenDistribution> distributions;
};

// The tokens a cycle drafts for `decoder`'s sequence: the lookahead, less where the sequence's
// length limit leaves no room for that many and one more.
int CycleLookahead(const Decoder& decoder, const SpeculativeOptions& options);

// The token the next draft step runs: the context's last, then each drafted one.
TokenId DraftInput(const Decoder& decoder, const Draft& draft);
// Draws the next drafted token from the draft width's logits after the context and `draft`.
void DrawDraft(Decoder& decoder, std::span<const float> logits, Draft& draft);
// The verify step's tokens: the context's last token, then the drafted ones.
std::vector<TokenId> VerifyInput(const Decoder& decoder, const Draft& draft);

// The verdicts on `draft` from the verify step's logits, a row per input (the context's last
// token, then each drafted one): commits the accepted tokens and the token drawn after them,
// each handed to `on_step` with the logits row it was chosen from, stopping at the first that
// ends the sequence. Returns whether the sequence ended.
bool CommitVerdicts(Decoder& decoder, const Draft& draft, std::span<const float> logits, int vocab,
                    const std::function<void(const DecodeStep&, std::span<const float>)>& on_step, SpeculativeCounts& counts);

// One cycle for `decoder`'s sequence, whose context but its last token `cache` holds: drafts up
// to options.lookahead tokens (fewer where the sequence's length limit is near), verifies them at
// `target_bits`, commits the accepted ones and the token drawn after them, each handed to
// `on_step` as Decoder::Commit returns it, and stops at the first that ends the sequence. The
// cache then holds the new context but its last token. Returns whether the sequence ended.
absl::StatusOr<bool> RunSpeculativeCycle(Transformer& transformer, KvCache& cache, Decoder& decoder, int target_bits,
                                         const SpeculativeOptions& options, const std::function<void(const DecodeStep&)>& on_step,
                                         SpeculativeCounts& counts);

}  // namespace anyprec
