#include "engine/tokenizer/added_tokens.h"

#include <cctype>

#include "engine/tokenizer/utf8.h"

namespace anyprec {
namespace {

bool IsWordByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

// Length of the whitespace character ending right before `pos`, or 0.
size_t WhitespaceBefore(std::string_view s, size_t pos) {
  for (size_t n = 1; n <= 4 && n <= pos; ++n) {
    const std::string_view ch = s.substr(pos - n, n);
    if (utf8::SequenceLength(ch) == n && utf8::IsWhitespace(utf8::DecodeCodePoint(ch, n))) return n;
  }
  return 0;
}

size_t WhitespaceAt(std::string_view s, size_t pos) {
  const size_t n = utf8::SequenceLength(s.substr(pos));
  return n > 0 && utf8::IsWhitespace(utf8::DecodeCodePoint(s.substr(pos), n)) ? n : 0;
}

uint64_t EdgeKey(int32_t node, char byte) { return (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(byte); }

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized) : ends_(1) {
  for (const AddedToken& t : tokens) {
    if (t.normalized != normalized || t.content.empty()) continue;
    int32_t node = 0;
    for (char c : t.content) {
      const auto [edge, inserted] = edges_.try_emplace(EdgeKey(node, c), static_cast<int32_t>(ends_.size()));
      if (inserted) ends_.emplace_back();
      node = edge->second;
    }
    ends_[node].push_back(static_cast<int32_t>(tokens_.size()));
    first_bytes_[static_cast<uint8_t>(t.content[0])] = true;
    tokens_.push_back(t);
  }
}

const AddedToken* AddedTokenMatcher::LongestAt(std::string_view text, size_t pos) const {
  const AddedToken* best = nullptr;
  int32_t node = 0;
  for (size_t end = pos + 1; end <= text.size(); ++end) {
    const auto edge = edges_.find(EdgeKey(node, text[end - 1]));
    if (edge == edges_.end()) break;
    node = edge->second;
    for (int32_t index : ends_[node]) {
      const AddedToken& t = tokens_[index];
      if (t.single_word && ((pos > 0 && IsWordByte(text[pos - 1])) || (end < text.size() && IsWordByte(text[end])))) continue;
      best = &t;
      break;
    }
  }
  return best;
}

std::vector<TextSegment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<TextSegment> segments;
  size_t plain_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* best = first_bytes_[static_cast<uint8_t>(text[pos])] ? LongestAt(text, pos) : nullptr;
    if (best == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t end = pos + best->content.size();
    if (best->lstrip) {
      while (start > plain_start) {
        const size_t n = WhitespaceBefore(text, start);
        if (n == 0) break;
        start -= n;
      }
    }
    if (best->rstrip) {
      while (end < text.size()) {
        const size_t n = WhitespaceAt(text, end);
        if (n == 0) break;
        end += n;
      }
    }
    if (start > plain_start) segments.push_back({text.substr(plain_start, start - plain_start), plain_start});
    segments.push_back({text.substr(start, end - start), start, best->id});
    plain_start = pos = end;
  }
  if (plain_start < text.size()) segments.push_back({text.substr(plain_start), plain_start});
  return segments;
}

}  // namespace anyprec
