// A token's index in a vocabulary: what the tokenizer, the decoding rules and the API exchange.
#pragma once

#include <cstdint>

namespace anyprec {

using TokenId = int32_t;

}  // namespace anyprec
