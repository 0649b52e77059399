// Builds the syntax tree of a template from its tokens: Jinja's statements (if/elif/else, for
// with a condition and else, set, block set, set of a namespace attribute, macro, filter
// blocks, break/continue, transformers' generation block) and expressions with Jinja's
// precedence. Filters and tests are checked by name here. Nesting is bounded, so hostile
// input ends in an error, never in a deep recursion.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat/jinja_ast.h"

namespace anyprec::jinja {

// The deepest nesting of blocks and of expressions that a template may have.
inline constexpr int kMaxNesting = 64;
inline constexpr int kMaxExpressionDepth = 128;

// Errors (InvalidArgument) read "name:line:column: message".
absl::StatusOr<Template> ParseTemplate(std::string_view source, std::string name);

}  // namespace anyprec::jinja
