// The values a Jinja template computes with: Python's data model as far as chat templates reach
// it. Undefined (a missing variable, which Jinja prints as "" and treats as false), none, bool,
// int, float, str, list, dict (string keys, insertion order, as Python's dict keeps them),
// namespace (the one mutable object, shared by reference) and callables (built-in functions and
// macros). Lists and dicts are immutable and shared, so copying a Value is cheap; each knows its
// nesting depth, which the interpreter bounds so that every recursive walk of a value is bounded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace anyprec::jinja {

struct MacroStmt;  // jinja_ast.h
class Value;

using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<std::string, Value>>;

enum class BuiltinFunction { kRange, kNamespace, kDict, kRaiseException, kStrftimeNow };

struct Namespace {
  ValueDict attributes;
};

struct Callable {
  std::string name;
  std::variant<BuiltinFunction, const MacroStmt*> target;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  // Undefined; `name` says what was missing, for error messages.
  explicit Value(std::string undefined_name = "");
  static Value None();
  static Value Bool(bool value);
  static Value Int(int64_t value);
  static Value Float(double value);
  static Value String(std::string value);
  static Value List(ValueList items);
  static Value Dict(ValueDict entries);  // later entries replace earlier ones with the same key
  // A namespace lives in the render that made it (Interpreter's arena), not in its values: a
  // namespace may hold itself (`set ns.x = ns`), which owning pointers would leak.
  static Value NamespaceAt(Namespace& ns);
  static Value MakeCallable(Callable callable);

  Kind kind() const;
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  // int or bool (Python's bool is an int), and float.
  bool is_integer() const { return kind() == Kind::kInt || kind() == Kind::kBool; }
  bool is_number() const { return is_integer() || kind() == Kind::kFloat; }

  // Each requires the matching kind; AsInt also takes a bool, AsFloat any number.
  bool AsBool() const;
  int64_t AsInt() const;
  double AsFloat() const;
  const std::string& AsString() const;
  const ValueList& AsList() const;
  const ValueDict& AsDict() const;
  Namespace& AsNamespace() const;
  const Callable& AsCallable() const;
  const std::string& undefined_name() const;

  // The entry of a dict (or attribute of a namespace) named `key`, or null.
  const Value* Find(std::string_view key) const;
  // 0 for everything but lists and dicts; one more than the deepest element for them.
  int depth() const;
  // Python's truth value (undefined is false).
  bool Truthy() const;
  // Python's type name, for error messages ("str", "int", "dict", "undefined", ...).
  const char* TypeName() const;

 private:
  struct Undefined {
    std::string name;
  };
  struct ListData;
  struct DictData;
  std::variant<Undefined, std::monostate, bool, int64_t, double, std::string, std::shared_ptr<const ListData>,
               std::shared_ptr<const DictData>, Namespace*, std::shared_ptr<const Callable>>
      data_;
};

// JSON data as values (objects become dicts in their key order); InvalidArgument when it nests
// deeper than `max_depth`.
absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json, int max_depth);

// str(value) as Jinja prints it: "" for undefined, "None", "True", Python's repr of floats,
// lists and dicts.
std::string ToPythonString(const Value& value);
// json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys) as transformers'
// tojson filter calls it: ", " and ": " between items without indent, "," and ": " with it.
absl::StatusOr<std::string> ToJson(const Value& value, std::optional<int> indent, bool sort_keys);

// Python's ==: numbers by value (True == 1), str, list and dict by content, none and undefined
// equal to themselves, namespaces and callables by identity.
bool Equal(const Value& a, const Value& b);
// Python's `needle in haystack` for str (substring), list (an equal element) and dict (a key).
absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle);
// Python's ordering of two numbers or two strings: negative, zero or positive.
absl::StatusOr<int> Compare(const Value& a, const Value& b);

}  // namespace anyprec::jinja
