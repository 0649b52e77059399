#include "engine/chat/jinja_builtins.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/chat/jinja_strings.h"

namespace anyprec::jinja {
namespace {

using FilterFunction = absl::StatusOr<Value> (*)(const Value& operand, const CallArguments& arguments, WorkBudget& budget);
using TestFunction = absl::StatusOr<bool> (*)(const Value& operand, const CallArguments& arguments);

absl::Status TypeError(std::string_view what, const Value& value) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(what), ", not '", value.TypeName(), "'"));
}

absl::StatusOr<int64_t> RequireInt(const Value& value, std::string_view what) {
  if (value.kind() != Value::Kind::kInt && value.kind() != Value::Kind::kBool) return TypeError(absl::StrCat(std::string(what), " must be an integer"), value);
  return value.AsInt();
}

absl::StatusOr<std::string> RequireString(const Value& value, std::string_view what) {
  if (!value.is_string()) return TypeError(absl::StrCat(std::string(what), " must be a string"), value);
  return value.AsString();
}

// An optional string argument: absent (undefined or none) or a string.
absl::StatusOr<std::optional<std::string>> OptionalString(const Value& value, std::string_view what) {
  if (value.is_undefined() || value.is_none()) return std::nullopt;
  ASSIGN_OR_RETURN(std::string text, RequireString(value, what));
  return text;
}

absl::StatusOr<Value> BuiltString(std::string text, WorkBudget& budget) {
  RETURN_IF_ERROR(budget.ChargeBytes(text.size()));
  return Value::String(std::move(text));
}

absl::StatusOr<Value> BuiltList(ValueList items, WorkBudget& budget) {
  RETURN_IF_ERROR(budget.Charge(static_cast<int64_t>(items.size())));
  return Value::List(std::move(items));
}

absl::StatusOr<std::vector<Value>> Bind(std::string_view callee, std::initializer_list<std::string_view> parameters,
                                        const CallArguments& arguments) {
  return BindArguments(callee, std::span<const std::string_view>(parameters.begin(), parameters.size()), arguments);
}

// ---- Filters ----

absl::StatusOr<Value> FilterTrim(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("trim", {"chars"}, arguments));
  ASSIGN_OR_RETURN(const std::optional<std::string> chars, OptionalString(bound[0], "trim's chars"));
  return BuiltString(StripText(ToPythonString(operand), chars, true, true), budget);
}

absl::StatusOr<Value> FilterLength(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  RETURN_IF_ERROR(Bind("length", {}, arguments).status());
  switch (operand.kind()) {
    case Value::Kind::kUndefined: return Value::Int(0);
    case Value::Kind::kString: return Value::Int(static_cast<int64_t>(CodePointCount(operand.AsString())));
    case Value::Kind::kList: return Value::Int(static_cast<int64_t>(operand.AsList().size()));
    case Value::Kind::kDict: return Value::Int(static_cast<int64_t>(operand.AsDict().size()));
    default: return TypeError("length needs a string, list or dict", operand);
  }
}

absl::StatusOr<Value> FilterDefault(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("default", {"default_value", "boolean"}, arguments));
  const bool use_default = operand.is_undefined() || (bound[1].Truthy() && !operand.Truthy());
  if (!use_default) return operand;
  return bound[0].is_undefined() ? Value::String("") : bound[0];
}

template <std::string (*Transform)(std::string_view)>
absl::StatusOr<Value> FilterCase(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(Bind("case filter", {}, arguments).status());
  return BuiltString(Transform(ToPythonString(operand)), budget);
}

absl::StatusOr<Value> FilterString(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(Bind("string", {}, arguments).status());
  return BuiltString(ToPythonString(operand), budget);
}

absl::StatusOr<Value> FilterJoin(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("join", {"d", "attribute"}, arguments));
  ASSIGN_OR_RETURN(const std::optional<std::string> separator, OptionalString(bound[0], "join's separator"));
  ASSIGN_OR_RETURN(const ValueList items, Iterate(operand));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator.value_or("");
    out += ToPythonString(bound[1].is_undefined() ? items[i] : LookupAttribute(items[i], ToPythonString(bound[1])));
    RETURN_IF_ERROR(budget.ChargeBytes(out.size()));
  }
  return Value::String(std::move(out));
}

template <bool kFirst>
absl::StatusOr<Value> FilterEnd(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  RETURN_IF_ERROR(Bind(kFirst ? "first" : "last", {}, arguments).status());
  ASSIGN_OR_RETURN(const ValueList items, Iterate(operand));
  if (items.empty()) return Value(kFirst ? "first item" : "last item");
  return kFirst ? items.front() : items.back();
}

absl::StatusOr<Value> FilterList(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(Bind("list", {}, arguments).status());
  ASSIGN_OR_RETURN(ValueList items, Iterate(operand));
  return BuiltList(std::move(items), budget);
}

absl::StatusOr<Value> FilterItems(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(Bind("items", {}, arguments).status());
  if (operand.is_undefined()) return Value::List({});
  if (!operand.is_dict()) return TypeError("items needs a dict", operand);
  ValueList pairs;
  for (const auto& [key, value] : operand.AsDict()) pairs.push_back(Value::List({Value::String(key), value}));
  return BuiltList(std::move(pairs), budget);
}

// select/reject(test, args...) and selectattr/rejectattr(attribute, test, args...): the
// items for which the test (truth, without one) holds, or does not.
template <bool kKeep, bool kByAttribute>
absl::StatusOr<Value> FilterSelect(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  const std::vector<Value>& given = arguments.positional;
  if (!arguments.keyword.empty()) return absl::InvalidArgumentError("select filters take no keyword arguments");
  const size_t test_at = kByAttribute ? 1 : 0;
  if (kByAttribute && given.empty()) return absl::InvalidArgumentError("selectattr/rejectattr need an attribute");
  std::optional<std::string> test;
  if (given.size() > test_at) {
    ASSIGN_OR_RETURN(test, RequireString(given[test_at], "the test's name"));
    if (!IsTest(*test)) return absl::InvalidArgumentError(absl::StrCat("unknown test '", *test, "'"));
  }
  CallArguments test_arguments;
  if (given.size() > test_at + 1) test_arguments.positional.assign(given.begin() + static_cast<std::ptrdiff_t>(test_at) + 1, given.end());
  ASSIGN_OR_RETURN(const ValueList items, Iterate(operand));
  ValueList kept;
  for (const Value& item : items) {
    const Value subject = kByAttribute ? LookupAttribute(item, ToPythonString(given[0])) : item;
    bool holds = subject.Truthy();
    if (test) {
      ASSIGN_OR_RETURN(holds, ApplyTest(*test, subject, test_arguments));
    }
    if (holds == kKeep) kept.push_back(item);
  }
  return BuiltList(std::move(kept), budget);
}

// map(attribute='name', default=…) or map('filter', args...).
absl::StatusOr<Value> FilterMap(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  ASSIGN_OR_RETURN(const ValueList items, Iterate(operand));
  ValueList mapped;
  const auto attribute = std::find_if(arguments.keyword.begin(), arguments.keyword.end(), [](const auto& kw) { return kw.first == "attribute"; });
  if (attribute != arguments.keyword.end()) {
    const auto fallback = std::find_if(arguments.keyword.begin(), arguments.keyword.end(), [](const auto& kw) { return kw.first == "default"; });
    for (const Value& item : items) {
      Value value = LookupAttribute(item, ToPythonString(attribute->second));
      if (value.is_undefined() && fallback != arguments.keyword.end()) value = fallback->second;
      mapped.push_back(std::move(value));
    }
    return BuiltList(std::move(mapped), budget);
  }
  if (arguments.positional.empty()) return absl::InvalidArgumentError("map needs a filter name or attribute=");
  ASSIGN_OR_RETURN(const std::string filter, RequireString(arguments.positional[0], "map's filter"));
  if (!IsFilter(filter)) return absl::InvalidArgumentError(absl::StrCat("unknown filter '", filter, "'"));
  CallArguments filter_arguments{{arguments.positional.begin() + 1, arguments.positional.end()}, arguments.keyword};
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value value, ApplyFilter(filter, item, filter_arguments, budget));
    mapped.push_back(std::move(value));
  }
  return BuiltList(std::move(mapped), budget);
}

absl::StatusOr<Value> FilterReplace(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("replace", {"old", "new", "count"}, arguments));
  int64_t count = -1;
  if (!bound[2].is_undefined() && !bound[2].is_none()) {
    ASSIGN_OR_RETURN(count, RequireInt(bound[2], "replace's count"));
  }
  const std::string text = ToPythonString(operand);
  const std::string from = ToPythonString(bound[0]);
  const std::string to = ToPythonString(bound[1]);
  // Bound the result before building it: at most one replacement per byte, plus one.
  if (to.size() > from.size()) RETURN_IF_ERROR(budget.ChargeBytes(text.size() + (text.size() + 1) * (to.size() - from.size())));
  return BuiltString(ReplaceText(text, from, to, count), budget);
}

absl::StatusOr<Value> FilterSafe(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  RETURN_IF_ERROR(Bind("safe", {}, arguments).status());
  return operand;
}

// Python's int() of a string: optional whitespace and sign, digits in `base`, underscores
// between digits.
std::optional<int64_t> ParseInteger(std::string_view text, int base) {
  std::string cleaned = StripText(text, std::nullopt, true, true);
  cleaned.erase(std::remove(cleaned.begin(), cleaned.end(), '_'), cleaned.end());
  if (!cleaned.empty() && cleaned[0] == '+') cleaned.erase(0, 1);
  int64_t value = 0;
  const char* end = cleaned.data() + cleaned.size();
  const auto result = std::from_chars(cleaned.data(), end, value, base);
  if (cleaned.empty() || result.ec != std::errc() || result.ptr != end) return std::nullopt;
  return value;
}

std::optional<double> ParseFloat(std::string_view text) {
  std::string cleaned = StripText(text, std::nullopt, true, true);
  if (!cleaned.empty() && cleaned[0] == '+') cleaned.erase(0, 1);
  double value = 0;
  const char* end = cleaned.data() + cleaned.size();
  const auto result = std::from_chars(cleaned.data(), end, value);
  if (cleaned.empty() || result.ec != std::errc() || result.ptr != end) return std::nullopt;
  return value;
}

// A float as an int, when it is finite and in range.
std::optional<int64_t> Truncate(double value) {
  if (!std::isfinite(value) || value >= 9.2233720368547758e18 || value < -9.2233720368547758e18) return std::nullopt;
  return static_cast<int64_t>(value);
}

absl::StatusOr<Value> FilterInt(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("int", {"default", "base"}, arguments));
  const Value fallback = bound[0].is_undefined() ? Value::Int(0) : bound[0];
  int64_t base = 10;
  if (!bound[1].is_undefined()) {
    ASSIGN_OR_RETURN(base, RequireInt(bound[1], "int's base"));
    if (base < 2 || base > 36) return absl::InvalidArgumentError("int's base must be within 2..36");
  }
  std::optional<int64_t> result;
  if (operand.is_integer()) result = operand.AsInt();
  if (operand.kind() == Value::Kind::kFloat) result = Truncate(operand.AsFloat());
  if (operand.is_string()) {
    result = ParseInteger(operand.AsString(), static_cast<int>(base));
    if (!result) {
      if (const std::optional<double> number = ParseFloat(operand.AsString())) result = Truncate(*number);
    }
  }
  return result ? Value::Int(*result) : fallback;
}

absl::StatusOr<Value> FilterFloat(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("float", {"default"}, arguments));
  if (operand.is_number()) return Value::Float(operand.AsFloat());
  if (operand.is_string()) {
    if (const std::optional<double> number = ParseFloat(operand.AsString())) return Value::Float(*number);
  }
  return bound[0].is_undefined() ? Value::Float(0.0) : bound[0];
}

absl::StatusOr<Value> FilterAbs(const Value& operand, const CallArguments& arguments, WorkBudget&) {
  RETURN_IF_ERROR(Bind("abs", {}, arguments).status());
  if (operand.kind() == Value::Kind::kFloat) return Value::Float(std::fabs(operand.AsFloat()));
  if (!operand.is_integer()) return TypeError("abs needs a number", operand);
  if (operand.AsInt() == INT64_MIN) return absl::InvalidArgumentError("integer overflow in abs");
  return Value::Int(operand.AsInt() < 0 ? -operand.AsInt() : operand.AsInt());
}

// Jinja's indent: every line but the first (and the first too with first=true) gets `width`
// (spaces, or the string itself), blank lines only with blank=true.
absl::StatusOr<Value> FilterIndent(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("indent", {"width", "first", "blank"}, arguments));
  std::string indentation(4, ' ');
  if (bound[0].is_string()) {
    indentation = bound[0].AsString();
  } else if (!bound[0].is_undefined()) {
    ASSIGN_OR_RETURN(const int64_t width, RequireInt(bound[0], "indent's width"));
    RETURN_IF_ERROR(budget.ChargeBytes(static_cast<size_t>(std::max<int64_t>(0, width))));
    indentation.assign(static_cast<size_t>(std::max<int64_t>(0, width)), ' ');
  }
  const std::string text = ToPythonString(operand);
  const std::vector<std::string> lines = SplitText(text, std::string_view("\n"), -1);
  RETURN_IF_ERROR(budget.ChargeBytes(text.size() + lines.size() * indentation.size()));
  std::string out;
  // As Python's splitlines(), a final newline ends the last line rather than starting one.
  const size_t count = lines.size() > 1 && lines.back().empty() ? lines.size() - 1 : lines.size();
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) out += '\n';
    const bool indented = i == 0 ? bound[1].Truthy() : (!lines[i].empty() || bound[2].Truthy());
    if (indented) out += indentation;
    out += lines[i];
  }
  return Value::String(std::move(out));
}

// transformers' tojson: json.dumps(ensure_ascii=False, indent=indent, sort_keys=sort_keys).
absl::StatusOr<Value> FilterToJson(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}, arguments));
  if (bound[0].Truthy()) return absl::InvalidArgumentError("tojson(ensure_ascii=true) is not supported");
  if (!bound[2].is_undefined() && !bound[2].is_none()) return absl::InvalidArgumentError("tojson(separators=…) is not supported");
  std::optional<int> indent;
  if (!bound[1].is_undefined() && !bound[1].is_none()) {
    ASSIGN_OR_RETURN(const int64_t width, RequireInt(bound[1], "tojson's indent"));
    if (width > 64) return absl::InvalidArgumentError("tojson's indent is over 64");
    indent = static_cast<int>(width);
  }
  ASSIGN_OR_RETURN(std::string json, ToJson(operand, indent, bound[3].Truthy()));
  return BuiltString(std::move(json), budget);
}

absl::StatusOr<Value> FilterReverse(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(Bind("reverse", {}, arguments).status());
  ASSIGN_OR_RETURN(ValueList items, Iterate(operand));
  std::reverse(items.begin(), items.end());
  if (!operand.is_string()) return BuiltList(std::move(items), budget);
  std::string text;
  for (const Value& item : items) text += item.AsString();
  return BuiltString(std::move(text), budget);
}

absl::StatusOr<Value> FilterUnique(const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(Bind("unique", {}, arguments).status());
  ASSIGN_OR_RETURN(const ValueList items, Iterate(operand));
  ValueList unique;
  for (const Value& item : items) {
    RETURN_IF_ERROR(budget.Charge(static_cast<int64_t>(unique.size())));
    if (std::none_of(unique.begin(), unique.end(), [&](const Value& seen) { return Equal(seen, item); })) unique.push_back(item);
  }
  return BuiltList(std::move(unique), budget);
}

struct FilterEntry {
  std::string_view name;
  FilterFunction function;
};

constexpr FilterEntry kFilters[] = {
    {"abs", FilterAbs},
    {"capitalize", FilterCase<CapitalizeText>},
    {"count", FilterLength},
    {"d", FilterDefault},
    {"default", FilterDefault},
    {"first", FilterEnd<true>},
    {"float", FilterFloat},
    {"indent", FilterIndent},
    {"int", FilterInt},
    {"items", FilterItems},
    {"join", FilterJoin},
    {"last", FilterEnd<false>},
    {"length", FilterLength},
    {"list", FilterList},
    {"lower", FilterCase<LowerText>},
    {"map", FilterMap},
    {"reject", FilterSelect<false, false>},
    {"rejectattr", FilterSelect<false, true>},
    {"replace", FilterReplace},
    {"reverse", FilterReverse},
    {"safe", FilterSafe},
    {"select", FilterSelect<true, false>},
    {"selectattr", FilterSelect<true, true>},
    {"string", FilterString},
    {"title", FilterCase<TitleText>},
    {"tojson", FilterToJson},
    {"trim", FilterTrim},
    {"unique", FilterUnique},
    {"upper", FilterCase<UpperText>},
};

const FilterEntry* FindFilter(std::string_view name) {
  const auto* found = std::find_if(std::begin(kFilters), std::end(kFilters), [&](const FilterEntry& entry) { return entry.name == name; });
  return found == std::end(kFilters) ? nullptr : found;
}

// ---- Tests ----

template <bool (*Predicate)(const Value&)>
absl::StatusOr<bool> TestOf(const Value& operand, const CallArguments& arguments) {
  RETURN_IF_ERROR(Bind("test", {}, arguments).status());
  return Predicate(operand);
}

bool IsDefined(const Value& v) { return !v.is_undefined(); }
bool IsUndefined(const Value& v) { return v.is_undefined(); }
bool IsNone(const Value& v) { return v.is_none(); }
bool IsBoolean(const Value& v) { return v.kind() == Value::Kind::kBool; }
bool IsFalse(const Value& v) { return v.kind() == Value::Kind::kBool && !v.AsBool(); }
bool IsTrue(const Value& v) { return v.kind() == Value::Kind::kBool && v.AsBool(); }
bool IsString(const Value& v) { return v.is_string(); }
bool IsNumber(const Value& v) { return v.is_number(); }
bool IsInteger(const Value& v) { return v.kind() == Value::Kind::kInt; }
bool IsFloat(const Value& v) { return v.kind() == Value::Kind::kFloat; }
bool IsMapping(const Value& v) { return v.is_dict(); }
// Jinja's undefined can be iterated (as empty) and has a length, so it passes both.
bool IsIterable(const Value& v) { return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined(); }
bool IsCallable(const Value& v) { return v.kind() == Value::Kind::kCallable; }
bool IsLower(const Value& v) { return v.is_string() && LowerText(v.AsString()) == v.AsString(); }
bool IsUpper(const Value& v) { return v.is_string() && UpperText(v.AsString()) == v.AsString(); }

template <bool kOdd>
absl::StatusOr<bool> TestParity(const Value& operand, const CallArguments& arguments) {
  RETURN_IF_ERROR(Bind("odd/even", {}, arguments).status());
  ASSIGN_OR_RETURN(const int64_t number, RequireInt(operand, "odd/even's operand"));
  return (number % 2 != 0) == kOdd;
}

absl::StatusOr<bool> TestDivisibleBy(const Value& operand, const CallArguments& arguments) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("divisibleby", {"num"}, arguments));
  ASSIGN_OR_RETURN(const int64_t number, RequireInt(operand, "divisibleby's operand"));
  ASSIGN_OR_RETURN(const int64_t divisor, RequireInt(bound[0], "divisibleby's argument"));
  if (divisor == 0) return absl::InvalidArgumentError("divisibleby 0");
  return divisor == -1 || number % divisor == 0;
}

// ==, !=, <, <=, >, >= as tests (Jinja's eq, ne, lt, le, gt, ge and their aliases).
enum class Relation { kEqual, kNotEqual, kLess, kLessEqual, kGreater, kGreaterEqual };
template <Relation kRelation>
absl::StatusOr<bool> TestRelation(const Value& operand, const CallArguments& arguments) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("comparison test", {"other"}, arguments));
  if constexpr (kRelation == Relation::kEqual) return Equal(operand, bound[0]);
  if constexpr (kRelation == Relation::kNotEqual) return !Equal(operand, bound[0]);
  ASSIGN_OR_RETURN(const int order, Compare(operand, bound[0]));
  switch (kRelation) {
    case Relation::kLess: return order < 0;
    case Relation::kLessEqual: return order <= 0;
    case Relation::kGreater: return order > 0;
    default: return order >= 0;
  }
}

absl::StatusOr<bool> TestIn(const Value& operand, const CallArguments& arguments) {
  ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind("in", {"seq"}, arguments));
  return Contains(bound[0], operand);
}

struct TestEntry {
  std::string_view name;
  TestFunction function;
};

constexpr TestEntry kTests[] = {
    {"!=", TestRelation<Relation::kNotEqual>},
    {"<", TestRelation<Relation::kLess>},
    {"<=", TestRelation<Relation::kLessEqual>},
    {"==", TestRelation<Relation::kEqual>},
    {">", TestRelation<Relation::kGreater>},
    {">=", TestRelation<Relation::kGreaterEqual>},
    {"boolean", TestOf<IsBoolean>},
    {"callable", TestOf<IsCallable>},
    {"defined", TestOf<IsDefined>},
    {"divisibleby", TestDivisibleBy},
    {"eq", TestRelation<Relation::kEqual>},
    {"equalto", TestRelation<Relation::kEqual>},
    {"even", TestParity<false>},
    {"false", TestOf<IsFalse>},
    {"float", TestOf<IsFloat>},
    {"ge", TestRelation<Relation::kGreaterEqual>},
    {"gt", TestRelation<Relation::kGreater>},
    {"greaterthan", TestRelation<Relation::kGreater>},
    {"in", TestIn},
    {"integer", TestOf<IsInteger>},
    {"iterable", TestOf<IsIterable>},
    {"le", TestRelation<Relation::kLessEqual>},
    {"lessthan", TestRelation<Relation::kLess>},
    {"lower", TestOf<IsLower>},
    {"lt", TestRelation<Relation::kLess>},
    {"mapping", TestOf<IsMapping>},
    {"ne", TestRelation<Relation::kNotEqual>},
    {"none", TestOf<IsNone>},
    {"number", TestOf<IsNumber>},
    {"odd", TestParity<true>},
    {"sequence", TestOf<IsIterable>},
    {"string", TestOf<IsString>},
    {"true", TestOf<IsTrue>},
    {"undefined", TestOf<IsUndefined>},
    {"upper", TestOf<IsUpper>},
};

const TestEntry* FindTest(std::string_view name) {
  const auto* found = std::find_if(std::begin(kTests), std::end(kTests), [&](const TestEntry& entry) { return entry.name == name; });
  return found == std::end(kTests) ? nullptr : found;
}

// ---- Methods ----

// str.startswith / str.endswith: a prefix, or a list of them.
absl::StatusOr<Value> AffixMethod(const std::string& text, const Value& affixes, bool at_start) {
  const auto matches = [&](const Value& affix) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(const std::string piece, RequireString(affix, at_start ? "startswith's prefix" : "endswith's suffix"));
    return at_start ? text.starts_with(piece) : text.ends_with(piece);
  };
  if (!affixes.is_list()) {
    ASSIGN_OR_RETURN(const bool found, matches(affixes));
    return Value::Bool(found);
  }
  for (const Value& affix : affixes.AsList()) {
    ASSIGN_OR_RETURN(const bool found, matches(affix));
    if (found) return Value::Bool(true);
  }
  return Value::Bool(false);
}

absl::StatusOr<Value> StringMethod(const std::string& text, std::string_view name, const CallArguments& arguments, WorkBudget& budget) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind(name, {"chars"}, arguments));
    ASSIGN_OR_RETURN(const std::optional<std::string> chars, OptionalString(bound[0], "strip's chars"));
    return Value::String(StripText(text, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split") {
    ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind(name, {"sep", "maxsplit"}, arguments));
    ASSIGN_OR_RETURN(const std::optional<std::string> separator, OptionalString(bound[0], "split's separator"));
    if (separator && separator->empty()) return absl::InvalidArgumentError("split: empty separator");
    int64_t max_splits = -1;
    if (!bound[1].is_undefined()) {
      ASSIGN_OR_RETURN(max_splits, RequireInt(bound[1], "split's maxsplit"));
    }
    ValueList pieces;
    for (std::string& piece : SplitText(text, separator, max_splits)) pieces.push_back(Value::String(std::move(piece)));
    return BuiltList(std::move(pieces), budget);
  }
  if (name == "startswith" || name == "endswith") {
    ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind(name, {"affix"}, arguments));
    return AffixMethod(text, bound[0], name == "startswith");
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    RETURN_IF_ERROR(Bind(name, {}, arguments).status());
    return Value::String(name == "upper" ? UpperText(text) : name == "lower" ? LowerText(text) : name == "title" ? TitleText(text) : CapitalizeText(text));
  }
  if (name == "replace") {
    return FilterReplace(Value::String(text), arguments, budget);
  }
  if (name == "find") {
    ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind(name, {"sub"}, arguments));
    ASSIGN_OR_RETURN(const std::string needle, RequireString(bound[0], "find's argument"));
    const size_t found = text.find(needle);
    return Value::Int(found == std::string::npos ? -1 : static_cast<int64_t>(CodePointCount(std::string_view(text).substr(0, found))));
  }
  if (name == "join") {
    ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind(name, {"iterable"}, arguments));
    ASSIGN_OR_RETURN(const ValueList items, Iterate(bound[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      ASSIGN_OR_RETURN(const std::string piece, RequireString(items[i], "join's items"));
      if (i > 0) out += text;
      out += piece;
      RETURN_IF_ERROR(budget.ChargeBytes(out.size()));
    }
    return Value::String(std::move(out));
  }
  return absl::InvalidArgumentError(absl::StrCat("'str' object has no method '", std::string(name), "'"));
}

absl::StatusOr<Value> DictMethod(const Value& dict, std::string_view name, const CallArguments& arguments, WorkBudget& budget) {
  if (name == "items") return FilterItems(dict, arguments, budget);
  if (name == "keys" || name == "values") {
    RETURN_IF_ERROR(Bind(name, {}, arguments).status());
    ValueList out;
    for (const auto& [key, value] : dict.AsDict()) out.push_back(name == "keys" ? Value::String(key) : value);
    return BuiltList(std::move(out), budget);
  }
  if (name == "get") {
    ASSIGN_OR_RETURN(const std::vector<Value> bound, Bind(name, {"key", "default"}, arguments));
    const Value* found = bound[0].is_string() ? dict.Find(bound[0].AsString()) : nullptr;
    if (found != nullptr) return *found;
    return bound[1].is_undefined() ? Value::None() : bound[1];
  }
  return absl::InvalidArgumentError(absl::StrCat("'dict' object has no method '", std::string(name), "'"));
}

}  // namespace

absl::Status WorkBudget::Charge(int64_t units) {
  if (units > max_work_ - spent_) {
    spent_ = max_work_;
    return absl::ResourceExhaustedError(absl::StrCat("the template exceeded its work limit of ", max_work_, " steps"));
  }
  spent_ += units;
  return absl::OkStatus();
}

absl::Status WorkBudget::ChargeBytes(size_t bytes) {
  if (bytes > max_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("the template built a string of ", bytes, " bytes, over its limit of ", max_bytes_));
  }
  return Charge(static_cast<int64_t>(bytes / 64));
}

absl::StatusOr<std::vector<Value>> BindArguments(std::string_view callee, std::span<const std::string_view> parameters,
                                                 const CallArguments& arguments) {
  if (arguments.positional.size() > parameters.size()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(callee), "() takes at most ", parameters.size(), " arguments (",
                                                   arguments.positional.size(), " given)"));
  }
  std::vector<Value> bound(parameters.size());
  std::vector<bool> given(parameters.size(), false);
  for (size_t i = 0; i < arguments.positional.size(); ++i) {
    bound[i] = arguments.positional[i];
    given[i] = true;
  }
  for (const auto& [name, value] : arguments.keyword) {
    const auto found = std::find(parameters.begin(), parameters.end(), name);
    if (found == parameters.end()) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(callee), "() got an unexpected keyword argument '", name, "'"));
    }
    const auto index = static_cast<size_t>(found - parameters.begin());
    if (given[index]) return absl::InvalidArgumentError(absl::StrCat(std::string(callee), "() got multiple values for '", name, "'"));
    bound[index] = value;
    given[index] = true;
  }
  return bound;
}

bool IsFilter(std::string_view name) { return FindFilter(name) != nullptr; }
bool IsTest(std::string_view name) { return FindTest(name) != nullptr; }

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& operand, const CallArguments& arguments, WorkBudget& budget) {
  const FilterEntry* filter = FindFilter(name);
  if (filter == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown filter '", std::string(name), "'"));
  RETURN_IF_ERROR(budget.Charge(1));
  return filter->function(operand, arguments, budget);
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& operand, const CallArguments& arguments) {
  const TestEntry* test = FindTest(name);
  if (test == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown test '", std::string(name), "'"));
  return test->function(operand, arguments);
}

absl::StatusOr<Value> CallMethod(const Value& object, std::string_view name, const CallArguments& arguments, WorkBudget& budget) {
  RETURN_IF_ERROR(budget.Charge(1));
  if (object.is_string()) return StringMethod(object.AsString(), name, arguments, budget);
  if (object.is_dict()) return DictMethod(object, name, arguments, budget);
  if (object.is_undefined()) {
    return absl::InvalidArgumentError(absl::StrCat("'", object.undefined_name(), "' is undefined, so it has no method '", std::string(name), "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat("'", object.TypeName(), "' object has no method '", std::string(name), "'"));
}

Value LookupAttribute(const Value& object, std::string_view name) {
  Value current = object;
  for (size_t start = 0; start <= name.size();) {
    const size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view part = name.substr(start, dot - start);
    start = dot + 1;
    int64_t index = 0;
    const auto parsed = std::from_chars(part.data(), part.data() + part.size(), index);
    if (current.is_list() && parsed.ec == std::errc() && parsed.ptr == part.data() + part.size() && index >= 0 &&
        static_cast<uint64_t>(index) < current.AsList().size()) {
      current = current.AsList()[static_cast<size_t>(index)];
      continue;
    }
    const Value* found = current.Find(part);
    if (found == nullptr) return Value(std::string(part));
    current = *found;
  }
  return current;
}

absl::StatusOr<ValueList> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined: return ValueList{};
    case Value::Kind::kList: return value.AsList();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& [key, element] : value.AsDict()) keys.push_back(Value::String(key));
      return keys;
    }
    case Value::Kind::kString: {
      const std::string& text = value.AsString();
      const std::vector<size_t> offsets = CodePointOffsets(text);
      ValueList characters;
      for (size_t k = 0; k + 1 < offsets.size(); ++k) characters.push_back(Value::String(text.substr(offsets[k], offsets[k + 1] - offsets[k])));
      return characters;
    }
    default: return TypeError("expected something to iterate (a list, dict or string)", value);
  }
}

}  // namespace anyprec::jinja
