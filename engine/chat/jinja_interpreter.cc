#include "engine/chat/jinja_interpreter.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <deque>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/base/status_macros.h"
#include "engine/chat/jinja_builtins.h"
#include "engine/chat/jinja_nesting.h"
#include "engine/chat/jinja_strings.h"

namespace anyprec::jinja {
namespace {

// How deeply statements, expressions and macro calls may nest while rendering.
constexpr int kMaxRenderDepth = 400;

constexpr std::pair<std::string_view, BuiltinFunction> kGlobals[] = {
    {"range", BuiltinFunction::kRange},
    {"namespace", BuiltinFunction::kNamespace},
    {"dict", BuiltinFunction::kDict},
    {"raise_exception", BuiltinFunction::kRaiseException},
    {"strftime_now", BuiltinFunction::kStrftimeNow},
};

absl::Status UndefinedError(const Value& value) {
  return absl::InvalidArgumentError(absl::StrCat("'", value.undefined_name(), "' is undefined"));
}

absl::Status OperandError(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported operand types for ", std::string(op), ": '", a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::Status Overflow() { return absl::InvalidArgumentError("integer overflow"); }

// Python's integer //, % and ** on int64, refusing what would overflow.
absl::StatusOr<int64_t> FloorDivide(int64_t a, int64_t b) {
  if (b == 0) return absl::InvalidArgumentError("division by zero");
  if (a == INT64_MIN && b == -1) return Overflow();
  const int64_t quotient = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? quotient - 1 : quotient;
}

absl::StatusOr<int64_t> Modulo(int64_t a, int64_t b) {
  if (b == 0) return absl::InvalidArgumentError("modulo by zero");
  if (b == -1) return 0;
  const int64_t remainder = a % b;
  return (remainder != 0 && ((remainder < 0) != (b < 0))) ? remainder + b : remainder;
}

absl::StatusOr<int64_t> Power(int64_t base, int64_t exponent) {
  int64_t result = 1;
  while (exponent > 0) {
    if ((exponent & 1) != 0 && __builtin_mul_overflow(result, base, &result)) return Overflow();
    exponent >>= 1;
    if (exponent > 0 && __builtin_mul_overflow(base, base, &base)) return Overflow();
  }
  return result;
}

absl::StatusOr<Value> NumberArithmetic(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_integer() && b.is_integer() && op != BinaryOp::kDivide && !(op == BinaryOp::kPower && b.AsInt() < 0)) {
    const int64_t x = a.AsInt();
    const int64_t y = b.AsInt();
    int64_t result = 0;
    switch (op) {
      case BinaryOp::kAdd:
        if (__builtin_add_overflow(x, y, &result)) return Overflow();
        return Value::Int(result);
      case BinaryOp::kSubtract:
        if (__builtin_sub_overflow(x, y, &result)) return Overflow();
        return Value::Int(result);
      case BinaryOp::kMultiply:
        if (__builtin_mul_overflow(x, y, &result)) return Overflow();
        return Value::Int(result);
      case BinaryOp::kFloorDivide: {
        ASSIGN_OR_RETURN(result, FloorDivide(x, y));
        return Value::Int(result);
      }
      case BinaryOp::kModulo: {
        ASSIGN_OR_RETURN(result, Modulo(x, y));
        return Value::Int(result);
      }
      case BinaryOp::kPower: {
        ASSIGN_OR_RETURN(result, Power(x, y));
        return Value::Int(result);
      }
      default: break;
    }
  }
  const double x = a.AsFloat();
  const double y = b.AsFloat();
  if (y == 0 && (op == BinaryOp::kDivide || op == BinaryOp::kFloorDivide || op == BinaryOp::kModulo)) {
    return absl::InvalidArgumentError("division by zero");
  }
  switch (op) {
    case BinaryOp::kAdd: return Value::Float(x + y);
    case BinaryOp::kSubtract: return Value::Float(x - y);
    case BinaryOp::kMultiply: return Value::Float(x * y);
    case BinaryOp::kDivide: return Value::Float(x / y);
    case BinaryOp::kFloorDivide: return Value::Float(std::floor(x / y));
    case BinaryOp::kModulo: {
      const double remainder = std::fmod(x, y);
      return Value::Float(remainder != 0 && ((remainder < 0) != (y < 0)) ? remainder + y : remainder);
    }
    case BinaryOp::kPower: return Value::Float(std::pow(x, y));
    default: return absl::InternalError("not an arithmetic operator");
  }
}

const char* OperatorSymbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd: return "+";
    case BinaryOp::kSubtract: return "-";
    case BinaryOp::kMultiply: return "*";
    case BinaryOp::kDivide: return "/";
    case BinaryOp::kFloorDivide: return "//";
    case BinaryOp::kModulo: return "%";
    case BinaryOp::kPower: return "**";
    case BinaryOp::kConcat: return "~";
    case BinaryOp::kAnd: return "and";
    case BinaryOp::kOr: return "or";
  }
  return "?";
}

// Python's slice of `length` items: the indices start, start + step, … before stop.
absl::StatusOr<std::vector<size_t>> SliceIndices(size_t length, const Value& start_value, const Value& stop_value, const Value& step_value) {
  const auto given = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  for (const Value* bound : {&start_value, &stop_value, &step_value}) {
    if (given(*bound) && !bound->is_integer()) return absl::InvalidArgumentError(absl::StrCat("slice indices must be integers, not '", bound->TypeName(), "'"));
  }
  const auto n = static_cast<int64_t>(length);
  const int64_t step = given(step_value) ? step_value.AsInt() : 1;
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  // Clamps an index into [low, high] after counting negative ones from the end.
  const auto clamp = [n](int64_t index, int64_t low, int64_t high) {
    if (index < 0) index += n;
    return std::clamp(index, low, high);
  };
  const int64_t start = given(start_value) ? clamp(start_value.AsInt(), step > 0 ? 0 : -1, step > 0 ? n : n - 1) : (step > 0 ? 0 : n - 1);
  const int64_t stop = given(stop_value) ? clamp(stop_value.AsInt(), step > 0 ? 0 : -1, step > 0 ? n : n - 1) : (step > 0 ? n : -1);
  const uint64_t magnitude = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
  const int64_t span = step > 0 ? stop - start : start - stop;
  const uint64_t count = span > 0 ? (static_cast<uint64_t>(span) - 1) / magnitude + 1 : 0;
  std::vector<size_t> indices;
  indices.reserve(count);
  for (uint64_t k = 0; k < count; ++k) {
    const auto offset = static_cast<int64_t>(k * magnitude);
    indices.push_back(static_cast<size_t>(step > 0 ? start + offset : start - offset));
  }
  return indices;
}

class Interpreter {
 public:
  Interpreter(const Template& parsed, ValueDict variables, const RenderLimits& limits)
      : template_(parsed), budget_(limits.max_work, limits.max_bytes) {
    scopes_.emplace_back();
    for (auto& [name, value] : variables) scopes_.front().insert_or_assign(name, std::move(value));
  }

  absl::StatusOr<std::string> Run() {
    RETURN_IF_ERROR(ExecuteBody(template_.body));
    return std::move(output_);
  }

 private:
  using Scope = absl::flat_hash_map<std::string, Value>;

  // A scope pushed for as long as it lives.
  class ScopeLevel {
   public:
    ScopeLevel(Interpreter& interpreter, Scope scope) : scopes_(interpreter.scopes_) { scopes_.push_back(std::move(scope)); }
    ~ScopeLevel() { scopes_.pop_back(); }
    ScopeLevel(const ScopeLevel&) = delete;
    ScopeLevel& operator=(const ScopeLevel&) = delete;

   private:
    std::vector<Scope>& scopes_;
  };

  enum class Jump { kNone, kBreak, kContinue };

  absl::Status Error(Location location, std::string_view message) const { return LocatedError(template_.name, location, message); }
  // `status` (from a built-in, which knows no location) with the location prefixed, its code kept.
  absl::Status Locate(Location location, const absl::Status& status) const {
    if (status.ok()) return status;
    return absl::Status(status.code(), absl::StrCat(template_.name, ":", location.line, ":", location.column, ": ", std::string(status.message())));
  }
  template <typename T>
  absl::StatusOr<T> Locate(Location location, absl::StatusOr<T> result) const {
    if (!result.ok()) return Locate(location, result.status());
    return result;
  }

  Value Lookup(const std::string& name) const {
    for (size_t i = scopes_.size(); i-- > frame_base_;) {
      const auto found = scopes_[i].find(name);
      if (found != scopes_[i].end()) return found->second;
    }
    if (frame_base_ > 0) {
      const auto found = scopes_.front().find(name);
      if (found != scopes_.front().end()) return found->second;
    }
    for (const auto& [global, function] : kGlobals) {
      if (global == name) return Value::MakeCallable(Callable{name, function});
    }
    return Value(name);
  }

  absl::Status Emit(std::string_view text) {
    output_target_->append(text);
    if (output_target_->size() > budget_.max_bytes()) {
      return absl::ResourceExhaustedError(absl::StrCat(template_.name, ": the rendering exceeded its limit of ", budget_.max_bytes(), " bytes"));
    }
    return budget_.Charge(static_cast<int64_t>(text.size() / 64));
  }

  // The text `body` renders.
  absl::StatusOr<std::string> Capture(const Body& body) {
    std::string captured;
    std::string* const enclosing = std::exchange(output_target_, &captured);
    const absl::Status status = ExecuteBody(body);
    output_target_ = enclosing;
    RETURN_IF_ERROR(status);
    return captured;
  }

  // ---- Statements ----

  absl::Status ExecuteBody(const Body& body) {
    for (const Stmt& statement : body) {
      RETURN_IF_ERROR(Execute(statement));
      if (jump_ != Jump::kNone) break;
    }
    return absl::OkStatus();
  }

  absl::Status Execute(const Stmt& statement) {
    NestingLevel level(depth_);
    if (depth_ > kMaxRenderDepth) return Error(statement.location, "rendering nested too deeply (a recursive macro?)");
    RETURN_IF_ERROR(Locate(statement.location, budget_.Charge(1)));
    return std::visit([&](const auto& node) { return Run(node, statement.location); }, statement.node);
  }

  absl::Status Run(const TextStmt& node, Location) { return Emit(node.text); }

  absl::Status Run(const PrintStmt& node, Location) {
    ASSIGN_OR_RETURN(const Value value, Eval(*node.expr));
    return Emit(ToPythonString(value));
  }

  absl::Status Run(const IfStmt& node, Location) {
    for (const auto& [condition, branch] : node.branches) {
      ASSIGN_OR_RETURN(const Value holds, Eval(*condition));
      if (holds.Truthy()) return ExecuteBody(branch);
    }
    return ExecuteBody(node.otherwise);
  }

  absl::Status Bind(const std::vector<std::string>& targets, const Value& value, Location location, Scope& scope) const {
    if (targets.size() == 1) {
      scope.insert_or_assign(targets[0], value);
      return absl::OkStatus();
    }
    if (!value.is_list() || value.AsList().size() != targets.size()) {
      return Error(location, absl::StrCat("cannot unpack a '", value.TypeName(), "' into ", targets.size(), " names"));
    }
    for (size_t i = 0; i < targets.size(); ++i) scope.insert_or_assign(targets[i], value.AsList()[i]);
    return absl::OkStatus();
  }

  absl::Status Run(const ForStmt& node, Location location) {
    ASSIGN_OR_RETURN(const Value iterable, Eval(*node.iterable));
    ASSIGN_OR_RETURN(ValueList items, Locate(node.iterable->location, Iterate(iterable)));
    if (node.condition) {
      ValueList kept;
      for (const Value& item : items) {
        Scope scope;
        RETURN_IF_ERROR(Bind(node.targets, item, location, scope));
        const ScopeLevel level(*this, std::move(scope));
        ASSIGN_OR_RETURN(const Value holds, Eval(*node.condition));
        if (holds.Truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return ExecuteBody(node.otherwise);
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      RETURN_IF_ERROR(Locate(location, budget_.Charge(1)));
      ValueDict loop = {{"index", Value::Int(i + 1)},          {"index0", Value::Int(i)},
                        {"revindex", Value::Int(length - i)},  {"revindex0", Value::Int(length - i - 1)},
                        {"first", Value::Bool(i == 0)},        {"last", Value::Bool(i == length - 1)},
                        {"length", Value::Int(length)},        {"depth", Value::Int(1)},
                        {"depth0", Value::Int(0)}};
      if (i > 0) loop.emplace_back("previtem", items[static_cast<size_t>(i - 1)]);
      if (i + 1 < length) loop.emplace_back("nextitem", items[static_cast<size_t>(i + 1)]);
      Scope scope;
      scope.insert_or_assign("loop", Value::Dict(std::move(loop)));
      RETURN_IF_ERROR(Bind(node.targets, items[static_cast<size_t>(i)], location, scope));
      const ScopeLevel level(*this, std::move(scope));
      RETURN_IF_ERROR(ExecuteBody(node.body));
      if (std::exchange(jump_, Jump::kNone) == Jump::kBreak) break;
    }
    return absl::OkStatus();
  }

  absl::Status Run(const SetStmt& node, Location location) {
    Value value;
    if (node.value) {
      ASSIGN_OR_RETURN(value, Eval(*node.value));
    } else {
      ASSIGN_OR_RETURN(std::string text, Capture(node.block));
      value = Value::String(std::move(text));
    }
    if (node.attribute.empty()) return Bind(node.targets, value, location, scopes_.back());
    const Value target = Lookup(node.targets[0]);
    if (target.kind() != Value::Kind::kNamespace) {
      return Error(location, absl::StrCat("cannot set an attribute of '", node.targets[0], "', a '", target.TypeName(), "' (only of a namespace)"));
    }
    ValueDict& attributes = target.AsNamespace().attributes;
    const auto found = std::find_if(attributes.begin(), attributes.end(), [&](const auto& entry) { return entry.first == node.attribute; });
    if (found != attributes.end()) {
      found->second = std::move(value);
    } else {
      attributes.emplace_back(node.attribute, std::move(value));
    }
    return absl::OkStatus();
  }

  absl::Status Run(const MacroStmt& node, Location) {
    scopes_.back().insert_or_assign(node.name, Value::MakeCallable(Callable{node.name, &node}));
    return absl::OkStatus();
  }

  absl::Status Run(const FilterBlockStmt& node, Location location) {
    ASSIGN_OR_RETURN(std::string text, Capture(node.body));
    ASSIGN_OR_RETURN(const CallArguments arguments, EvalArguments(node.arguments));
    ASSIGN_OR_RETURN(const Value filtered, Locate(location, ApplyFilter(node.filter, Value::String(std::move(text)), arguments, budget_)));
    return Emit(ToPythonString(filtered));
  }

  absl::Status Run(const LoopControlStmt& node, Location) {
    jump_ = node.is_break ? Jump::kBreak : Jump::kContinue;
    return absl::OkStatus();
  }

  // ---- Expressions ----

  absl::StatusOr<Value> Eval(const Expr& expr) {
    NestingLevel level(depth_);
    if (depth_ > kMaxRenderDepth) return Error(expr.location, "rendering nested too deeply (a recursive macro?)");
    RETURN_IF_ERROR(Locate(expr.location, budget_.Charge(1)));
    ASSIGN_OR_RETURN(Value value, std::visit([&](const auto& node) { return EvalNode(node, expr.location); }, expr.node));
    if (value.depth() > kMaxValueDepth) return Error(expr.location, absl::StrCat("a value nests deeper than ", kMaxValueDepth, " lists or dicts"));
    return value;
  }

  absl::StatusOr<CallArguments> EvalArguments(const Arguments& arguments) {
    CallArguments values;
    for (const ExprPtr& argument : arguments.positional) {
      ASSIGN_OR_RETURN(Value value, Eval(*argument));
      values.positional.push_back(std::move(value));
    }
    for (const auto& [name, argument] : arguments.keyword) {
      ASSIGN_OR_RETURN(Value value, Eval(*argument));
      values.keyword.emplace_back(name, std::move(value));
    }
    return values;
  }

  absl::StatusOr<Value> EvalNode(const LiteralExpr& node, Location) { return node.value; }
  absl::StatusOr<Value> EvalNode(const NameExpr& node, Location) { return Lookup(node.name); }

  absl::StatusOr<Value> EvalNode(const ListExpr& node, Location location) {
    ValueList items;
    for (const ExprPtr& item : node.items) {
      ASSIGN_OR_RETURN(Value value, Eval(*item));
      items.push_back(std::move(value));
    }
    return Value::List(std::move(items));
  }

  absl::StatusOr<Value> EvalNode(const DictExpr& node, Location) {
    ValueDict entries;
    for (const auto& [key_expr, value_expr] : node.entries) {
      ASSIGN_OR_RETURN(const Value key, Eval(*key_expr));
      if (!key.is_string()) return Error(key_expr->location, absl::StrCat("dict keys must be strings, not '", key.TypeName(), "'"));
      ASSIGN_OR_RETURN(Value value, Eval(*value_expr));
      entries.emplace_back(key.AsString(), std::move(value));
    }
    return Value::Dict(std::move(entries));
  }

  // Jinja looks attributes and items up alike: a missing one is undefined; only looking into
  // an undefined value fails (except under `is defined`, which `lenient` serves).
  absl::StatusOr<Value> EvalNode(const AttributeExpr& node, Location location) { return EvalAttribute(node, location, false); }
  absl::StatusOr<Value> EvalAttribute(const AttributeExpr& node, Location location, bool lenient) {
    ASSIGN_OR_RETURN(const Value object, lenient ? EvalLenient(*node.object) : Eval(*node.object));
    if (object.is_undefined()) {
      if (lenient) return object;
      return Locate(location, UndefinedError(object));
    }
    return LookupAttribute(object, node.attribute);
  }

  absl::StatusOr<Value> EvalNode(const SubscriptExpr& node, Location location) { return EvalSubscript(node, location, false); }
  absl::StatusOr<Value> EvalSubscript(const SubscriptExpr& node, Location location, bool lenient) {
    ASSIGN_OR_RETURN(const Value object, lenient ? EvalLenient(*node.object) : Eval(*node.object));
    if (object.is_undefined() && !lenient) return Locate(location, UndefinedError(object));
    ASSIGN_OR_RETURN(const Value key, Eval(*node.index));
    if (key.is_string()) return LookupAttribute(object, key.AsString());
    if (!key.is_integer() || !(object.is_list() || object.is_string())) return Value(ToPythonString(key));
    const std::vector<size_t> offsets = object.is_string() ? CodePointOffsets(object.AsString()) : std::vector<size_t>{};
    const auto length = static_cast<int64_t>(object.is_list() ? object.AsList().size() : offsets.size() - 1);
    int64_t index = key.AsInt();
    if (index < 0) index += length;
    if (index < 0 || index >= length) return Value(ToPythonString(key));
    if (object.is_list()) return object.AsList()[static_cast<size_t>(index)];
    const auto at = static_cast<size_t>(index);
    return Value::String(object.AsString().substr(offsets[at], offsets[at + 1] - offsets[at]));
  }

  // The operand of `is defined`/`is undefined`: attributes and items of undefined values are
  // undefined rather than errors.
  absl::StatusOr<Value> EvalLenient(const Expr& expr) {
    if (const auto* attribute = std::get_if<AttributeExpr>(&expr.node)) return EvalAttribute(*attribute, expr.location, true);
    if (const auto* subscript = std::get_if<SubscriptExpr>(&expr.node)) return EvalSubscript(*subscript, expr.location, true);
    return Eval(expr);
  }

  absl::StatusOr<Value> EvalNode(const SliceExpr& node, Location location) {
    ASSIGN_OR_RETURN(const Value object, Eval(*node.object));
    Value bounds[3];
    const ExprPtr* bound_exprs[3] = {&node.start, &node.stop, &node.step};
    for (int k = 0; k < 3; ++k) {
      if (*bound_exprs[k]) {
        ASSIGN_OR_RETURN(bounds[k], Eval(**bound_exprs[k]));
      }
    }
    if (object.is_list()) {
      const ValueList& items = object.AsList();
      ASSIGN_OR_RETURN(const std::vector<size_t> indices, Locate(location, SliceIndices(items.size(), bounds[0], bounds[1], bounds[2])));
      ValueList sliced;
      sliced.reserve(indices.size());
      for (const size_t index : indices) sliced.push_back(items[index]);
      RETURN_IF_ERROR(Locate(location, budget_.Charge(static_cast<int64_t>(sliced.size()))));
      return Value::List(std::move(sliced));
    }
    if (object.is_string()) {
      const std::string& text = object.AsString();
      const std::vector<size_t> offsets = CodePointOffsets(text);
      ASSIGN_OR_RETURN(const std::vector<size_t> indices, Locate(location, SliceIndices(offsets.size() - 1, bounds[0], bounds[1], bounds[2])));
      std::string sliced;
      for (const size_t index : indices) sliced.append(text, offsets[index], offsets[index + 1] - offsets[index]);
      RETURN_IF_ERROR(Locate(location, budget_.ChargeBytes(sliced.size())));
      return Value::String(std::move(sliced));
    }
    if (object.is_undefined()) return Locate(location, UndefinedError(object));
    return Error(location, absl::StrCat("a '", object.TypeName(), "' cannot be sliced"));
  }

  absl::StatusOr<Value> EvalNode(const CallExpr& node, Location location) {
    if (const auto* method = std::get_if<AttributeExpr>(&node.callee->node)) {
      ASSIGN_OR_RETURN(const Value object, Eval(*method->object));
      const Value* member = object.kind() == Value::Kind::kNamespace ? object.Find(method->attribute) : nullptr;
      if (member == nullptr || member->kind() != Value::Kind::kCallable) {
        ASSIGN_OR_RETURN(const CallArguments arguments, EvalArguments(node.arguments));
        return Locate(location, CallMethod(object, method->attribute, arguments, budget_));
      }
      return Call(*member, node.arguments, location);
    }
    ASSIGN_OR_RETURN(const Value callee, Eval(*node.callee));
    return Call(callee, node.arguments, location);
  }

  absl::StatusOr<Value> Call(const Value& callee, const Arguments& argument_exprs, Location location) {
    if (callee.kind() != Value::Kind::kCallable) {
      if (callee.is_undefined()) return Locate(location, UndefinedError(callee));
      return Error(location, absl::StrCat("a '", callee.TypeName(), "' cannot be called"));
    }
    ASSIGN_OR_RETURN(const CallArguments arguments, EvalArguments(argument_exprs));
    const Callable& callable = callee.AsCallable();
    if (const auto* macro = std::get_if<const MacroStmt*>(&callable.target)) return CallMacro(**macro, arguments, location);
    return CallBuiltin(std::get<BuiltinFunction>(callable.target), arguments, location);
  }

  absl::StatusOr<Value> CallMacro(const MacroStmt& macro, const CallArguments& arguments, Location location) {
    std::vector<std::string_view> names;
    for (const auto& [name, default_value] : macro.parameters) names.push_back(name);
    ASSIGN_OR_RETURN(std::vector<Value> bound, Locate(location, BindArguments(macro.name, names, arguments)));
    Scope scope;
    for (size_t i = 0; i < bound.size(); ++i) {
      const ExprPtr& default_value = macro.parameters[i].second;
      if (bound[i].is_undefined() && default_value) {
        ASSIGN_OR_RETURN(bound[i], Eval(*default_value));
      }
      scope.insert_or_assign(macro.parameters[i].first, std::move(bound[i]));
    }
    const size_t enclosing_frame = std::exchange(frame_base_, scopes_.size());
    absl::StatusOr<std::string> text;
    {
      const ScopeLevel level(*this, std::move(scope));
      text = Capture(macro.body);
    }
    frame_base_ = enclosing_frame;
    if (!text.ok()) return text.status();
    return Value::String(*std::move(text));
  }

  absl::StatusOr<Value> CallBuiltin(BuiltinFunction function, const CallArguments& arguments, Location location) {
    switch (function) {
      case BuiltinFunction::kRange: return Locate(location, Range(arguments));
      case BuiltinFunction::kNamespace:
      case BuiltinFunction::kDict: {
        if (!arguments.positional.empty()) return Error(location, "namespace() and dict() take keyword arguments only");
        ValueDict entries(arguments.keyword.begin(), arguments.keyword.end());
        if (function == BuiltinFunction::kDict) return Value::Dict(std::move(entries));
        return Value::NamespaceAt(namespaces_.emplace_back(Namespace{std::move(entries)}));
      }
      case BuiltinFunction::kRaiseException: {
        static constexpr std::string_view kParameters[] = {"message"};
        ASSIGN_OR_RETURN(const std::vector<Value> bound, Locate(location, BindArguments("raise_exception", kParameters, arguments)));
        return absl::InvalidArgumentError(ToPythonString(bound[0]));
      }
      case BuiltinFunction::kStrftimeNow: return Locate(location, StrftimeNow(arguments));
    }
    return Error(location, "unknown built-in function");
  }

  absl::StatusOr<Value> Range(const CallArguments& arguments) {
    if (!arguments.keyword.empty() || arguments.positional.empty() || arguments.positional.size() > 3) {
      return absl::InvalidArgumentError("range() takes 1 to 3 integers");
    }
    for (const Value& argument : arguments.positional) {
      if (!argument.is_integer()) return absl::InvalidArgumentError(absl::StrCat("range() takes integers, not '", argument.TypeName(), "'"));
    }
    const bool one = arguments.positional.size() == 1;
    const int64_t start = one ? 0 : arguments.positional[0].AsInt();
    const int64_t stop = one ? arguments.positional[0].AsInt() : arguments.positional[1].AsInt();
    const int64_t step = arguments.positional.size() == 3 ? arguments.positional[2].AsInt() : 1;
    if (step == 0) return absl::InvalidArgumentError("range() step must not be zero");
    // In unsigned arithmetic, so that no bound overflows.
    const uint64_t span = step > 0 ? (stop > start ? static_cast<uint64_t>(stop) - static_cast<uint64_t>(start) : 0)
                                   : (start > stop ? static_cast<uint64_t>(start) - static_cast<uint64_t>(stop) : 0);
    const uint64_t magnitude = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
    const uint64_t count = span == 0 ? 0 : (span - 1) / magnitude + 1;
    if (count > static_cast<uint64_t>(INT64_MAX)) return absl::ResourceExhaustedError("range() is too long");
    RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(count)));
    ValueList items;
    items.reserve(count);
    for (uint64_t k = 0; k < count; ++k) items.push_back(Value::Int(static_cast<int64_t>(static_cast<uint64_t>(start) + k * static_cast<uint64_t>(step))));
    return Value::List(std::move(items));
  }

  // transformers' strftime_now: the local time now, formatted by strftime.
  static absl::StatusOr<Value> StrftimeNow(const CallArguments& arguments) {
    static constexpr std::string_view kParameters[] = {"format"};
    ASSIGN_OR_RETURN(const std::vector<Value> bound, BindArguments("strftime_now", kParameters, arguments));
    if (!bound[0].is_string()) return absl::InvalidArgumentError("strftime_now() takes a format string");
    const std::string& format = bound[0].AsString();
    if (format.size() > 256) return absl::InvalidArgumentError("strftime_now()'s format is longer than 256 bytes");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    if (localtime_r(&now, &local) == nullptr) return absl::InternalError("strftime_now(): no local time");
    char buffer[4096];
    const size_t length = std::strftime(buffer, sizeof(buffer), format.c_str(), &local);
    return Value::String(std::string(buffer, length));
  }

  absl::StatusOr<Value> EvalNode(const FilterExpr& node, Location location) {
    ASSIGN_OR_RETURN(const Value operand, Eval(*node.operand));
    ASSIGN_OR_RETURN(const CallArguments arguments, EvalArguments(node.arguments));
    return Locate(location, ApplyFilter(node.filter, operand, arguments, budget_));
  }

  absl::StatusOr<Value> EvalNode(const TestExpr& node, Location location) {
    const bool about_definition = node.test == "defined" || node.test == "undefined";
    ASSIGN_OR_RETURN(const Value operand, about_definition ? EvalLenient(*node.operand) : Eval(*node.operand));
    ASSIGN_OR_RETURN(const CallArguments arguments, EvalArguments(node.arguments));
    ASSIGN_OR_RETURN(const bool holds, Locate(location, ApplyTest(node.test, operand, arguments)));
    return Value::Bool(holds != node.negated);
  }

  absl::StatusOr<Value> EvalNode(const UnaryExpr& node, Location location) {
    ASSIGN_OR_RETURN(const Value operand, Eval(*node.operand));
    if (node.op == UnaryOp::kNot) return Value::Bool(!operand.Truthy());
    if (operand.kind() == Value::Kind::kFloat) return Value::Float(node.op == UnaryOp::kNegate ? -operand.AsFloat() : operand.AsFloat());
    if (!operand.is_integer()) {
      if (operand.is_undefined()) return Locate(location, UndefinedError(operand));
      return Error(location, absl::StrCat("bad operand type for unary ", node.op == UnaryOp::kNegate ? "-" : "+", ": '", operand.TypeName(), "'"));
    }
    if (node.op == UnaryOp::kPlus) return Value::Int(operand.AsInt());
    if (operand.AsInt() == INT64_MIN) return Locate(location, Overflow());
    return Value::Int(-operand.AsInt());
  }

  absl::StatusOr<Value> EvalNode(const BinaryExpr& node, Location location) {
    ASSIGN_OR_RETURN(Value left, Eval(*node.left));
    if (node.op == BinaryOp::kAnd || node.op == BinaryOp::kOr) {
      if (left.Truthy() == (node.op == BinaryOp::kOr)) return left;
      return Eval(*node.right);
    }
    ASSIGN_OR_RETURN(const Value right, Eval(*node.right));
    return Locate(location, Arithmetic(node.op, left, right));
  }

  absl::StatusOr<Value> Arithmetic(BinaryOp op, const Value& a, const Value& b) {
    if (op == BinaryOp::kConcat) {
      std::string text = ToPythonString(a) + ToPythonString(b);
      RETURN_IF_ERROR(budget_.ChargeBytes(text.size()));
      return Value::String(std::move(text));
    }
    if (op == BinaryOp::kAdd && a.is_string() && b.is_string()) {
      RETURN_IF_ERROR(budget_.ChargeBytes(a.AsString().size() + b.AsString().size()));
      return Value::String(a.AsString() + b.AsString());
    }
    if (op == BinaryOp::kAdd && a.is_list() && b.is_list()) {
      ValueList items = a.AsList();
      items.insert(items.end(), b.AsList().begin(), b.AsList().end());
      RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(items.size())));
      return Value::List(std::move(items));
    }
    if (op == BinaryOp::kMultiply && (a.is_string() || a.is_list()) && b.is_integer()) return Repeat(a, b.AsInt());
    if (op == BinaryOp::kMultiply && a.is_integer() && (b.is_string() || b.is_list())) return Repeat(b, a.AsInt());
    if (a.is_number() && b.is_number()) return NumberArithmetic(op, a, b);
    return OperandError(OperatorSymbol(op), a, b);
  }

  // str * n and list * n, bounded before they are built.
  absl::StatusOr<Value> Repeat(const Value& sequence, int64_t times) {
    const auto count = static_cast<uint64_t>(std::max<int64_t>(0, times));
    const uint64_t unit = sequence.is_string() ? sequence.AsString().size() : sequence.AsList().size();
    if (unit != 0 && count > budget_.max_bytes() / unit) return absl::ResourceExhaustedError("repetition past the size limit");
    if (sequence.is_string()) {
      RETURN_IF_ERROR(budget_.ChargeBytes(unit * count));
      std::string text;
      text.reserve(unit * count);
      for (uint64_t k = 0; k < count; ++k) text += sequence.AsString();
      return Value::String(std::move(text));
    }
    RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(unit * count)));
    ValueList items;
    for (uint64_t k = 0; k < count; ++k) items.insert(items.end(), sequence.AsList().begin(), sequence.AsList().end());
    return Value::List(std::move(items));
  }

  absl::StatusOr<Value> EvalNode(const CompareExpr& node, Location location) {
    ASSIGN_OR_RETURN(Value left, Eval(*node.first));
    for (const auto& [op, operand] : node.rest) {
      ASSIGN_OR_RETURN(Value right, Eval(*operand));
      ASSIGN_OR_RETURN(const bool holds, Locate(location, Comparison(op, left, right)));
      if (!holds) return Value::Bool(false);
      left = std::move(right);
    }
    return Value::Bool(true);
  }

  static absl::StatusOr<bool> Comparison(CompareOp op, const Value& a, const Value& b) {
    switch (op) {
      case CompareOp::kEqual: return Equal(a, b);
      case CompareOp::kNotEqual: return !Equal(a, b);
      case CompareOp::kIn:
      case CompareOp::kNotIn: {
        if (b.is_undefined()) return UndefinedError(b);
        ASSIGN_OR_RETURN(const bool found, Contains(b, a));
        return found == (op == CompareOp::kIn);
      }
      default: break;
    }
    if (a.is_undefined()) return UndefinedError(a);
    if (b.is_undefined()) return UndefinedError(b);
    ASSIGN_OR_RETURN(const int order, Compare(a, b));
    switch (op) {
      case CompareOp::kLess: return order < 0;
      case CompareOp::kLessEqual: return order <= 0;
      case CompareOp::kGreater: return order > 0;
      default: return order >= 0;
    }
  }

  absl::StatusOr<Value> EvalNode(const ConditionalExpr& node, Location) {
    ASSIGN_OR_RETURN(const Value condition, Eval(*node.condition));
    if (condition.Truthy()) return Eval(*node.if_true);
    if (!node.if_false) return Value("else branch");
    return Eval(*node.if_false);
  }

  const Template& template_;
  WorkBudget budget_;
  std::deque<Namespace> namespaces_;  // every namespace() of the render; values point into it
  std::vector<Scope> scopes_;  // scopes_[0]: the variables passed in and the template's top level
  size_t frame_base_ = 0;      // the innermost macro call's scopes begin here
  std::string output_;
  std::string* output_target_ = &output_;
  Jump jump_ = Jump::kNone;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<std::string> Render(const Template& parsed, ValueDict variables, const RenderLimits& limits) {
  return Interpreter(parsed, std::move(variables), limits).Run();
}

}  // namespace anyprec::jinja
