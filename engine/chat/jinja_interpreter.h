// Renders a parsed template with Jinja's semantics as transformers uses them: variables in
// nested scopes (a for loop's body has its own; macros see their arguments and the template's
// top level), the loop object, namespaces, macros, and the globals range, namespace, dict,
// raise_exception and strftime_now. Each render is bounded: in work, in the size of any string
// (the output included), in the depth of nested evaluation (recursive macros) and of values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/chat/jinja_ast.h"
#include "engine/chat/jinja_value.h"

namespace anyprec::jinja {

// How deeply lists and dicts may nest, in the data passed in and in what a template builds.
inline constexpr int kMaxValueDepth = 100;

struct RenderLimits {
  int64_t max_work;
  size_t max_bytes;
};

// Errors: InvalidArgument "name:line:column: message" for a template that fails (raise_exception's
// message as it is, without a location), ResourceExhausted past a limit.
absl::StatusOr<std::string> Render(const Template& parsed, ValueDict variables, const RenderLimits& limits);

}  // namespace anyprec::jinja
