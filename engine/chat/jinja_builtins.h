// Jinja's filters and tests, and the Python methods of str and dict, as far as chat templates
// use them (the parser refuses a filter or test this file does not know). They are functions
// of values; those that build strings or lists charge their size to the render's WorkBudget.
// Their errors carry no location: the interpreter adds the call's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/chat/jinja_value.h"

namespace anyprec::jinja {

// What a render may spend: work units (about one per node evaluated, loop iteration or 64
// bytes built) and the size of any string, the output included. Past either the render fails
// with ResourceExhausted.
class WorkBudget {
 public:
  WorkBudget(int64_t max_work, size_t max_bytes) : max_work_(max_work), max_bytes_(max_bytes) {}
  absl::Status Charge(int64_t units);
  // Charges for a string of `bytes` and refuses one past the size limit.
  absl::Status ChargeBytes(size_t bytes);
  size_t max_bytes() const { return max_bytes_; }

 private:
  int64_t max_work_;
  size_t max_bytes_;
  int64_t spent_ = 0;
};

struct CallArguments {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Matches `arguments` to `parameters` as Python does (positionally, then by name); a parameter
// that gets no argument is undefined. `callee` names the function in errors.
absl::StatusOr<std::vector<Value>> BindArguments(std::string_view callee, std::span<const std::string_view> parameters,
                                                 const CallArguments& arguments);

bool IsFilter(std::string_view name);
bool IsTest(std::string_view name);

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& operand, const CallArguments& arguments, WorkBudget& budget);
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& operand, const CallArguments& arguments);
// object.name(arguments) for str and dict methods.
absl::StatusOr<Value> CallMethod(const Value& object, std::string_view name, const CallArguments& arguments, WorkBudget& budget);

// object.name as Jinja looks it up: a dict's entry or a namespace's attribute; undefined when
// there is none. A dotted `name` ("function.name") looks up each part in turn, and numeric
// parts index lists, as filters' attribute arguments do.
Value LookupAttribute(const Value& object, std::string_view name);

// The items a for loop or a filter iterates: a list's items, a dict's keys, a string's code
// points; nothing for undefined.
absl::StatusOr<ValueList> Iterate(const Value& value);

}  // namespace anyprec::jinja
