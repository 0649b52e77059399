#include <cstdio>

#include "cli/commands.h"
#include "engine/base/mapped_file.h"
#include "engine/chat/chat_template.h"
#include "nlohmann/json.hpp"

namespace anyprec::cli {
namespace {

using nlohmann::ordered_json;

// --var's NAME=JSON: the name and the parsed value, or nullopt when malformed.
std::optional<std::pair<std::string, ordered_json>> ParseVariable(const std::string& assignment) {
  const size_t equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) return std::nullopt;
  ordered_json value = ordered_json::parse(assignment.substr(equals + 1), nullptr, false);
  if (value.is_discarded()) return std::nullopt;
  return std::make_pair(assignment.substr(0, equals), std::move(value));
}

}  // namespace

void AddRenderChatCommand(CLI::App& app, RenderChatOptions& o) {
  CLI::App* cmd = app.add_subcommand("render-chat", "Print the prompt a chat template makes of a conversation");
  CLI::Option_group* source = cmd->add_option_group("template", "Where the chat template comes from: exactly one of --model and --template");
  source->add_option("--model", o.model_dir, "Model folder: tokenizer_config.json's chat_template, else chat_template.jinja")
      ->check(CLI::ExistingDirectory);
  source->add_option("--template", o.template_path, "A Jinja chat template file")->check(CLI::ExistingFile);
  source->require_option(1);
  cmd->add_option("--messages", o.messages_path, "JSON file: an array of {\"role\", \"content\"} messages")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--add-generation-prompt", o.add_generation_prompt, "End with the opening of the assistant's turn");
  cmd->add_option("--bos-token", o.bos_token, "bos_token (with --model: default from tokenizer_config.json, else undefined)");
  cmd->add_option("--eos-token", o.eos_token, "eos_token (with --model: default from tokenizer_config.json, else undefined)");
  cmd->add_option("--var", o.variables, "A further variable as NAME=JSON, e.g. date_string='\"26 Jul 2024\"' (repeat for several)")
      ->check([](const std::string& assignment) {
        return ParseVariable(assignment) ? std::string() : std::string("--var takes NAME=JSON, where JSON is a JSON value");
      });
}

int RunRenderChat(const RenderChatOptions& o) {
  ChatTemplateOptions options;
  options.add_generation_prompt = o.add_generation_prompt;
  std::optional<ChatTemplate> chat_template;
  if (!o.model_dir.empty()) {
    auto loaded = LoadChatTemplate(o.model_dir);
    if (!loaded.ok()) return ReportError(loaded.status(), 1);
    chat_template = std::move(loaded->chat_template);
    options.bos_token = std::move(loaded->bos_token);
    options.eos_token = std::move(loaded->eos_token);
  } else {
    auto source = ReadTextFile(o.template_path);
    if (!source.ok()) return ReportError(source.status(), 1);
    auto parsed = ChatTemplate::Parse(*std::move(source), o.template_path);
    if (!parsed.ok()) return ReportError(parsed.status(), 1);
    chat_template = *std::move(parsed);
  }
  if (o.bos_token) options.bos_token = o.bos_token;
  if (o.eos_token) options.eos_token = o.eos_token;
  for (const std::string& assignment : o.variables) {
    auto [name, value] = *ParseVariable(assignment);
    options.variables[name] = std::move(value);
  }
  auto text = ReadTextFile(o.messages_path);
  if (!text.ok()) return ReportError(text.status(), 1);
  const ordered_json messages = ordered_json::parse(*text, nullptr, false);
  if (!messages.is_array()) return ReportError(absl::InvalidArgumentError(o.messages_path + ": not a JSON array of messages"), 1);
  const auto rendered = chat_template->Render(messages, options);
  if (!rendered.ok()) return ReportError(rendered.status(), 1);
  std::fwrite(rendered->data(), 1, rendered->size(), stdout);
  return 0;
}

}  // namespace anyprec::cli
