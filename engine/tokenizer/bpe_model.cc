#include "engine/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "engine/tokenizer/utf8.h"

namespace anyprec {

BpeModel::BpeModel(TokenMap vocab, std::unordered_map<uint64_t, Merge> merges, bool byte_fallback,
                   std::optional<TokenId> unk, bool fuse_unk, bool ignore_merges)
    : vocab_(std::move(vocab)),
      merges_(std::move(merges)),
      byte_fallback_(byte_fallback),
      unk_(unk),
      fuse_unk_(fuse_unk),
      ignore_merges_(ignore_merges) {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_tokens_[b] = Find(name).value_or(-1);
  }
}

std::optional<TokenId> BpeModel::Find(std::string_view piece) const {
  const auto it = vocab_.find(piece);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<Symbol>& symbols) const {
  bool previous_is_unk = false;
  const auto push = [&](TokenId id) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  size_t i = 0;
  while (i < word.size()) {
    size_t n = utf8::SequenceLength(word.substr(i));
    if (n == 0) n = 1;  // callers pass valid UTF-8; a stray byte is still handled as a character
    const std::string_view ch = word.substr(i, n);
    i += n;
    if (const auto id = Find(ch)) {
      push(*id);
      previous_is_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes_known = true;
      for (char c : ch) all_bytes_known = all_bytes_known && byte_tokens_[static_cast<uint8_t>(c)] >= 0;
      if (all_bytes_known) {
        for (char c : ch) push(byte_tokens_[static_cast<uint8_t>(c)]);
        previous_is_unk = false;
        continue;
      }
    }
    if (!unk_) continue;  // no way to represent it: HF drops the character too
    if (fuse_unk_ && previous_is_unk) continue;
    push(*unk_);
    previous_is_unk = true;
  }
  if (!symbols.empty()) symbols.back().next = -1;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<TokenId>& out) const {
  if (ignore_merges_) {
    if (const auto whole = Find(word)) {
      out.push_back(*whole);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  InitialSymbols(word, symbols);

  struct Candidate {
    uint32_t rank;
    int pos;
    TokenId result;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto consider = [&](int left) {
    const int right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.result});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    // The pair may have changed since this candidate was queued.
    const auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.result != top.result) continue;
    Symbol& right = symbols[left.next];
    right.alive = false;
    left.id = top.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back(s.id);
  }
}

}  // namespace anyprec
