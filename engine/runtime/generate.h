// One sequence run alone to its end, the plainest way the engine generates: the prompt in one
// step, then one token per step, or one speculative cycle per step. `anyprec generate`, the
// tests that compare other paths against it and the benchmarks run it; the server's scheduler
// batches sequences instead.
#pragma once

#include <functional>
#include <optional>

#include "absl/status/statusor.h"
#include "engine/runtime/decoder.h"
#include "engine/runtime/speculative.h"
#include "engine/runtime/transformer.h"

namespace anyprec {

// Runs `decoder`'s sequence at `bits` in `cache` (empty, with room for decoder.max_positions())
// until it ends, handing each step to `on_step`; speculatively when `speculative` is set (its
// counts are returned, zero otherwise).
absl::StatusOr<SpeculativeCounts> GenerateAlone(Transformer& transformer, KvCache& cache, Decoder& decoder, int bits,
                                                const std::optional<SpeculativeOptions>& speculative,
                                                const std::function<void(const DecodeStep&)>& on_step);

}  // namespace anyprec
