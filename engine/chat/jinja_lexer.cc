#include "engine/chat/jinja_lexer.h"

#include <algorithm>
#include <charconv>

#include "engine/chat/jinja_strings.h"

namespace anyprec::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

int HexDigit(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The character a one-letter escape stands for (\\n, \\t, \\', …), or '\\0'.
char SimpleEscape(char escape) {
  switch (escape) {
    case '\\': return '\\';
    case '\'': return '\'';
    case '"': return '"';
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'a': return '\a';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'v': return '\v';
    default: return '\0';
  }
}

// Jinja's newline handling: "\r\n" and "\r" become "\n"; one final newline is dropped.
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string_view source, std::string_view name) : source_(NormalizeNewlines(source)), name_(name) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i) {
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < source_.size()) {
      const size_t open = FindTagOpening(pos);
      std::string text = source_.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      if (open == std::string::npos) {
        AddText(std::move(text), pos);
        break;
      }
      const char kind = source_[open + 1];
      const char control = open + 2 < source_.size() ? source_[open + 2] : '\0';
      const bool has_control = control == '-' || (control == '+' && kind != '{');
      if (control == '-') {
        text.erase(std::find_if(text.rbegin(), text.rend(), [](char c) { return !IsSpace(c); }).base(), text.end());
      } else if (control != '+' && kind != '{') {
        // lstrip_blocks: only spaces and tabs between the line's start and the tag.
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            std::all_of(text.begin() + static_cast<std::ptrdiff_t>(line_start), text.end(), IsSpace)) {
          text.resize(line_start);
        }
      }
      AddText(std::move(text), pos);
      pos = open + 2 + (has_control ? 1 : 0);
      if (kind == '#') {
        const size_t close = source_.find("#}", pos);
        if (close == std::string::npos) return Error(open, "unterminated comment: '{#' without '#}'");
        pos = AfterBlockEnd(close + 2, close > open + 2 ? source_[close - 1] : '\0');
      } else {
        const absl::Status status = LexTag(open, kind == '%', pos);
        if (!status.ok()) return status;
      }
      line_starting = pos > 0 && source_[pos - 1] == '\n';
    }
    tokens_.push_back(Token{TokenKind::kEnd, LocationAt(source_.size()), ""});
    return std::move(tokens_);
  }

 private:
  Location LocationAt(size_t pos) const {
    const auto line = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos) - line_starts_.begin();
    return Location{static_cast<int>(line), static_cast<int>(pos - line_starts_[line - 1]) + 1};
  }

  absl::Status Error(size_t pos, std::string_view message) const { return LocatedError(name_, LocationAt(pos), message); }

  size_t FindTagOpening(size_t pos) const {
    for (size_t i = source_.find('{', pos); i != std::string::npos; i = source_.find('{', i + 1)) {
      if (i + 1 < source_.size() && (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void AddText(std::string text, size_t pos) {
    if (!text.empty()) tokens_.push_back(Token{TokenKind::kText, LocationAt(pos), std::move(text)});
  }

  // Where text resumes after a block tag or comment that ends just before `pos`, `control`
  // being the character before its closing delimiter: `-` strips all whitespace, `+` keeps it,
  // else trim_blocks drops one newline.
  size_t AfterBlockEnd(size_t pos, char control) const {
    if (control == '-') {
      while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
    } else if (control != '+' && pos < source_.size() && source_[pos] == '\n') {
      ++pos;
    }
    return pos;
  }

  // The tokens of a {% … %} (is_block) or {{ … }} tag opened at `open`, from `pos` past its
  // opening delimiter; `pos` ends past its closing delimiter.
  absl::Status LexTag(size_t open, bool is_block, size_t& pos) {
    tokens_.push_back(Token{is_block ? TokenKind::kBlockBegin : TokenKind::kVariableBegin, LocationAt(open), ""});
    const std::string_view close = is_block ? "%}" : "}}";
    std::vector<size_t> brackets;  // where each open bracket is
    while (true) {
      while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
      if (pos >= source_.size() && !brackets.empty()) {
        return Error(brackets.back(), absl::StrCat("'", std::string(1, source_[brackets.back()]), "' is never closed"));
      }
      if (pos >= source_.size()) return Error(open, is_block ? "unterminated tag: '{%' without '%}'" : "unterminated tag: '{{' without '}}'");
      const std::string_view rest = std::string_view(source_).substr(pos);
      if (brackets.empty()) {
        const bool strip = rest.size() > 2 && (rest[0] == '-' || (is_block && rest[0] == '+')) && rest.substr(1, 2) == close;
        if (strip || rest.substr(0, 2) == close) {
          tokens_.push_back(Token{is_block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd, LocationAt(pos), ""});
          const char control = strip ? rest[0] : '\0';
          pos += strip ? 3 : 2;
          // trim_blocks applies to block tags only; `-}}` strips as `-%}` does.
          if (is_block || control == '-') pos = AfterBlockEnd(pos, control);
          return absl::OkStatus();
        }
      }
      const absl::Status status = LexToken(pos, brackets);
      if (!status.ok()) return status;
    }
  }

  // One token at `pos`; `brackets` holds where the brackets open at `pos` are.
  absl::Status LexToken(size_t& pos, std::vector<size_t>& brackets) {
    const size_t start = pos;
    const char c = source_[pos];
    if (IsNameStart(c)) {
      while (pos < source_.size() && IsNameChar(source_[pos])) ++pos;
      tokens_.push_back(Token{TokenKind::kName, LocationAt(start), source_.substr(start, pos - start)});
      return absl::OkStatus();
    }
    if (IsDigit(c)) return LexNumber(pos);
    if (c == '\'' || c == '"') return LexString(pos);
    static constexpr std::string_view kTwoCharOperators[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const std::string_view op : kTwoCharOperators) {
      if (std::string_view(source_).substr(pos, 2) == op) {
        pos += 2;
        tokens_.push_back(Token{TokenKind::kOperator, LocationAt(start), std::string(op)});
        return absl::OkStatus();
      }
    }
    if (std::string_view("+-*/%~<>=.,:|()[]{}").find(c) == std::string_view::npos) {
      return Error(start, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
    if (c == '(' || c == '[' || c == '{') brackets.push_back(start);
    // A closing bracket closes only its own kind; the parser reports one that does not match.
    static constexpr std::string_view kPairs[] = {"()", "[]", "{}"};
    for (const std::string_view pair : kPairs) {
      if (c == pair[1] && !brackets.empty() && source_[brackets.back()] == pair[0]) brackets.pop_back();
    }
    ++pos;
    tokens_.push_back(Token{TokenKind::kOperator, LocationAt(start), std::string(1, c)});
    return absl::OkStatus();
  }

  // An integer, or a float with a fraction or an exponent; after '.', always an integer (x.0.1
  // is two subscripts). Underscores between digits are ignored, as in Python.
  absl::Status LexNumber(size_t& pos) {
    const size_t start = pos;
    const bool after_dot = !tokens_.empty() && tokens_.back().kind == TokenKind::kOperator && tokens_.back().text == ".";
    std::string digits;
    const auto take_digits = [&] {
      while (pos < source_.size() && (IsDigit(source_[pos]) || (source_[pos] == '_' && pos + 1 < source_.size() && IsDigit(source_[pos + 1])))) {
        if (source_[pos] != '_') digits += source_[pos];
        ++pos;
      }
    };
    take_digits();
    bool is_float = false;
    if (!after_dot && pos + 1 < source_.size() && source_[pos] == '.' && IsDigit(source_[pos + 1])) {
      is_float = true;
      digits += source_[pos++];
      take_digits();
    }
    if (!after_dot && pos < source_.size() && (source_[pos] == 'e' || source_[pos] == 'E')) {
      const size_t sign = pos + 1 < source_.size() && (source_[pos + 1] == '+' || source_[pos + 1] == '-') ? 1 : 0;
      if (pos + 1 + sign < source_.size() && IsDigit(source_[pos + 1 + sign])) {
        is_float = true;
        digits += 'e';
        if (sign) digits += source_[pos + 1];
        pos += 1 + sign;
        take_digits();
      }
    }
    Token token{is_float ? TokenKind::kFloat : TokenKind::kInteger, LocationAt(start), digits};
    const char* end = digits.data() + digits.size();
    const auto result = is_float ? std::from_chars(digits.data(), end, token.number) : std::from_chars(digits.data(), end, token.integer);
    if (result.ec != std::errc() || result.ptr != end) return Error(start, absl::StrCat("number '", digits, "' is out of range"));
    tokens_.push_back(std::move(token));
    return absl::OkStatus();
  }

  // A quoted string with Python's escapes (\n, \t, \xHH, \uHHHH, \UHHHHHHHH, octal, …);
  // unknown escapes keep their backslash, as Python's do.
  absl::Status LexString(size_t& pos) {
    const size_t start = pos;
    const char quote = source_[pos++];
    std::string value;
    while (true) {
      if (pos >= source_.size()) return Error(start, "unterminated string literal");
      const char c = source_[pos++];
      if (c == quote) break;
      if (c != '\\' || pos >= source_.size()) {
        value += c;
        continue;
      }
      const char escape = source_[pos++];
      if (const char simple = SimpleEscape(escape)) {
        value += simple;
      } else if (escape == '\n') {
        continue;  // a line continuation
      } else if (escape >= '0' && escape <= '7') {
        char32_t code = static_cast<char32_t>(escape - '0');
        for (int k = 0; k < 2 && pos < source_.size() && source_[pos] >= '0' && source_[pos] <= '7'; ++k) code = code * 8 + static_cast<char32_t>(source_[pos++] - '0');
        AppendUtf8(code, value);
      } else if (escape == 'x' || escape == 'u' || escape == 'U') {
        const int length = escape == 'x' ? 2 : escape == 'u' ? 4 : 8;
        char32_t code = 0;
        for (int k = 0; k < length; ++k) {
          const int digit = pos < source_.size() ? HexDigit(source_[pos]) : -1;
          if (digit < 0) return Error(pos - 2 - static_cast<size_t>(k), absl::StrCat("truncated \\", std::string(1, escape), " escape"));
          code = code * 16 + static_cast<char32_t>(digit);
          ++pos;
        }
        if (code > 0x10FFFF) return Error(pos - static_cast<size_t>(length) - 2, "escape past U+10FFFF");
        AppendUtf8(code, value);
      } else {
        value += '\\';
        value += escape;
      }
    }
    tokens_.push_back(Token{TokenKind::kString, LocationAt(start), std::move(value)});
    return absl::OkStatus();
  }

  const std::string source_;
  const std::string_view name_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source, std::string_view name) { return Lexer(source, name).Run(); }

}  // namespace anyprec::jinja
