// Chat templates: the Jinja program in a model's tokenizer_config.json that turns a conversation
// into the prompt text, rendered as Hugging Face transformers renders it (trim_blocks and
// lstrip_blocks on, transformers' tojson, raise_exception and strftime_now). The interpreter
// covers what real chat templates use; anything else is an error naming the template, line and
// column, never a crash, and every render is bounded in work and output, so templates and
// conversations from untrusted hands are safe to render.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace anyprec {

namespace jinja {
struct Template;
}

struct ChatTemplateLimits {
  // Work units: about one per expression evaluated, statement run, loop iteration or 64 bytes
  // built. Real templates spend a few hundred per message.
  int64_t max_work = 50'000'000;
  // The largest string a render may build, the output included.
  size_t max_output_bytes = size_t{64} << 20;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  // Unset: the variable is undefined (as transformers leaves a null bos_token).
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // Further variables by name (an object): date_string, enable_thinking, tools, …
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
  ChatTemplateLimits limits;
};

class ChatTemplate {
 public:
  // Errors (InvalidArgument) read "name:line:column: message".
  static absl::StatusOr<ChatTemplate> Parse(std::string source, std::string name);

  // The prompt for `messages` (a list of {"role", "content", …} objects; an ordered_json keeps
  // their keys' order for tojson, and a plain nlohmann::json converts to one). Errors:
  // InvalidArgument "name:line:column: message" when the template fails, or the template's own
  // message when it calls raise_exception; ResourceExhausted past options.limits.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& options) const;

  const std::string& name() const { return name_; }
  const std::string& source() const { return source_; }

 private:
  ChatTemplate(std::string source, std::string name, std::shared_ptr<const jinja::Template> parsed);

  std::string source_;
  std::string name_;
  std::shared_ptr<const jinja::Template> parsed_;  // shared: copies of a template share its tree
};

// A model folder's chat template and the special tokens its tokenizer_config.json names.
struct ModelChatTemplate {
  ChatTemplate chat_template;
  std::optional<std::string> bos_token;  // a string, or an AddedToken object's "content"
  std::optional<std::string> eos_token;
};

// tokenizer_config.json's chat_template (a string, or a list of {"name", "template"} of which
// "default" is taken), else chat_template.jinja beside it. NotFound, naming the folder, when the
// model has no template; InvalidArgument when a file is malformed or the template does not parse.
absl::StatusOr<ModelChatTemplate> LoadChatTemplate(const std::string& model_dir);

}  // namespace anyprec
