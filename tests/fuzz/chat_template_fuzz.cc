// Chat templates on arbitrary bytes: parsed as a template, then rendered over a small fixed
// conversation with tight limits. Every input must end in a rendering or an error: no crash,
// no sanitizer report, no unbounded work.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/chat/chat_template.h"
#include "nlohmann/json.hpp"

namespace {

const nlohmann::ordered_json& Conversation() {
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <think>\u00e9</think>"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"x": [1, 2.5, null]}}}]},
    {"role": "tool", "content": {"ok": true}},
    {"role": "user", "content": [{"type": "text", "text": " text "}]}])");
  return messages;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto chat_template = anyprec::ChatTemplate::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.jinja");
  if (!chat_template.ok()) return 0;
  anyprec::ChatTemplateOptions options;
  options.add_generation_prompt = size % 2 == 0;
  options.bos_token = "<s>";
  options.variables = {{"date_string", "26 Jul 2024"}, {"enable_thinking", false},
                       {"tools", nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f"}}])")}};
  options.limits.max_work = 200'000;
  options.limits.max_output_bytes = 1 << 16;
  const auto rendered = chat_template->Render(Conversation(), options);
  if (rendered.ok() && rendered->size() > options.limits.max_output_bytes) __builtin_trap();
  return 0;
}
