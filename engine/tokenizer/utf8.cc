#include "engine/tokenizer/utf8.h"

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "utf8proc.h"

namespace anyprec::utf8 {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Expected length from the lead byte, and the valid range of the second byte
// (which rules out overlongs, surrogates and code points above U+10FFFF).
struct Lead {
  size_t length;
  uint8_t second_min;
  uint8_t second_max;
};

Lead ClassifyLead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of leading bytes of `s` that agree with a well-formed sequence (at most its length).
size_t MatchingPrefix(std::string_view s, const Lead& lead) {
  size_t i = 1;
  for (; i < lead.length && i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    const bool ok = i == 1 ? (b >= lead.second_min && b <= lead.second_max) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  return i;
}

}  // namespace

size_t SequenceLength(std::string_view s) {
  if (s.empty()) return 0;
  const Lead lead = ClassifyLead(static_cast<uint8_t>(s[0]));
  if (lead.length == 0) return 0;
  return MatchingPrefix(s, lead) == lead.length ? lead.length : 0;
}

bool IsIncompletePrefix(std::string_view s) {
  if (s.empty()) return false;
  const Lead lead = ClassifyLead(static_cast<uint8_t>(s[0]));
  return lead.length > s.size() && MatchingPrefix(s, lead) == s.size();
}

char32_t DecodeCodePoint(std::string_view s, size_t length) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  if (length == 1) return b0;
  char32_t cp = b0 & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (static_cast<uint8_t>(s[i]) & 0x3F);
  return cp;
}

void AppendCodePoint(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// Appends the valid text at the start of `s` and returns how many bytes were consumed;
// stops before an incomplete trailing sequence when `keep_incomplete_tail` is set.
size_t AppendValid(std::string_view s, bool keep_incomplete_tail, std::string& out) {
  size_t i = 0;
  while (i < s.size()) {
    const std::string_view rest = s.substr(i);
    if (const size_t n = SequenceLength(rest); n > 0) {
      out.append(rest.substr(0, n));
      i += n;
      continue;
    }
    if (keep_incomplete_tail && IsIncompletePrefix(rest)) break;
    const Lead lead = ClassifyLead(static_cast<uint8_t>(rest[0]));
    out.append(kReplacement);
    i += lead.length == 0 ? 1 : MatchingPrefix(rest, lead);
  }
  return i;
}

}  // namespace

bool IsValid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = SequenceLength(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string Sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  AppendValid(s, /*keep_incomplete_tail=*/false, out);
  return out;
}

void DrainComplete(std::string& pending, std::string& out) {
  const size_t consumed = AppendValid(pending, /*keep_incomplete_tail=*/true, out);
  pending.erase(0, consumed);
}

bool IsWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::string Nfc(std::string_view s) {
  utf8proc_uint8_t* composed = nullptr;
  // An explicit length rather than UTF8PROC_NULLTERM: the text may contain NUL characters.
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                                          &composed, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(composed, &std::free);
  // utf8proc fails only on ill-formed input, which callers never pass, or when out of memory.
  if (n < 0) return std::string(s);
  return std::string(reinterpret_cast<const char*>(composed), static_cast<size_t>(n));
}

}  // namespace anyprec::utf8
