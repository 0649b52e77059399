#include "engine/chat/jinja_value.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/chat/jinja_strings.h"

namespace anyprec::jinja {

struct Value::ListData {
  ValueList items;
  int depth;
};

struct Value::DictData {
  ValueDict entries;
  int depth;
};

namespace {

template <typename Range, typename Project>
int DepthOver(const Range& range, Project project) {
  int deepest = 0;
  for (const auto& element : range) deepest = std::max(deepest, project(element).depth());
  return deepest + 1;
}

absl::Status AppendJson(const Value& value, std::optional<int> indent, bool sort_keys, int level, std::string& out) {
  const auto newline = [&](int at_level) {
    if (!indent) return;
    out += '\n';
    out.append(static_cast<size_t>(std::max(0, *indent)) * static_cast<size_t>(at_level), ' ');
  };
  const char* item_separator = indent ? "," : ", ";
  switch (value.kind()) {
    case Value::Kind::kNone: out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: out += value.AsBool() ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: out += std::to_string(value.AsInt()); return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double number = value.AsFloat();
      out += std::isnan(number) ? "NaN" : std::isinf(number) ? (number < 0 ? "-Infinity" : "Infinity") : PythonFloatRepr(number);
      return absl::OkStatus();
    }
    case Value::Kind::kString: AppendJsonString(value.AsString(), out); return absl::OkStatus();
    case Value::Kind::kList: {
      const ValueList& items = value.AsList();
      if (items.empty()) {
        out += "[]";
        return absl::OkStatus();
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += item_separator;
        newline(level + 1);
        RETURN_IF_ERROR(AppendJson(items[i], indent, sort_keys, level + 1, out));
      }
      newline(level);
      out += ']';
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : value.AsDict()) entries.push_back(&entry);
      if (entries.empty()) {
        out += "{}";
        return absl::OkStatus();
      }
      if (sort_keys) std::sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out += item_separator;
        newline(level + 1);
        AppendJsonString(entries[i]->first, out);
        out += ": ";
        RETURN_IF_ERROR(AppendJson(entries[i]->second, indent, sort_keys, level + 1, out));
      }
      newline(level);
      out += '}';
      return absl::OkStatus();
    }
    case Value::Kind::kUndefined:
    case Value::Kind::kNamespace:
    case Value::Kind::kCallable: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("object of type '", value.TypeName(), "' is not JSON serializable"));
}

void AppendRepr(const Value& value, std::string& out) {
  switch (value.kind()) {
    case Value::Kind::kString: out += PythonRepr(value.AsString()); return;
    case Value::Kind::kList: {
      out += '[';
      const ValueList& items = value.AsList();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ", ";
        AppendRepr(items[i], out);
      }
      out += ']';
      return;
    }
    case Value::Kind::kDict: {
      out += '{';
      bool first = true;
      for (const auto& [key, element] : value.AsDict()) {
        if (!first) out += ", ";
        first = false;
        out += PythonRepr(key);
        out += ": ";
        AppendRepr(element, out);
      }
      out += '}';
      return;
    }
    default: out += ToPythonString(value);
  }
}

}  // namespace

Value::Value(std::string undefined_name) : data_(Undefined{std::move(undefined_name)}) {}

Value Value::None() {
  Value v;
  v.data_ = std::monostate{};
  return v;
}

Value Value::Bool(bool value) {
  Value v;
  v.data_ = value;
  return v;
}

Value Value::Int(int64_t value) {
  Value v;
  v.data_ = value;
  return v;
}

Value Value::Float(double value) {
  Value v;
  v.data_ = value;
  return v;
}

Value Value::String(std::string value) {
  Value v;
  v.data_ = std::move(value);
  return v;
}

Value Value::List(ValueList items) {
  const int depth = DepthOver(items, [](const Value& item) -> const Value& { return item; });
  Value v;
  v.data_ = std::make_shared<const ListData>(ListData{std::move(items), depth});
  return v;
}

Value Value::Dict(ValueDict entries) {
  ValueDict unique;
  unique.reserve(entries.size());
  absl::flat_hash_map<std::string, size_t> index;
  for (auto& [key, element] : entries) {
    const auto [it, inserted] = index.try_emplace(key, unique.size());
    if (inserted) {
      unique.emplace_back(std::move(key), std::move(element));
    } else {
      unique[it->second].second = std::move(element);
    }
  }
  const int depth = DepthOver(unique, [](const auto& entry) -> const Value& { return entry.second; });
  Value v;
  v.data_ = std::make_shared<const DictData>(DictData{std::move(unique), depth});
  return v;
}

Value Value::NamespaceAt(Namespace& ns) {
  Value v;
  v.data_ = &ns;
  return v;
}

Value Value::MakeCallable(Callable callable) {
  Value v;
  v.data_ = std::make_shared<const Callable>(std::move(callable));
  return v;
}

Value::Kind Value::kind() const { return static_cast<Kind>(data_.index()); }

bool Value::AsBool() const { return std::get<bool>(data_); }

int64_t Value::AsInt() const {
  if (const bool* b = std::get_if<bool>(&data_)) return *b ? 1 : 0;
  return std::get<int64_t>(data_);
}

double Value::AsFloat() const {
  if (const double* d = std::get_if<double>(&data_)) return *d;
  return static_cast<double>(AsInt());
}

const std::string& Value::AsString() const { return std::get<std::string>(data_); }
const ValueList& Value::AsList() const { return std::get<std::shared_ptr<const ListData>>(data_)->items; }
const ValueDict& Value::AsDict() const { return std::get<std::shared_ptr<const DictData>>(data_)->entries; }
Namespace& Value::AsNamespace() const { return *std::get<Namespace*>(data_); }
const Callable& Value::AsCallable() const { return *std::get<std::shared_ptr<const Callable>>(data_); }
const std::string& Value::undefined_name() const { return std::get<Undefined>(data_).name; }

const Value* Value::Find(std::string_view key) const {
  const ValueDict* entries = nullptr;
  if (is_dict()) entries = &AsDict();
  if (kind() == Kind::kNamespace) entries = &AsNamespace().attributes;
  if (entries == nullptr) return nullptr;
  for (const auto& [name, element] : *entries) {
    if (name == key) return &element;
  }
  return nullptr;
}

int Value::depth() const {
  if (is_list()) return std::get<std::shared_ptr<const ListData>>(data_)->depth;
  if (is_dict()) return std::get<std::shared_ptr<const DictData>>(data_)->depth;
  return 0;
}

bool Value::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return AsBool();
    case Kind::kInt: return AsInt() != 0;
    case Kind::kFloat: return AsFloat() != 0.0;
    case Kind::kString: return !AsString().empty();
    case Kind::kList: return !AsList().empty();
    case Kind::kDict: return !AsDict().empty();
    case Kind::kNamespace:
    case Kind::kCallable: return true;
  }
  return false;
}

const char* Value::TypeName() const {
  switch (kind()) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "?";
}

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json, int max_depth) {
  if (max_depth < 0) return absl::InvalidArgumentError("JSON data nests too deeply");
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::None();
    case nlohmann::ordered_json::value_t::boolean: return Value::Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto number = json.get<uint64_t>();
      if (number <= static_cast<uint64_t>(INT64_MAX)) return Value::Int(static_cast<int64_t>(number));
      return Value::Float(static_cast<double>(number));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      items.reserve(json.size());
      for (const auto& element : json) {
        ASSIGN_OR_RETURN(Value item, ValueFromJson(element, max_depth - 1));
        items.push_back(std::move(item));
      }
      return Value::List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      ValueDict entries;
      entries.reserve(json.size());
      for (const auto& [key, element] : json.items()) {
        ASSIGN_OR_RETURN(Value item, ValueFromJson(element, max_depth - 1));
        entries.emplace_back(key, std::move(item));
      }
      return Value::Dict(std::move(entries));
    }
    case nlohmann::ordered_json::value_t::binary:
    case nlohmann::ordered_json::value_t::discarded: break;
  }
  return absl::InvalidArgumentError("JSON data holds a value that is not JSON text");
}

std::string ToPythonString(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return value.AsBool() ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(value.AsInt());
    case Value::Kind::kFloat: return PythonFloatRepr(value.AsFloat());
    case Value::Kind::kString: return value.AsString();
    case Value::Kind::kList:
    case Value::Kind::kDict: {
      std::string out;
      AppendRepr(value, out);
      return out;
    }
    case Value::Kind::kNamespace: return "<Namespace>";
    case Value::Kind::kCallable: return absl::StrCat("<function ", value.AsCallable().name, ">");
  }
  return "";
}

absl::StatusOr<std::string> ToJson(const Value& value, std::optional<int> indent, bool sort_keys) {
  std::string out;
  RETURN_IF_ERROR(AppendJson(value, indent, sort_keys, 0, out));
  return out;
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integer() && b.is_integer()) return a.AsInt() == b.AsInt();
    return a.AsFloat() == b.AsFloat();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.AsString() == b.AsString();
    case Value::Kind::kList:
      return std::equal(a.AsList().begin(), a.AsList().end(), b.AsList().begin(), b.AsList().end(), Equal);
    case Value::Kind::kDict: {
      if (a.AsDict().size() != b.AsDict().size()) return false;
      for (const auto& [key, element] : a.AsDict()) {
        const Value* other = b.Find(key);
        if (other == nullptr || !Equal(element, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return &a.AsNamespace() == &b.AsNamespace();
    case Value::Kind::kCallable: return &a.AsCallable() == &b.AsCallable();
    default: return false;
  }
}

absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::kString:
      if (!needle.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("'in <string>' requires a string as left operand, not '", needle.TypeName(), "'"));
      }
      return haystack.AsString().find(needle.AsString()) != std::string::npos;
    case Value::Kind::kList:
      return std::any_of(haystack.AsList().begin(), haystack.AsList().end(), [&](const Value& item) { return Equal(item, needle); });
    case Value::Kind::kDict: return needle.is_string() && haystack.Find(needle.AsString()) != nullptr;
    default:
      return absl::InvalidArgumentError(absl::StrCat("argument of type '", haystack.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integer() && b.is_integer()) return a.AsInt() < b.AsInt() ? -1 : a.AsInt() > b.AsInt() ? 1 : 0;
    return a.AsFloat() < b.AsFloat() ? -1 : a.AsFloat() > b.AsFloat() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.AsString().compare(b.AsString());
  return absl::InvalidArgumentError(absl::StrCat("cannot compare '", a.TypeName(), "' with '", b.TypeName(), "'"));
}

}  // namespace anyprec::jinja
