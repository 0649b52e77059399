// Added tokens (a tokenizer.json's `added_tokens`): strings matched whole in the input text
// before the rest of it is normalized and split into words.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/token_id.h"

namespace anyprec {

struct AddedToken {
  std::string content;
  TokenId id;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;  // matched in normalized text rather than in the raw input
  bool single_word = false;
};

// A piece of input text, or an added token found in it.
struct TextSegment {
  std::string_view text;
  size_t offset;       // byte offset of `text` in the string that was split
  TokenId token = -1;  // >= 0 for an added token
};

// Finds one kind of added tokens (those matched in raw text, or those matched in normalized
// text) with a byte trie, so that Gemma's 6415 added tokens cost a walk of a few bytes per
// position rather than a comparison with each of them.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // The tokens of `tokens` whose `normalized` flag equals `normalized`.
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized);

  // Splits `text` around the added tokens in it: at each position the longest token that
  // matches there (the first in file order among equal ones), extended over whitespace where
  // lstrip/rstrip ask for it.
  std::vector<TextSegment> Split(std::string_view text) const;

 private:
  // The longest token that matches at `pos` and whose single_word condition holds, or null.
  const AddedToken* LongestAt(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  // The bytes a token starts with: most positions of a text are passed over on this alone.
  std::array<bool, 256> first_bytes_{};
  // Trie node 0 is the root; an edge is keyed by (node << 8) | byte.
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<std::vector<int32_t>> ends_;  // node -> indices in tokens_ of the tokens ending there
};

}  // namespace anyprec
