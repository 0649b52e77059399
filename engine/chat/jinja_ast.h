// The syntax tree of a parsed template. Every node keeps the line and column it came from, for
// error messages; every expression knows its depth, which the parser bounds so that walking
// (and destroying) a tree never recurses without limit.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/chat/jinja_value.h"

namespace anyprec::jinja {

struct Location {
  int line = 1;
  int column = 1;
};

// InvalidArgument "name:line:column: message".
inline absl::Status LocatedError(std::string_view name, Location location, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(name), ":", location.line, ":", location.column, ": ", std::string(message)));
}

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

enum class UnaryOp { kNot, kNegate, kPlus };
enum class BinaryOp { kAdd, kSubtract, kMultiply, kDivide, kFloorDivide, kModulo, kPower, kConcat, kAnd, kOr };
enum class CompareOp { kEqual, kNotEqual, kLess, kLessEqual, kGreater, kGreaterEqual, kIn, kNotIn };

struct LiteralExpr {
  Value value;
};
struct NameExpr {
  std::string name;
};
struct ListExpr {
  std::vector<ExprPtr> items;
};
struct DictExpr {
  std::vector<std::pair<ExprPtr, ExprPtr>> entries;
};
struct AttributeExpr {
  ExprPtr object;
  std::string attribute;
};
struct SubscriptExpr {
  ExprPtr object;
  ExprPtr index;
};
struct SliceExpr {
  ExprPtr object;
  ExprPtr start;  // each of the three may be null: omitted
  ExprPtr stop;
  ExprPtr step;
};
struct CallExpr {
  ExprPtr callee;
  Arguments arguments;
};
struct FilterExpr {
  ExprPtr operand;
  std::string filter;
  Arguments arguments;
};
struct TestExpr {
  ExprPtr operand;
  std::string test;
  Arguments arguments;
  bool negated = false;
};
struct UnaryExpr {
  UnaryOp op;
  ExprPtr operand;
};
struct BinaryExpr {
  BinaryOp op;
  ExprPtr left;
  ExprPtr right;
};
// a < b < c: Python's chained comparison.
struct CompareExpr {
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};
struct ConditionalExpr {
  ExprPtr condition;
  ExprPtr if_true;
  ExprPtr if_false;  // null: undefined
};

struct Expr {
  Location location;
  int depth = 1;
  std::variant<LiteralExpr, NameExpr, ListExpr, DictExpr, AttributeExpr, SubscriptExpr, SliceExpr, CallExpr, FilterExpr,
               TestExpr, UnaryExpr, BinaryExpr, CompareExpr, ConditionalExpr>
      node;
};

struct Stmt;
using Body = std::vector<Stmt>;

struct TextStmt {
  std::string text;
};
struct PrintStmt {
  ExprPtr expr;
};
struct IfStmt {
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, then each elif
  Body otherwise;
};
struct ForStmt {
  std::vector<std::string> targets;  // one name, or names to unpack each item into
  ExprPtr iterable;
  ExprPtr condition;  // null: every item
  Body body;
  Body otherwise;  // when no item was iterated
};
struct SetStmt {
  std::vector<std::string> targets;  // one name, or names to unpack the value into
  std::string attribute;             // non-empty: set targets[0].attribute (a namespace's)
  ExprPtr value;                     // null: a block set, whose value is `block` rendered
  Body block;
};
struct MacroStmt {
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> parameters;  // a null default: required
  Body body;
};
struct FilterBlockStmt {
  std::string filter;
  Arguments arguments;
  Body body;
};
struct LoopControlStmt {
  bool is_break;  // else continue
};

struct Stmt {
  Location location;
  std::variant<TextStmt, PrintStmt, IfStmt, ForStmt, SetStmt, MacroStmt, FilterBlockStmt, LoopControlStmt> node;
};

struct Template {
  std::string name;
  Body body;
};

}  // namespace anyprec::jinja
