// Byte-pair encoding of one pre-tokenized word: symbols start as the word's characters
// (or their <0xNN> byte tokens, or <unk>) and the lowest-ranked adjacent pair is merged
// until none is left. A heap over pair positions makes this O(n log n), so one word of a
// whole megabyte (a tokenizer without a pre-tokenizer) still encodes quickly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/token_id.h"

namespace anyprec {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  struct Merge {
    uint32_t rank;
    TokenId result;
  };

  // `vocab` maps pieces to ids; `merges` maps a pair of ids to its rank and result.
  // `ignore_merges`: a word found whole in the vocabulary is one token (Llama-3).
  BpeModel(TokenMap vocab, std::unordered_map<uint64_t, Merge> merges, bool byte_fallback,
           std::optional<TokenId> unk, bool fuse_unk, bool ignore_merges = false);

  static uint64_t PairKey(TokenId left, TokenId right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  // Appends the ids of `word` to `out`.
  void EncodeWord(std::string_view word, std::vector<TokenId>& out) const;

  std::optional<TokenId> Find(std::string_view piece) const;
  const TokenMap& vocab() const { return vocab_; }

 private:
  struct Symbol {
    TokenId id;
    int prev;
    int next;
    bool alive;
  };
  void InitialSymbols(std::string_view word, std::vector<Symbol>& symbols) const;

  TokenMap vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  bool byte_fallback_;
  std::optional<TokenId> unk_;
  bool fuse_unk_;
  bool ignore_merges_;
  TokenId byte_tokens_[256];  // -1 where the vocabulary lacks <0xNN>
};

}  // namespace anyprec
