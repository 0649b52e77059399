#include "engine/chat/chat_template.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/chat/jinja_ast.h"
#include "engine/chat/jinja_interpreter.h"
#include "engine/chat/jinja_parser.h"

namespace anyprec {
namespace {

using nlohmann::ordered_json;

// A special token field of tokenizer_config.json: a string or an AddedToken object.
std::optional<std::string> SpecialToken(const ordered_json& config, const char* key) {
  const auto field = config.find(key);
  if (field == config.end()) return std::nullopt;
  if (field->is_string()) return field->get<std::string>();
  if (field->is_object()) {
    const auto content = field->find("content");
    if (content != field->end() && content->is_string()) return content->get<std::string>();
  }
  return std::nullopt;
}

// The template text of tokenizer_config.json's chat_template field, or nullopt without one.
absl::StatusOr<std::optional<std::string>> ConfigTemplate(const ordered_json& config, const std::string& path) {
  const auto field = config.find("chat_template");
  if (field == config.end() || field->is_null()) return std::nullopt;
  if (field->is_string()) return field->get<std::string>();
  if (field->is_array()) {
    for (const ordered_json& entry : *field) {
      if (!entry.is_object()) continue;
      const auto name = entry.find("name");
      const auto text = entry.find("template");
      if (name != entry.end() && *name == "default" && text != entry.end() && text->is_string()) return text->get<std::string>();
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": chat_template lists no template named 'default'"));
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": chat_template is neither a string nor a list of {name, template}"));
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string name, std::shared_ptr<const jinja::Template> parsed)
    : source_(std::move(source)), name_(std::move(name)), parsed_(std::move(parsed)) {}

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string source, std::string name) {
  ASSIGN_OR_RETURN(jinja::Template parsed, jinja::ParseTemplate(source, name));
  auto shared = std::make_shared<const jinja::Template>(std::move(parsed));
  return ChatTemplate(std::move(source), std::move(name), std::move(shared));
}

absl::StatusOr<std::string> ChatTemplate::Render(const ordered_json& messages, const ChatTemplateOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError(absl::StrCat(name_, ": messages must be a JSON array"));
  if (!options.variables.is_object()) return absl::InvalidArgumentError(absl::StrCat(name_, ": the extra variables must be a JSON object"));
  jinja::ValueDict variables;
  for (const auto& [key, json] : options.variables.items()) {
    absl::StatusOr<jinja::Value> value = jinja::ValueFromJson(json, jinja::kMaxValueDepth);
    if (!value.ok()) return absl::InvalidArgumentError(absl::StrCat(name_, ": variable '", key, "': ", std::string(value.status().message())));
    variables.emplace_back(key, *std::move(value));
  }
  absl::StatusOr<jinja::Value> message_list = jinja::ValueFromJson(messages, jinja::kMaxValueDepth);
  if (!message_list.ok()) return absl::InvalidArgumentError(absl::StrCat(name_, ": messages: ", std::string(message_list.status().message())));
  variables.emplace_back("messages", *std::move(message_list));
  variables.emplace_back("add_generation_prompt", jinja::Value::Bool(options.add_generation_prompt));
  if (options.bos_token) variables.emplace_back("bos_token", jinja::Value::String(*options.bos_token));
  if (options.eos_token) variables.emplace_back("eos_token", jinja::Value::String(*options.eos_token));
  return jinja::Render(*parsed_, std::move(variables), jinja::RenderLimits{options.limits.max_work, options.limits.max_output_bytes});
}

absl::StatusOr<ModelChatTemplate> LoadChatTemplate(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  const auto exists = [](const std::string& path) {
    std::error_code error;
    return std::filesystem::is_regular_file(path, error);
  };
  const std::string config_path = (dir / "tokenizer_config.json").string();
  std::optional<std::string> source;
  std::string name;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  if (exists(config_path)) {
    ASSIGN_OR_RETURN(const std::string text, ReadTextFile(config_path));
    const ordered_json config = ordered_json::parse(text, nullptr, false);
    if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
    ASSIGN_OR_RETURN(source, ConfigTemplate(config, config_path));
    name = config_path;
    bos_token = SpecialToken(config, "bos_token");
    eos_token = SpecialToken(config, "eos_token");
  }
  const std::string jinja_path = (dir / "chat_template.jinja").string();
  if (!source && exists(jinja_path)) {
    ASSIGN_OR_RETURN(source, ReadTextFile(jinja_path));
    name = jinja_path;
  }
  if (!source) {
    return absl::NotFoundError(absl::StrCat(model_dir, " has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)"));
  }
  ASSIGN_OR_RETURN(ChatTemplate parsed, ChatTemplate::Parse(*std::move(source), std::move(name)));
  return ModelChatTemplate{std::move(parsed), std::move(bos_token), std::move(eos_token)};
}

}  // namespace anyprec
