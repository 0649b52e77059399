#include "engine/chat/jinja_strings.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace anyprec::jinja {
namespace {

// The length of the UTF-8 sequence at text[i], or 1 where it is not well formed.
size_t SequenceLength(std::string_view text, size_t i) {
  const auto lead = static_cast<unsigned char>(text[i]);
  const size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
  if (length == 1 || i + length > text.size()) return 1;
  for (size_t k = 1; k < length; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 1;
  }
  return length;
}

char32_t DecodeSequence(std::string_view sequence) {
  const auto lead = static_cast<unsigned char>(sequence[0]);
  if (sequence.size() == 1) return lead;
  char32_t code = lead & (0x7F >> sequence.size());
  for (size_t k = 1; k < sequence.size(); ++k) code = (code << 6) | (static_cast<unsigned char>(sequence[k]) & 0x3F);
  return code;
}

bool IsPythonWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Whether the code point text[begin, end) is one that strip() removes.
class StripSet {
 public:
  explicit StripSet(const std::optional<std::string_view>& chars) : chars_(chars) {}
  bool Contains(std::string_view sequence) const {
    if (!chars_) return IsPythonWhitespace(DecodeSequence(sequence));
    const std::vector<size_t> offsets = CodePointOffsets(*chars_);
    for (size_t k = 0; k + 1 < offsets.size(); ++k) {
      if (chars_->substr(offsets[k], offsets[k + 1] - offsets[k]) == sequence) return true;
    }
    return false;
  }

 private:
  std::optional<std::string_view> chars_;
};

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char AsciiUpper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }
char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

void AppendHexEscape(const char* format, unsigned code, std::string& out) {
  char escaped[8];
  std::snprintf(escaped, sizeof(escaped), format, code);
  out += escaped;
}

}  // namespace

std::vector<size_t> CodePointOffsets(std::string_view text) {
  std::vector<size_t> offsets;
  offsets.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size(); i += SequenceLength(text, i)) offsets.push_back(i);
  offsets.push_back(text.size());
  return offsets;
}

void AppendUtf8(char32_t code, std::string& out) {
  if ((code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) code = 0xFFFD;
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

size_t CodePointCount(std::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); i += SequenceLength(text, i)) ++count;
  return count;
}

std::string StripText(std::string_view text, const std::optional<std::string_view>& chars, bool left, bool right) {
  const StripSet strip(chars);
  const std::vector<size_t> offsets = CodePointOffsets(text);
  size_t first = 0;
  size_t last = offsets.size() - 1;  // code points [first, last) remain
  const auto code_point = [&](size_t k) { return text.substr(offsets[k], offsets[k + 1] - offsets[k]); };
  while (left && first < last && strip.Contains(code_point(first))) ++first;
  while (right && last > first && strip.Contains(code_point(last - 1))) --last;
  return std::string(text.substr(offsets[first], offsets[last] - offsets[first]));
}

std::vector<std::string> SplitText(std::string_view text, const std::optional<std::string_view>& separator, int64_t max_splits) {
  std::vector<std::string> pieces;
  if (separator) {
    size_t start = 0;
    for (int64_t splits = 0; max_splits < 0 || splits < max_splits; ++splits) {
      const size_t found = text.find(*separator, start);
      if (found == std::string_view::npos) break;
      pieces.emplace_back(text.substr(start, found - start));
      start = found + separator->size();
    }
    pieces.emplace_back(text.substr(start));
    return pieces;
  }
  const std::vector<size_t> offsets = CodePointOffsets(text);
  const size_t count = offsets.size() - 1;
  const auto is_space = [&](size_t k) { return IsPythonWhitespace(DecodeSequence(text.substr(offsets[k], offsets[k + 1] - offsets[k]))); };
  size_t k = 0;
  for (int64_t splits = 0;; ++splits) {
    while (k < count && is_space(k)) ++k;
    if (k == count) break;
    if (max_splits >= 0 && splits == max_splits) {
      pieces.emplace_back(text.substr(offsets[k]));
      break;
    }
    const size_t start = k;
    while (k < count && !is_space(k)) ++k;
    pieces.emplace_back(text.substr(offsets[start], offsets[k] - offsets[start]));
  }
  return pieces;
}

std::string ReplaceText(std::string_view text, std::string_view from, std::string_view to, int64_t count) {
  std::string out;
  if (from.empty()) {
    const std::vector<size_t> offsets = CodePointOffsets(text);
    for (size_t k = 0; k < offsets.size(); ++k) {
      if (count < 0 || static_cast<int64_t>(k) < count) out += to;
      if (k + 1 < offsets.size()) out += text.substr(offsets[k], offsets[k + 1] - offsets[k]);
    }
    return out;
  }
  size_t start = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    const size_t found = text.find(from, start);
    if (found == std::string_view::npos) break;
    out += text.substr(start, found - start);
    out += to;
    start = found + from.size();
  }
  out += text.substr(start);
  return out;
}

std::string UpperText(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = AsciiUpper(c);
  return out;
}

std::string LowerText(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

std::string CapitalizeText(std::string_view text) {
  std::string out = LowerText(text);
  if (!out.empty()) out[0] = AsciiUpper(out[0]);
  return out;
}

std::string TitleText(std::string_view text) {
  std::string out(text);
  bool after_letter = false;
  for (char& c : out) {
    // Bytes of non-ASCII letters count as letters, so a word's ASCII tail stays lower case.
    const bool letter = IsAsciiLetter(c) || static_cast<unsigned char>(c) >= 0x80;
    c = after_letter ? AsciiLower(c) : AsciiUpper(c);
    after_letter = letter;
  }
  return out;
}

std::string PythonRepr(std::string_view text) {
  const char quote = text.find('\'') != std::string_view::npos && text.find('"') == std::string_view::npos ? '"' : '\'';
  std::string out(1, quote);
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7F) {
      AppendHexEscape("\\x%02x", b, out);
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

void AppendJsonString(std::string_view text, std::string& out) {
  out += '"';
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (b < 0x20) {
          AppendHexEscape("\\u%04x", b, out);
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  const std::string_view scientific(buffer, result.ptr - buffer);
  const size_t e = scientific.find('e');
  std::string digits;
  std::string out;
  for (const char c : scientific.substr(0, e)) {
    if (c == '-') {
      out += '-';
    } else if (c != '.') {
      digits += c;
    }
  }
  int exponent = 0;
  std::from_chars(scientific.data() + e + (scientific[e + 1] == '+' ? 2 : 1), scientific.data() + scientific.size(), exponent);
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return out + "0." + std::string(-exponent - 1, '0') + digits;
    const auto whole = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= whole) return out + digits + std::string(whole - digits.size(), '0') + ".0";
    return out + digits.substr(0, whole) + "." + digits.substr(whole);
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += '.';
    out.append(digits, 1);
  }
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
  return out + exponent_text;
}

}  // namespace anyprec::jinja
