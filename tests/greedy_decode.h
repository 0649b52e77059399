// The plainest greedy decode: one sequence, one token per step, nothing else running. Tests
// compare batched, scheduled and served generation against it.
#pragma once

#include <vector>

#include "engine/runtime/transformer.h"

namespace anyprec::testing {

std::vector<TokenId> GreedyDecode(const Model& model, std::vector<TokenId> prompt, int steps);

}  // namespace anyprec::testing
