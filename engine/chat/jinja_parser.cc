#include "engine/chat/jinja_parser.h"

#include <algorithm>
#include <initializer_list>
#include <vector>

#include "engine/base/status_macros.h"
#include "engine/chat/jinja_builtins.h"
#include "engine/chat/jinja_lexer.h"
#include "engine/chat/jinja_nesting.h"

namespace anyprec::jinja {
namespace {

int Depth(const ExprPtr& expr) { return expr ? expr->depth : 0; }
int Depth(const Arguments& arguments) {
  int deepest = 0;
  for (const ExprPtr& argument : arguments.positional) deepest = std::max(deepest, Depth(argument));
  for (const auto& [name, argument] : arguments.keyword) deepest = std::max(deepest, Depth(argument));
  return deepest;
}

// The depth of the deepest child of a node.
struct ChildDepth {
  int operator()(const LiteralExpr&) const { return 0; }
  int operator()(const NameExpr&) const { return 0; }
  int operator()(const ListExpr& e) const {
    int deepest = 0;
    for (const ExprPtr& item : e.items) deepest = std::max(deepest, Depth(item));
    return deepest;
  }
  int operator()(const DictExpr& e) const {
    int deepest = 0;
    for (const auto& [key, value] : e.entries) deepest = std::max({deepest, Depth(key), Depth(value)});
    return deepest;
  }
  int operator()(const AttributeExpr& e) const { return Depth(e.object); }
  int operator()(const SubscriptExpr& e) const { return std::max(Depth(e.object), Depth(e.index)); }
  int operator()(const SliceExpr& e) const { return std::max({Depth(e.object), Depth(e.start), Depth(e.stop), Depth(e.step)}); }
  int operator()(const CallExpr& e) const { return std::max(Depth(e.callee), Depth(e.arguments)); }
  int operator()(const FilterExpr& e) const { return std::max(Depth(e.operand), Depth(e.arguments)); }
  int operator()(const TestExpr& e) const { return std::max(Depth(e.operand), Depth(e.arguments)); }
  int operator()(const UnaryExpr& e) const { return Depth(e.operand); }
  int operator()(const BinaryExpr& e) const { return std::max(Depth(e.left), Depth(e.right)); }
  int operator()(const CompareExpr& e) const {
    int deepest = Depth(e.first);
    for (const auto& [op, operand] : e.rest) deepest = std::max(deepest, Depth(operand));
    return deepest;
  }
  int operator()(const ConditionalExpr& e) const { return std::max({Depth(e.condition), Depth(e.if_true), Depth(e.if_false)}); }
};

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::string name) : tokens_(std::move(tokens)), name_(std::move(name)) {}

  absl::StatusOr<Template> Run() {
    Template parsed{name_, {}};
    ASSIGN_OR_RETURN(parsed.body, ParseBody({}, "", Location{}));
    return parsed;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return tokens_[std::min(position_ + ahead, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& token = tokens_[position_];
    if (position_ + 1 < tokens_.size()) ++position_;
    return token;
  }
  bool AtOperator(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool AtName(std::string_view name, size_t ahead = 0) const { return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name; }
  bool SkipOperator(std::string_view op) {
    if (!AtOperator(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!AtName(name)) return false;
    Next();
    return true;
  }

  absl::Status Error(Location location, std::string_view message) const { return LocatedError(name_, location, message); }

  static std::string Describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::kText: return "text";
      case TokenKind::kVariableBegin: return "'{{'";
      case TokenKind::kVariableEnd: return "'}}'";
      case TokenKind::kBlockBegin: return "'{%'";
      case TokenKind::kBlockEnd: return "'%}'";
      case TokenKind::kString: return "a string";
      case TokenKind::kInteger:
      case TokenKind::kFloat: return "a number";
      case TokenKind::kEnd: return "the end of the template";
      case TokenKind::kName:
      case TokenKind::kOperator: return absl::StrCat("'", token.text, "'");
    }
    return "?";
  }

  absl::Status Unexpected(std::string_view expected) const {
    return Error(Peek().location, absl::StrCat("expected ", std::string(expected), ", found ", Describe(Peek())));
  }
  absl::Status ExpectOperator(std::string_view op) {
    if (!SkipOperator(op)) return Unexpected(absl::StrCat("'", std::string(op), "'"));
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Peek().kind != TokenKind::kBlockEnd) return Unexpected("'%}'");
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName(std::string_view what) {
    if (Peek().kind != TokenKind::kName) return Unexpected(what);
    return Next().text;
  }

  template <typename Node>
  absl::StatusOr<ExprPtr> Make(Location location, Node node) {
    auto expr = std::make_unique<Expr>(Expr{location, 1, std::move(node)});
    expr->depth = 1 + std::visit(ChildDepth{}, expr->node);
    if (expr->depth > kMaxExpressionDepth) return Error(location, "expression nested too deeply");
    return expr;
  }

  // ---- Statements ----

  // Statements up to a {% name %} tag whose name is one of `terminators` (the name is consumed
  // and stored in `terminator`, the tag's end is not). `opener` and `opened_at` name the block
  // for the error when the template ends first; an empty list parses to the end.
  absl::StatusOr<Body> ParseBody(std::initializer_list<std::string_view> terminators, std::string_view opener, Location opened_at,
                                 std::string* terminator = nullptr) {
    NestingLevel level(block_nesting_);
    if (block_nesting_ > kMaxNesting) return Error(opened_at, "blocks nested too deeply");
    Body body;
    while (true) {
      const Token& token = Peek();
      switch (token.kind) {
        case TokenKind::kText: body.push_back(Stmt{token.location, TextStmt{Next().text}}); break;
        case TokenKind::kVariableBegin: {
          const Location location = Next().location;
          ASSIGN_OR_RETURN(ExprPtr expr, ParseExpression());
          if (Peek().kind != TokenKind::kVariableEnd) return Unexpected("'}}'");
          Next();
          body.push_back(Stmt{location, PrintStmt{std::move(expr)}});
          break;
        }
        case TokenKind::kBlockBegin: {
          const Token& keyword = Peek(1);
          if (keyword.kind == TokenKind::kName && std::find(terminators.begin(), terminators.end(), keyword.text) != terminators.end()) {
            Next();
            const std::string& name = Next().text;
            if (terminator != nullptr) *terminator = name;
            return body;
          }
          RETURN_IF_ERROR(ParseStatement(body));
          break;
        }
        case TokenKind::kEnd:
          if (terminators.size() == 0) return body;
          return Error(opened_at, absl::StrCat("'", std::string(opener), "' is never closed: expected '", std::string(*(terminators.end() - 1)),
                                               "' before the end of the template"));
        default: return Unexpected("text or a tag");
      }
    }
  }

  absl::Status ParseStatement(Body& body) {
    const Location location = Next().location;  // {%
    if (Peek().kind != TokenKind::kName) return Unexpected("a statement name");
    const Token& keyword = Next();
    const std::string& name = keyword.text;
    if (name == "if") return ParseIf(location, body);
    if (name == "for") return ParseFor(location, body);
    if (name == "set") return ParseSet(location, body);
    if (name == "macro") return ParseMacro(location, body);
    if (name == "filter") return ParseFilterBlock(location, body);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Error(keyword.location, absl::StrCat("'", name, "' outside a for loop"));
      RETURN_IF_ERROR(ExpectBlockEnd());
      body.push_back(Stmt{location, LoopControlStmt{name == "break"}});
      return absl::OkStatus();
    }
    if (name == "generation") {
      // transformers marks the assistant's text with it; rendering keeps the text as it is.
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(Body inner, ParseBody({"endgeneration"}, "generation", location));
      RETURN_IF_ERROR(ExpectBlockEnd());
      std::move(inner.begin(), inner.end(), std::back_inserter(body));
      return absl::OkStatus();
    }
    if (name.starts_with("end") || name == "elif" || name == "else") {
      return Error(keyword.location, absl::StrCat("unexpected '", name, "'"));
    }
    return Error(keyword.location, absl::StrCat("unknown statement '", name, "'"));
  }

  absl::Status ParseIf(Location location, Body& body) {
    IfStmt statement;
    std::string terminator = "if";
    while (terminator == "if" || terminator == "elif") {
      ASSIGN_OR_RETURN(ExprPtr condition, ParseExpression());
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(Body branch, ParseBody({"elif", "else", "endif"}, "if", location, &terminator));
      statement.branches.emplace_back(std::move(condition), std::move(branch));
    }
    if (terminator == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(statement.otherwise, ParseBody({"endif"}, "if", location));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    body.push_back(Stmt{location, std::move(statement)});
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ParseTargets() {
    std::vector<std::string> targets;
    do {
      ASSIGN_OR_RETURN(std::string target, ExpectName("a variable name"));
      targets.push_back(std::move(target));
    } while (SkipOperator(","));
    return targets;
  }

  absl::Status ParseFor(Location location, Body& body) {
    ForStmt statement;
    ASSIGN_OR_RETURN(statement.targets, ParseTargets());
    if (!SkipName("in")) return Unexpected("'in'");
    ASSIGN_OR_RETURN(statement.iterable, ParseOr());
    if (SkipName("if")) {
      ASSIGN_OR_RETURN(statement.condition, ParseExpression());
    }
    if (AtName("recursive")) return Error(Peek().location, "recursive loops are not supported");
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string terminator;
    ++loop_depth_;
    absl::StatusOr<Body> loop_body = ParseBody({"else", "endfor"}, "for", location, &terminator);
    --loop_depth_;
    if (!loop_body.ok()) return loop_body.status();
    statement.body = *std::move(loop_body);
    if (terminator == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(statement.otherwise, ParseBody({"endfor"}, "for", location));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    body.push_back(Stmt{location, std::move(statement)});
    return absl::OkStatus();
  }

  absl::Status ParseSet(Location location, Body& body) {
    SetStmt statement;
    ASSIGN_OR_RETURN(statement.targets, ParseTargets());
    if (statement.targets.size() == 1 && SkipOperator(".")) {
      ASSIGN_OR_RETURN(statement.attribute, ExpectName("an attribute name"));
    }
    if (SkipOperator("=")) {
      ASSIGN_OR_RETURN(statement.value, ParseTuple(location));
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (Peek().kind == TokenKind::kBlockEnd && statement.targets.size() == 1) {
      Next();
      ASSIGN_OR_RETURN(statement.block, ParseBody({"endset"}, "set", location));
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else {
      return Unexpected("'='");
    }
    body.push_back(Stmt{location, std::move(statement)});
    return absl::OkStatus();
  }

  absl::Status ParseMacro(Location location, Body& body) {
    MacroStmt statement;
    ASSIGN_OR_RETURN(statement.name, ExpectName("a macro name"));
    RETURN_IF_ERROR(ExpectOperator("("));
    while (!SkipOperator(")")) {
      if (!statement.parameters.empty()) RETURN_IF_ERROR(ExpectOperator(","));
      if (SkipOperator(")")) break;
      ASSIGN_OR_RETURN(std::string parameter, ExpectName("a parameter name"));
      ExprPtr default_value;
      if (SkipOperator("=")) {
        ASSIGN_OR_RETURN(default_value, ParseExpression());
      }
      statement.parameters.emplace_back(std::move(parameter), std::move(default_value));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    const int enclosing_loops = std::exchange(loop_depth_, 0);
    absl::StatusOr<Body> macro_body = ParseBody({"endmacro"}, "macro", location);
    loop_depth_ = enclosing_loops;
    if (!macro_body.ok()) return macro_body.status();
    statement.body = *std::move(macro_body);
    RETURN_IF_ERROR(ExpectBlockEnd());
    body.push_back(Stmt{location, std::move(statement)});
    return absl::OkStatus();
  }

  absl::Status ParseFilterBlock(Location location, Body& body) {
    FilterBlockStmt statement;
    const Location name_location = Peek().location;
    ASSIGN_OR_RETURN(statement.filter, ExpectName("a filter name"));
    if (!IsFilter(statement.filter)) return Error(name_location, absl::StrCat("unknown filter '", statement.filter, "'"));
    if (AtOperator("(")) {
      ASSIGN_OR_RETURN(statement.arguments, ParseArguments());
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    ASSIGN_OR_RETURN(statement.body, ParseBody({"endfilter"}, "filter", location));
    RETURN_IF_ERROR(ExpectBlockEnd());
    body.push_back(Stmt{location, std::move(statement)});
    return absl::OkStatus();
  }

  // ---- Expressions, loosest binding first ----

  // `a, b` (a list) or one expression: the value of a set.
  absl::StatusOr<ExprPtr> ParseTuple(Location location) {
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
    if (!AtOperator(",")) return first;
    ListExpr tuple;
    tuple.items.push_back(std::move(first));
    while (SkipOperator(",")) {
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      tuple.items.push_back(std::move(item));
    }
    return Make(location, std::move(tuple));
  }

  absl::StatusOr<ExprPtr> ParseExpression() {
    NestingLevel level(nesting_);
    if (nesting_ > kMaxExpressionDepth) return Error(Peek().location, "expression nested too deeply");
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (AtName("if")) {
      const Location location = Next().location;
      ConditionalExpr conditional;
      ASSIGN_OR_RETURN(conditional.condition, ParseOr());
      if (SkipName("else")) {
        ASSIGN_OR_RETURN(conditional.if_false, ParseExpression());
      }
      conditional.if_true = std::move(expr);
      ASSIGN_OR_RETURN(expr, Make(location, std::move(conditional)));
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() { return ParseLogical("or", BinaryOp::kOr, &Parser::ParseAnd); }
  absl::StatusOr<ExprPtr> ParseAnd() { return ParseLogical("and", BinaryOp::kAnd, &Parser::ParseNot); }

  absl::StatusOr<ExprPtr> ParseLogical(std::string_view keyword, BinaryOp op, absl::StatusOr<ExprPtr> (Parser::*operand)()) {
    ASSIGN_OR_RETURN(ExprPtr left, (this->*operand)());
    while (AtName(keyword)) {
      const Location location = Next().location;
      ASSIGN_OR_RETURN(ExprPtr right, (this->*operand)());
      ASSIGN_OR_RETURN(left, Make(location, BinaryExpr{op, std::move(left), std::move(right)}));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (!AtName("not")) return ParseCompare();
    NestingLevel level(nesting_);
    const Location location = Next().location;
    if (nesting_ > kMaxExpressionDepth) return Error(location, "expression nested too deeply");
    ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    return Make(location, UnaryExpr{UnaryOp::kNot, std::move(operand)});
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const Location location = Peek().location;
    ASSIGN_OR_RETURN(ExprPtr first, ParseBinary(0));
    CompareExpr compare;
    while (true) {
      static constexpr std::pair<std::string_view, CompareOp> kOperators[] = {
          {"==", CompareOp::kEqual}, {"!=", CompareOp::kNotEqual}, {"<", CompareOp::kLess},
          {"<=", CompareOp::kLessEqual}, {">", CompareOp::kGreater}, {">=", CompareOp::kGreaterEqual}};
      const auto* found = std::find_if(std::begin(kOperators), std::end(kOperators), [&](const auto& entry) { return AtOperator(entry.first); });
      CompareOp op;
      if (found != std::end(kOperators)) {
        op = found->second;
        Next();
      } else if (AtName("in")) {
        op = CompareOp::kIn;
        Next();
      } else if (AtName("not") && AtName("in", 1)) {
        op = CompareOp::kNotIn;
        Next();
        Next();
      } else {
        break;
      }
      ASSIGN_OR_RETURN(ExprPtr operand, ParseBinary(0));
      compare.rest.emplace_back(op, std::move(operand));
    }
    if (compare.rest.empty()) return first;
    compare.first = std::move(first);
    return Make(location, std::move(compare));
  }

  // Jinja's arithmetic levels, loosest first: + -, then ~, then * / // %, then **.
  absl::StatusOr<ExprPtr> ParseBinary(size_t level) {
    static const std::vector<std::vector<std::pair<std::string_view, BinaryOp>>> kLevels = {
        {{"+", BinaryOp::kAdd}, {"-", BinaryOp::kSubtract}},
        {{"~", BinaryOp::kConcat}},
        {{"*", BinaryOp::kMultiply}, {"/", BinaryOp::kDivide}, {"//", BinaryOp::kFloorDivide}, {"%", BinaryOp::kModulo}},
        {{"**", BinaryOp::kPower}}};
    if (level == kLevels.size()) return ParseUnary(true);
    ASSIGN_OR_RETURN(ExprPtr left, ParseBinary(level + 1));
    while (true) {
      const auto& operators = kLevels[level];
      const auto found = std::find_if(operators.begin(), operators.end(), [&](const auto& entry) { return AtOperator(entry.first); });
      if (found == operators.end()) return left;
      const Location location = Next().location;
      ASSIGN_OR_RETURN(ExprPtr right, ParseBinary(level + 1));
      ASSIGN_OR_RETURN(left, Make(location, BinaryExpr{found->second, std::move(left), std::move(right)}));
    }
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filters) {
    NestingLevel level(nesting_);
    if (nesting_ > kMaxExpressionDepth) return Error(Peek().location, "expression nested too deeply");
    ExprPtr expr;
    if (AtOperator("-") || AtOperator("+")) {
      const Token& sign = Next();
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      ASSIGN_OR_RETURN(expr, Make(sign.location, UnaryExpr{sign.text == "-" ? UnaryOp::kNegate : UnaryOp::kPlus, std::move(operand)}));
    } else {
      ASSIGN_OR_RETURN(expr, ParsePrimary());
    }
    ASSIGN_OR_RETURN(expr, ParsePostfix(std::move(expr)));
    if (!with_filters) return expr;
    return ParseFiltersAndTests(std::move(expr));
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& token = Next();
    switch (token.kind) {
      case TokenKind::kName: {
        const std::string& name = token.text;
        if (name == "true" || name == "True") return Make(token.location, LiteralExpr{Value::Bool(true)});
        if (name == "false" || name == "False") return Make(token.location, LiteralExpr{Value::Bool(false)});
        if (name == "none" || name == "None") return Make(token.location, LiteralExpr{Value::None()});
        return Make(token.location, NameExpr{name});
      }
      case TokenKind::kString: {
        std::string text = token.text;
        while (Peek().kind == TokenKind::kString) text += Next().text;  // "a" "b" is "ab"
        return Make(token.location, LiteralExpr{Value::String(std::move(text))});
      }
      case TokenKind::kInteger: return Make(token.location, LiteralExpr{Value::Int(token.integer)});
      case TokenKind::kFloat: return Make(token.location, LiteralExpr{Value::Float(token.number)});
      case TokenKind::kOperator:
        if (token.text == "(") return ParseParenthesized(token.location);
        if (token.text == "[") return ParseList(token.location);
        if (token.text == "{") return ParseDict(token.location);
        break;
      default: break;
    }
    return Error(token.location, absl::StrCat("expected an expression, found ", Describe(token)));
  }

  // ( expr ) or a tuple ( a, b ), which is a list here.
  absl::StatusOr<ExprPtr> ParseParenthesized(Location location) {
    if (SkipOperator(")")) return Make(location, ListExpr{});
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
    if (SkipOperator(")")) return first;
    ListExpr tuple;
    tuple.items.push_back(std::move(first));
    while (SkipOperator(",")) {
      if (AtOperator(")")) break;
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      tuple.items.push_back(std::move(item));
    }
    RETURN_IF_ERROR(ExpectOperator(")"));
    return Make(location, std::move(tuple));
  }

  absl::StatusOr<ExprPtr> ParseList(Location location) {
    ListExpr list;
    while (!SkipOperator("]")) {
      if (!list.items.empty()) RETURN_IF_ERROR(ExpectOperator(","));
      if (SkipOperator("]")) break;
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      list.items.push_back(std::move(item));
    }
    return Make(location, std::move(list));
  }

  absl::StatusOr<ExprPtr> ParseDict(Location location) {
    DictExpr dict;
    while (!SkipOperator("}")) {
      if (!dict.entries.empty()) RETURN_IF_ERROR(ExpectOperator(","));
      if (SkipOperator("}")) break;
      ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
      RETURN_IF_ERROR(ExpectOperator(":"));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      dict.entries.emplace_back(std::move(key), std::move(value));
    }
    return Make(location, std::move(dict));
  }

  // .name, .0, [index], [start:stop:step] and (arguments), in any sequence.
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr expr) {
    while (true) {
      const Location location = Peek().location;
      if (SkipOperator(".")) {
        if (Peek().kind == TokenKind::kInteger) {
          const Token& number = Next();
          ASSIGN_OR_RETURN(ExprPtr index, Make(number.location, LiteralExpr{Value::Int(number.integer)}));
          ASSIGN_OR_RETURN(expr, Make(location, SubscriptExpr{std::move(expr), std::move(index)}));
        } else {
          ASSIGN_OR_RETURN(std::string attribute, ExpectName("an attribute name"));
          ASSIGN_OR_RETURN(expr, Make(location, AttributeExpr{std::move(expr), std::move(attribute)}));
        }
      } else if (SkipOperator("[")) {
        ASSIGN_OR_RETURN(expr, ParseSubscript(location, std::move(expr)));
      } else if (AtOperator("(")) {
        ASSIGN_OR_RETURN(Arguments arguments, ParseArguments());
        ASSIGN_OR_RETURN(expr, Make(location, CallExpr{std::move(expr), std::move(arguments)}));
      } else {
        return expr;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(Location location, ExprPtr object) {
    ExprPtr start;
    if (!AtOperator(":")) {
      ASSIGN_OR_RETURN(start, ParseExpression());
      if (SkipOperator("]")) return Make(location, SubscriptExpr{std::move(object), std::move(start)});
    }
    RETURN_IF_ERROR(ExpectOperator(":"));
    SliceExpr slice{std::move(object), std::move(start), nullptr, nullptr};
    if (!AtOperator(":") && !AtOperator("]")) {
      ASSIGN_OR_RETURN(slice.stop, ParseExpression());
    }
    if (SkipOperator(":") && !AtOperator("]")) {
      ASSIGN_OR_RETURN(slice.step, ParseExpression());
    }
    RETURN_IF_ERROR(ExpectOperator("]"));
    return Make(location, std::move(slice));
  }

  // ( positional..., name=value... )
  absl::StatusOr<Arguments> ParseArguments() {
    RETURN_IF_ERROR(ExpectOperator("("));
    Arguments arguments;
    bool first = true;
    while (!SkipOperator(")")) {
      if (!first) RETURN_IF_ERROR(ExpectOperator(","));
      first = false;
      if (SkipOperator(")")) break;
      if (Peek().kind == TokenKind::kName && AtOperator("=", 1)) {
        std::string name = Next().text;
        Next();
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        arguments.keyword.emplace_back(std::move(name), std::move(value));
        continue;
      }
      if (!arguments.keyword.empty()) return Error(Peek().location, "positional argument after a keyword argument");
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      arguments.positional.push_back(std::move(value));
    }
    return arguments;
  }

  // | filter(arguments) and `is [not] test [argument]`, in any sequence.
  absl::StatusOr<ExprPtr> ParseFiltersAndTests(ExprPtr expr) {
    while (true) {
      const Location location = Peek().location;
      if (SkipOperator("|")) {
        const Location name_location = Peek().location;
        ASSIGN_OR_RETURN(std::string filter, ExpectName("a filter name"));
        if (!IsFilter(filter)) return Error(name_location, absl::StrCat("unknown filter '", filter, "'"));
        Arguments arguments;
        if (AtOperator("(")) {
          ASSIGN_OR_RETURN(arguments, ParseArguments());
        }
        ASSIGN_OR_RETURN(expr, Make(location, FilterExpr{std::move(expr), std::move(filter), std::move(arguments)}));
      } else if (SkipName("is")) {
        const bool negated = SkipName("not");
        const Location name_location = Peek().location;
        ASSIGN_OR_RETURN(std::string test, ExpectName("a test name"));
        if (!IsTest(test)) return Error(name_location, absl::StrCat("unknown test '", test, "'"));
        Arguments arguments;
        if (AtOperator("(")) {
          ASSIGN_OR_RETURN(arguments, ParseArguments());
        } else if (StartsTestArgument()) {
          ASSIGN_OR_RETURN(ExprPtr argument, ParsePrimary());
          ASSIGN_OR_RETURN(argument, ParsePostfix(std::move(argument)));
          arguments.positional.push_back(std::move(argument));
        }
        ASSIGN_OR_RETURN(expr, Make(location, TestExpr{std::move(expr), std::move(test), std::move(arguments), negated}));
      } else {
        return expr;
      }
    }
  }

  // Jinja lets a test take one argument without parentheses: `x is divisibleby 3`.
  bool StartsTestArgument() const {
    const Token& token = Peek();
    if (token.kind == TokenKind::kName) {
      static constexpr std::string_view kKeywords[] = {"and", "or", "else", "if", "in", "is", "not"};
      return std::find(std::begin(kKeywords), std::end(kKeywords), token.text) == std::end(kKeywords);
    }
    return token.kind == TokenKind::kString || token.kind == TokenKind::kInteger || token.kind == TokenKind::kFloat ||
           AtOperator("[") || AtOperator("{");
  }

  std::vector<Token> tokens_;
  std::string name_;
  size_t position_ = 0;
  int block_nesting_ = 0;
  int nesting_ = 0;  // of expressions
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Template> ParseTemplate(std::string_view source, std::string name) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source, name));
  return Parser(std::move(tokens), std::move(name)).Run();
}

}  // namespace anyprec::jinja
