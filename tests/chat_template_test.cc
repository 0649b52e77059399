// Chat templates: the seven real templates in ../shared/chat-templates render every reference
// conversation byte for byte as Hugging Face does, and the renderings tokenize to the reference
// ids; Jinja's semantics case by case; errors located by template, line and column; hostile
// templates end in errors within their limits; model folders' templates are found.
#include "engine/chat/chat_template.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "engine/base/mapped_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

using nlohmann::ordered_json;
using testing::SharedPath;

// `text` with newlines and tabs visible, for failure messages.
std::string Visible(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out;
}

// Where two renderings first differ, with some text around it.
std::string Difference(const std::string& expected, const std::string& actual) {
  const auto [at_expected, at_actual] = std::mismatch(expected.begin(), expected.end(), actual.begin(), actual.end());
  const auto offset = static_cast<size_t>(at_expected - expected.begin());
  const size_t from = offset < 40 ? 0 : offset - 40;
  return "first difference at byte " + std::to_string(offset) + " (expected " + std::to_string(expected.size()) + " bytes, got " +
         std::to_string(actual.size()) + ")\n  expected: …" + Visible(expected.substr(from, 100)) + "…\n  actual:   …" +
         Visible(actual.substr(from, 100)) + "…";
}

std::string ReadShared(const std::string& relative) {
  auto text = ReadTextFile(SharedPath(relative));
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

ChatTemplate MustParse(const std::string& source, const std::string& name = "test.jinja") {
  auto parsed = ChatTemplate::Parse(source, name);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return *ChatTemplate::Parse("", name);
  return *std::move(parsed);
}

// `source` rendered with `variables` (and no messages), or the error's message.
std::string RenderText(const std::string& source, ordered_json variables = ordered_json::object()) {
  auto parsed = ChatTemplate::Parse(source, "test.jinja");
  if (!parsed.ok()) return "parse error: " + std::string(parsed.status().message());
  ChatTemplateOptions options;
  options.variables = std::move(variables);
  auto rendered = parsed->Render(ordered_json::array(), options);
  if (!rendered.ok()) return "render error: " + std::string(rendered.status().message());
  return *rendered;
}

// ---- The reference renderings ----

struct ReferenceSet {
  const char* name;
  const char* tokenizer;
};

class ReferenceTest : public ::testing::TestWithParam<ReferenceSet> {};

TEST_P(ReferenceTest, EveryCaseRendersAndTokenizesAsHuggingFace) {
  const ReferenceSet& set = GetParam();
  const std::string name = std::string(set.name) + ".jinja";
  const ChatTemplate chat_template = MustParse(ReadShared("chat-templates/" + name), name);
  auto tokenizer = Tokenizer::Load(SharedPath(std::string("tokenizers/") + set.tokenizer + "/tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::ifstream lines(SharedPath("chat-templates/" + std::string(set.name) + ".reference.jsonl"));
  std::string line;
  int cases = 0;
  while (std::getline(lines, line)) {
    const ordered_json reference = ordered_json::parse(line);
    const std::string id = reference["case"];
    SCOPED_TRACE(name + " case " + id);
    ++cases;
    ChatTemplateOptions options;
    options.add_generation_prompt = reference["add_generation_prompt"];
    if (reference["bos_token"].is_string()) options.bos_token = reference["bos_token"];
    if (reference["eos_token"].is_string()) options.eos_token = reference["eos_token"];
    options.variables = reference["extra"];
    const absl::StatusOr<std::string> rendered = chat_template.Render(reference["messages"], options);
    if (reference.contains("error")) {
      ASSERT_FALSE(rendered.ok()) << "expected the template to raise: " << reference["error"];
      EXPECT_EQ(rendered.status().message(), reference["error"].get<std::string>());
      continue;
    }
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    const std::string expected = reference["rendered"];
    if (*rendered != expected) {
      ADD_FAILURE() << Difference(expected, *rendered);
      continue;
    }
    EXPECT_EQ(tokenizer->Encode(*rendered), reference["ids"].get<std::vector<TokenId>>());
  }
  EXPECT_EQ(cases, 13);
}

INSTANTIATE_TEST_SUITE_P(SharedTemplates, ReferenceTest,
                         ::testing::Values(ReferenceSet{"llama-3.1", "llama-3.1"}, ReferenceSet{"llama-3.2", "llama-3.1"},
                                           ReferenceSet{"llama-3", "llama-3.1"}, ReferenceSet{"qwen3", "qwen3"},
                                           ReferenceSet{"qwen3-legacy", "qwen3"}, ReferenceSet{"qwen2.5", "qwen3"},
                                           ReferenceSet{"gemma3", "gemma3"}),
                         [](const ::testing::TestParamInfo<ReferenceSet>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (c == '-' || c == '.') c = '_';
                           }
                           return name;
                         });

// Llama 3.2 calls strftime_now("%d %b %Y") when no date_string is given, as transformers does.
TEST(ChatTemplate, StrftimeNowGivesTodaysDate) {
  const ChatTemplate llama = MustParse(ReadShared("chat-templates/llama-3.2.jinja"), "llama-3.2.jinja");
  ChatTemplateOptions options;
  options.bos_token = "<|begin_of_text|>";
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char today[32];
  std::strftime(today, sizeof(today), "%d %b %Y", &local);
  const auto rendered = llama.Render(ordered_json::parse(R"([{"role": "user", "content": "hi"}])"), options);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_NE(rendered->find(std::string("Today Date: ") + today + "\n"), std::string::npos) << *rendered;
}

// The tool branches the reference conversations do not reach: tojson as transformers writes it.
TEST(ChatTemplate, ToolsRenderWithTransformersJson) {
  const ChatTemplate qwen = MustParse(ReadShared("chat-templates/qwen3.jinja"), "qwen3.jinja");
  ChatTemplateOptions options;
  options.variables["tools"] = ordered_json::parse(R"([{"type": "function", "function": {"name": "now", "parameters": {}}}])");
  const auto rendered = qwen.Render(ordered_json::parse(R"([{"role": "user", "content": "time?"},
      {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "now", "arguments": {"tz": "UTC"}}}]},
      {"role": "tool", "content": "12:00"}])"), options);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_NE(rendered->find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"now\", \"parameters\": {}}}\n</tools>"), std::string::npos)
      << *rendered;
  EXPECT_NE(rendered->find("<tool_call>\n{\"name\": \"now\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call><|im_end|>\n"
                           "<|im_start|>user\n<tool_response>\n12:00\n</tool_response><|im_end|>\n"),
            std::string::npos)
      << *rendered;

  const ChatTemplate llama = MustParse(ReadShared("chat-templates/llama-3.1.jinja"), "llama-3.1.jinja");
  options.variables["tools"] = ordered_json::parse(R"([{"name": "now", "parameters": {"tz": ["UTC", 1.5, null, true]}}])");
  const auto with_tools = llama.Render(ordered_json::parse(R"([{"role": "user", "content": "time?"}])"), options);
  ASSERT_TRUE(with_tools.ok()) << with_tools.status();
  EXPECT_NE(with_tools->find("{\n    \"name\": \"now\",\n    \"parameters\": {\n        \"tz\": [\n            \"UTC\",\n"
                             "            1.5,\n            null,\n            true\n        ]\n    }\n}\n\ntime?<|eot_id|>"),
            std::string::npos)
      << *with_tools;
}

// ---- Jinja's semantics ----

TEST(ChatTemplate, WhitespaceControlAsTransformersConfiguresIt) {
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it too.
  EXPECT_EQ(RenderText("  {% if true %}\n  x\n  {% endif %}\ny"), "  x\ny");
  EXPECT_EQ(RenderText("a  {% if true %}b{% endif %}"), "a  b");  // not at a line's start
  EXPECT_EQ(RenderText("{{ 'a' }}\n{{ 'b' }}"), "a\nb");          // not after {{ }}
  EXPECT_EQ(RenderText("a \n {{- ' b ' -}} \n c"), "a b c");
  EXPECT_EQ(RenderText("a\n  {#- note -#}\n  b"), "ab");
  EXPECT_EQ(RenderText("a\n  {# note #}\nb"), "a\nb");
  EXPECT_EQ(RenderText("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");
  EXPECT_EQ(RenderText("line\r\n{% if true %}\r\nx{% endif %}\n"), "line\nx");  // newlines normalized, last one dropped
}

TEST(ChatTemplate, ExpressionsFollowPython) {
  EXPECT_EQ(RenderText("{{ none }} {{ true }} {{ 1.0 }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ 7 // -2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 / 4 }}"),
            "None True 1.0 1e+20 0.30000000000000004 -4 2 1024 0.25");
  EXPECT_EQ(RenderText("{{ [1, 'a', none, {'k': 'v'}] }} {{ 'x' ~ 1 ~ none }} {{ 'ab' * 2 }}"), "[1, 'a', None, {'k': 'v'}] x1None abab");
  EXPECT_EQ(RenderText("{{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ [1, 2, 3, 4][1:3] }} {{ [1, 2, 3][-1] }} {{ 'abc'[5] is defined }}"),
            "é olléh [2, 3] 3 False");
  EXPECT_EQ(RenderText("{{ 'a' in 'cat' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 < 2 < 3 }} {{ 1 == 1.0 == true }}"),
            "True False True True True");
  EXPECT_EQ(RenderText("{{ 'yes' if x is defined else 'no' }} {{ x.y is defined }} {{ 'a' if false }}!"), "no False !");
  EXPECT_EQ(RenderText("{{ x or 'fallback' }} {{ 0 and 1 }} {{ not none }}"), "fallback 0 True");
  EXPECT_EQ(RenderText("{{ '\\u00e9\\n\\x41\\'' }}"), "é\nA'");
}

TEST(ChatTemplate, FiltersTestsAndMethods) {
  EXPECT_EQ(RenderText("{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ [1, 2] | length }}|{{ 'héllo' | length }}"), "a b|a|2|5");
  EXPECT_EQ(RenderText("{{ x | default('d') }} {{ '' | default('d', true) }} {{ 'Ab' | upper }} {{ 'Ab' | lower }} {{ 'hello world' | title }}"),
            "d d AB ab Hello World");
  EXPECT_EQ(RenderText("{{ ['a', 'b'] | join(', ') }} {{ [3, 4] | first }} {{ [3, 4] | last }} {{ 'ab' | list }} {{ {'a': 1} | items | list }}"),
            "a, b 3 4 ['a', 'b'] [['a', 1]]");
  EXPECT_EQ(RenderText("{{ ['a', 'code', 'b'] | reject('equalto', 'code') | join(',') }} "
                       "{{ [{'t': 'x', 'v': 1}, {'t': 'y', 'v': 2}] | selectattr('t', 'equalto', 'y') | map(attribute='v') | list }} "
                       "{{ [{'n': 1}, {'n': 0}] | rejectattr('n') | list }} {{ ['a', 'b'] | map('upper') | join }}"),
            "a,b [2] [{'n': 0}] AB");
  EXPECT_EQ(RenderText("{{ 'a-b' | replace('-', '+') }} {{ '42' | int + 1 }} {{ 'x' | int(7) }} {{ -3 | abs }} {{ 'ab' | capitalize }} {{ 3.7 | int }}"),
            "a+b 43 7 3 Ab 3");
  EXPECT_EQ(RenderText("{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(RenderText("{{ {'b': [1, 2.5, 'é\"'], 'a': none} | tojson }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"),
            "{\"b\": [1, 2.5, \"é\\\"\"], \"a\": null} {\"a\": 2, \"b\": 1}");
  EXPECT_EQ(RenderText("{{ [1] | tojson(indent=2) }} {{ [] | tojson(indent=2) }}"), "[\n  1\n] []");
  EXPECT_EQ(RenderText("{{ 1 is number }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ none is none }} "
                       "{{ false is false }} {{ 0 is false }} {{ 3 is odd }} {{ 4 is divisibleby 2 }} {{ x is undefined }}"),
            "True True True True True True False True True True");
  EXPECT_EQ(RenderText("{{ ' a ' .strip() }}|{{ 'xay'.lstrip('x') }}|{{ 'a b  c'.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a<x>b'.split('<x>')[-1] }}"),
            "a|ay|['a', 'b', 'c']|['a', 'b', '', 'c']|b");
  EXPECT_EQ(RenderText("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(['x', 'c']) }} {{ 'Ab'.upper() }} {{ 'a-a'.replace('a', 'b', 1) }} "
                       "{{ {'k': 1}.get('k') }} {{ {'k': 1}.get('z', 0) }} {{ {'k': 1}.keys() | list }} {{ {'k': 1}.values() | list }}"),
            "True True AB b-a 1 0 ['k'] [1]");
}

TEST(ChatTemplate, StatementsLoopsNamespacesAndMacros) {
  EXPECT_EQ(RenderText("{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
                       "{{ loop.length }}{{ loop.previtem is defined }}{% if not loop.last %},{% endif %}{% endfor %}"),
            "103TrueFalse3False,212FalseFalse3True,321FalseTrue3True");
  EXPECT_EQ(RenderText("{% for x in [] %}x{% else %}empty{% endfor %} {% for x in range(10) if x is odd %}{{ x }}{% endfor %} "
                       "{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}"),
            "empty 13579 a=1;b=2;");
  EXPECT_EQ(RenderText("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "013");
  // A set in a loop stays in the loop; a namespace carries state out of it.
  EXPECT_EQ(RenderText("{% set x = 1 %}{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set x = i %}{% set ns.n = ns.n + i %}{% endfor %}"
                       "{{ x }} {{ ns.n }}"),
            "1 3");
  EXPECT_EQ(RenderText("{% macro greet(name, punctuation='!') %}Hi {{ name }}{{ punctuation }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} "
                       "{{ greet(punctuation='.', name='c') }}"),
            "Hi a! Hi b? Hi c.");
  EXPECT_EQ(RenderText("{% set block %}in {{ 'side' }}{% endset %}[{{ block }}] {% filter upper %}loud {{ 'text' }}{% endfilter %}"),
            "[in side] LOUD TEXT");
  EXPECT_EQ(RenderText("{% generation %}kept{% endgeneration %} {% set a, b = [1, 2] %}{{ a + b }} {{ dict(k=1).k }}"), "kept 3 1");
}

// ---- Errors ----

// The error of parsing or rendering `source`: its message must start with `where`.
void ExpectError(const std::string& source, const std::string& where, const std::string& says) {
  const std::string result = RenderText(source);
  EXPECT_NE(result.find("error: " + where), std::string::npos) << source << "\n-> " << result;
  EXPECT_NE(result.find(says), std::string::npos) << source << "\n-> " << result;
}

TEST(ChatTemplate, ErrorsNameTheTemplateLineAndColumn) {
  ExpectError("a\n{% if x %}\nb", "test.jinja:2:1: ", "'if' is never closed: expected 'endif'");
  ExpectError("{% for x in y %}{% endif %}", "test.jinja:1:20: ", "unexpected 'endif'");
  ExpectError("ok\n  {{ x", "test.jinja:2:3: ", "unterminated tag: '{{' without '}}'");
  ExpectError("{% if true", "test.jinja:1:1: ", "unterminated tag: '{%' without '%}'");
  ExpectError("{# comment", "test.jinja:1:1: ", "unterminated comment");
  ExpectError("{{ 'open }}", "test.jinja:1:4: ", "unterminated string literal");
  ExpectError("\n\n\n\n\n\n\n\n\n\n\n    {{ x | foo }}", "test.jinja:12:12: ", "unknown filter 'foo'");
  ExpectError("{{ x is shiny }}", "test.jinja:1:9: ", "unknown test 'shiny'");
  ExpectError("{% include 'other.jinja' %}", "test.jinja:1:4: ", "unknown statement 'include'");
  ExpectError("{{ 1 + }}", "test.jinja:1:8: ", "expected an expression, found '}}'");
  ExpectError("{{ (1 }}", "test.jinja:1:4: ", "'(' is never closed");
  ExpectError("{{ f(1 2) }}", "test.jinja:1:8: ", "expected ',', found a number");
  ExpectError("{{ x @ y }}", "test.jinja:1:6: ", "unexpected character '@'");
  ExpectError("{% break %}", "test.jinja:1:4: ", "'break' outside a for loop");
  ExpectError("{{ 99999999999999999999 }}", "test.jinja:1:4: ", "out of range");
  // Render-time errors are located too.
  ExpectError("\n{{ x.y }}", "test.jinja:2:5: ", "'x' is undefined");
  ExpectError("{{ 'a' + 1 }}", "test.jinja:1:8: ", "unsupported operand types for +: 'str' and 'int'");
  ExpectError("{{ 1 // 0 }}", "test.jinja:1:6: ", "division by zero");
  ExpectError("{{ 9223372036854775807 + 1 }}", "test.jinja:1:24: ", "integer overflow");
  ExpectError("{{ 'a'.nope() }}", "test.jinja:1:12: ", "'str' object has no method 'nope'");
  ExpectError("{{ [1][::0] }}", "test.jinja:1:7: ", "slice step cannot be zero");
  ExpectError("{% set x = 1 %}{% set x.y = 2 %}", "test.jinja:1:16: ", "only of a namespace");
}

TEST(ChatTemplate, RaiseExceptionSurfacesTheTemplatesMessage) {
  const ChatTemplate gemma = MustParse(ReadShared("chat-templates/gemma3.jinja"), "gemma3.jinja");
  ChatTemplateOptions options;
  options.bos_token = "<bos>";
  const auto rendered = gemma.Render(ordered_json::parse(R"([{"role": "assistant", "content": "hi"}])"), options);
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rendered.status().message(), "Conversation roles must alternate user/assistant/user/assistant/...");
  EXPECT_EQ(RenderText("{{ raise_exception('bad ' ~ 1) }}"), "render error: bad 1");
}

TEST(ChatTemplate, HostileTemplatesFailWithinTheirLimits) {
  const std::string deep_parentheses = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  ExpectError(deep_parentheses, "test.jinja:1:", "nested too deeply");
  std::string deep_blocks;
  for (int i = 0; i < 10000; ++i) deep_blocks += "{% if true %}";
  ExpectError(deep_blocks, "test.jinja:1:", "nested too deeply");
  std::string long_sum = "{{ 1";
  for (int i = 0; i < 100000; ++i) long_sum += " + 1";
  ExpectError(long_sum + " }}", "test.jinja:1:", "nested too deeply");
  ExpectError("{{ " + std::string(100000, '-') + "1 }}", "test.jinja:1:", "nested too deeply");
  ExpectError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "test.jinja:1:", "rendering nested too deeply");
  ExpectError("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x | tojson }}", "test.jinja:1:",
              "nests deeper than 100");
  EXPECT_EQ(RenderText("{% set ns = namespace(x=none) %}{% set ns.x = ns %}{{ ns.x.x.x }} {{ ns == ns.x }}"), "<Namespace> True");

  const ChatTemplate endless = MustParse("{% for i in range(1000000) %}{% for j in range(1000000) %}.{% endfor %}{% endfor %}");
  ChatTemplateOptions options;
  options.limits.max_work = 100000;
  const auto spent = endless.Render(ordered_json::array(), options);
  EXPECT_EQ(spent.status().code(), absl::StatusCode::kResourceExhausted) << spent.status();
  const ChatTemplate bomb = MustParse("{% set ns = namespace(s='x' * 1000) %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}");
  options.limits = ChatTemplateLimits{};
  options.limits.max_output_bytes = 1 << 20;
  const auto big = bomb.Render(ordered_json::array(), options);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  const ChatTemplate wide = MustParse("{{ range(9223372036854775807) | length }}{{ 'ab' * 9223372036854775807 }}");
  EXPECT_EQ(wide.Render(ordered_json::array(), options).status().code(), absl::StatusCode::kResourceExhausted);
}

// ---- Model folders ----

class ModelFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("anyprec-chat-template-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& file, const std::string& text) const { std::ofstream(dir_ / file) << text; }

  std::filesystem::path dir_;
};

TEST_F(ModelFolderTest, TemplateFromTokenizerConfigString) {
  ordered_json config = {{"bos_token", {{"content", "<s>"}, {"lstrip", false}}}, {"eos_token", "</s>"}, {"chat_template", "{{ bos_token }}x"}};
  Write("tokenizer_config.json", config.dump());
  Write("chat_template.jinja", "ignored");
  const auto loaded = LoadChatTemplate(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->bos_token, "<s>");
  EXPECT_EQ(loaded->eos_token, "</s>");
  EXPECT_EQ(loaded->chat_template.source(), "{{ bos_token }}x");
}

TEST_F(ModelFolderTest, TemplateFromTokenizerConfigList) {
  ordered_json config = {{"chat_template", ordered_json::array({{{"name", "tool_use"}, {"template", "tools"}}, {{"name", "default"}, {"template", "plain"}}})}};
  Write("tokenizer_config.json", config.dump());
  const auto loaded = LoadChatTemplate(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->chat_template.source(), "plain");
  EXPECT_FALSE(loaded->bos_token.has_value());
}

TEST_F(ModelFolderTest, TemplateFromChatTemplateJinja) {
  Write("tokenizer_config.json", R"({"eos_token": "<|im_end|>"})");
  Write("chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}");
  const auto loaded = LoadChatTemplate(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->eos_token, "<|im_end|>");
  const auto rendered = loaded->chat_template.Render(nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])"), {});
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered, "hi");
}

TEST_F(ModelFolderTest, NoTemplateIsNotFound) {
  Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  const auto loaded = LoadChatTemplate(dir_.string());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(loaded.status().message().find("has no chat template"), std::string::npos) << loaded.status();
  Write("tokenizer_config.json", R"({"chat_template": "{% if %}"})");
  const auto broken = LoadChatTemplate(dir_.string());
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(broken.status().message().find("tokenizer_config.json:1:7: expected an expression"), std::string::npos) << broken.status();
}

}  // namespace
}  // namespace anyprec
