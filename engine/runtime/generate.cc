#include "engine/runtime/generate.h"

#include <vector>

#include "engine/base/status_macros.h"

namespace anyprec {

absl::StatusOr<SpeculativeCounts> GenerateAlone(Transformer& transformer, KvCache& cache, Decoder& decoder, int bits,
                                                const std::optional<SpeculativeOptions>& speculative,
                                                const std::function<void(const DecodeStep&)>& on_step) {
  std::vector<float> logits(transformer.config().vocab_size);
  ForwardOptions forward;
  forward.bits = bits;
  SpeculativeCounts counts;
  // The prompt and the first token; each later step runs the context's last token.
  std::span<const TokenId> step = decoder.context();
  for (;;) {
    if (speculative && cache.length() > 0) {
      ASSIGN_OR_RETURN(const bool ended, RunSpeculativeCycle(transformer, cache, decoder, bits, *speculative, on_step, counts));
      if (ended) return counts;
      continue;
    }
    RETURN_IF_ERROR(transformer.Forward(step, cache, LogitsFor::kLastToken, logits, forward));
    const DecodeStep decoded = decoder.Next(logits);
    on_step(decoded);
    if (decoded.end) return counts;
    step = std::span<const TokenId>(decoder.context()).last(1);
  }
}

}  // namespace anyprec
