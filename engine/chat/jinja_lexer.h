// Cuts a template into tokens: text, and the contents of {{ … }} and {% … %} tags, with comments
// dropped. Whitespace is handled as transformers configures Jinja (trim_blocks, lstrip_blocks):
// a newline right after a block tag or comment is dropped, spaces and tabs before a block tag
// or comment at the start of a line are dropped, `-` beside a delimiter ({%-, -%}, {{-, -}},
// {#-, -#}) strips all whitespace on that side, `+` ({%+, +%}) keeps it. Line endings become
// "\n" and one newline at the end of the template is dropped (Jinja's keep_trailing_newline off).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/jinja_ast.h"

namespace anyprec::jinja {

enum class TokenKind {
  kText,           // text: the literal text
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,           // text: the identifier
  kString,         // text: the decoded string literal
  kInteger,        // integer
  kFloat,          // number
  kOperator,       // text: the operator or bracket
  kEnd,            // end of the template
};

struct Token {
  TokenKind kind;
  Location location;
  std::string text;
  int64_t integer = 0;
  double number = 0;
};

// Errors (InvalidArgument) read "name:line:column: message".
absl::StatusOr<std::vector<Token>> Lex(std::string_view source, std::string_view name);

}  // namespace anyprec::jinja
