#include "server/openai_api.h"

#include <charconv>
#include <map>
#include <span>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/model/width.h"
#include "engine/runtime/logprobs.h"
#include "engine/tokenizer/utf8.h"

namespace anyprec::server::openai {
namespace {

using nlohmann::json;

absl::Status BadField(std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", std::string(field), "' ", std::string(what)));
}

// The width a model name selects: 0 for the plain name (the caller's default), B for NAME@B.
absl::StatusOr<int> WidthOfModelName(const Model& model, const std::string& name) {
  if (name == model.LogicalName(0)) return 0;
  const std::string prefix = model.LogicalName(0) + "@";
  int bits = 0;
  if (name.starts_with(prefix)) {
    const std::string_view digits = std::string_view(name).substr(prefix.size());
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (ec == std::errc() && end == digits.data() + digits.size() && ModelWidths(model.config()).Contains(bits)) return bits;
  }
  return absl::NotFoundError(absl::StrCat("the model '", name, "' does not exist; GET /v1/models lists the served ones"));
}

absl::StatusOr<double> Number(const json& value, std::string_view field) {
  if (!value.is_number()) return BadField(field, "must be a number");
  return value.get<double>();
}

absl::StatusOr<int64_t> Integer(const json& value, std::string_view field) {
  if (!value.is_number_integer()) return BadField(field, "must be an integer");
  return value.get<int64_t>();
}

absl::StatusOr<bool> Boolean(const json& value, std::string_view field) {
  if (!value.is_boolean()) return BadField(field, "must be true or false");
  return value.get<bool>();
}

// The text of a chat message's content: a string, or a list of {"type": "text", "text"} parts.
absl::StatusOr<std::string> ContentText(const json& content, size_t index) {
  const std::string field = absl::StrCat("messages[", index, "].content");
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return BadField(field, "must be a string or a list of text parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
      return BadField(field, "holds a part that is not {\"type\": \"text\", \"text\": ...}: only text is supported");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

// The conversation as the template reads it: each message's role and content as text.
absl::StatusOr<nlohmann::ordered_json> Messages(const json& messages) {
  if (!messages.is_array() || messages.empty()) return BadField("messages", "must be a non-empty list");
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return BadField(field, "must be an object");
    for (const auto& [key, value] : m.items()) {
      if (key != "role" && key != "content" && key != "name") return BadField(absl::StrCat(field, ".", key), "is not supported");
    }
    if (!m.contains("role") || !m["role"].is_string()) return BadField(field + ".role", "must be a string");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "developer" && role != "user" && role != "assistant") {
      return BadField(field + ".role", absl::StrCat("'", role, "' is not one of system, developer, user, assistant"));
    }
    if (!m.contains("content")) return BadField(field + ".content", "is missing");
    ASSIGN_OR_RETURN(std::string content, ContentText(m["content"], i));
    if (!utf8::IsValid(content)) return BadField(field + ".content", "is not valid UTF-8");
    // Templates know "system"; OpenAI's newer name for it means the same.
    out.push_back({{"role", role == "developer" ? "system" : role}, {"content", std::move(content)}});
  }
  return out;
}

absl::Status SetPrompt(const json& prompt, const ServedModel& served, anyprec::v1::GenerateRequest& request) {
  if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) return SetPrompt(prompt[0], served, request);
  if (prompt.is_string()) {
    request.set_text(prompt.get<std::string>());
    return absl::OkStatus();
  }
  if (prompt.is_array() && !prompt.empty() && std::all_of(prompt.begin(), prompt.end(), [](const json& v) { return v.is_number_integer(); })) {
    for (const json& id : prompt) {
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v >= served.model->config().vocab_size) return BadField("prompt", absl::StrCat("holds token id ", v, ", outside the vocabulary"));
      request.mutable_token_ids()->add_ids(static_cast<int>(v));
    }
    return absl::OkStatus();
  }
  return BadField("prompt", "must be a string, a list of one string or a list of token ids (one prompt per request)");
}

absl::Status SetStop(const json& stop, anyprec::v1::GenerateRequest& request) {
  if (stop.is_null()) return absl::OkStatus();
  if (stop.is_string()) {
    request.add_stop(stop.get<std::string>());
    return absl::OkStatus();
  }
  if (!stop.is_array()) return BadField("stop", "must be a string or a list of strings");
  for (const json& s : stop) {
    if (!s.is_string()) return BadField("stop", "must be a string or a list of strings");
    request.add_stop(s.get<std::string>());
  }
  return absl::OkStatus();
}

// Fields the engine honours only at the value that changes nothing (or null), each with its
// test of that value.
const std::map<std::string, bool (*)(const json&), std::less<>> kNeutralOnly = {
    {"n", [](const json& v) { return v == 1; }},
    {"best_of", [](const json& v) { return v == 1; }},
    {"presence_penalty", [](const json& v) { return v.is_number() && v.get<double>() == 0; }},
    {"frequency_penalty", [](const json& v) { return v.is_number() && v.get<double>() == 0; }},
    {"echo", [](const json& v) { return v == false; }},
    {"logit_bias", [](const json& v) { return v.is_object() && v.empty(); }},
    {"response_format", [](const json& v) { return v.is_object() && v.value("type", "") == "text"; }},
    {"store", [](const json& v) { return v == false; }},
    {"suffix", [](const json& v) { return v.is_string() && v.get<std::string>().empty(); }},
    {"tools", [](const json& v) { return v.is_array() && v.empty(); }},
    {"tool_choice", [](const json& v) { return v == "none"; }},
    {"parallel_tool_calls", [](const json&) { return true; }},  // without tools it means nothing
};

}  // namespace

absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, std::string_view body, const ServedModel& served) {
  const json r = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (r.is_discarded()) return absl::InvalidArgumentError("the body is not valid JSON");
  if (!r.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  const bool chat = endpoint == Endpoint::kChatCompletions;
  ParsedRequest out;
  anyprec::v1::GenerateRequest& request = out.request;
  if (!r.contains("model") || !r["model"].is_string()) return BadField("model", "must be given as a string");
  out.model = r["model"].get<std::string>();
  ASSIGN_OR_RETURN(const int model_bits, WidthOfModelName(*served.model, out.model));
  request.set_bits(model_bits);
  request.set_max_new_tokens(served.max_new_tokens_limit);
  request.mutable_sampling()->set_temperature(1.0f);  // OpenAI's default
  bool logprobs = false;
  int64_t top_logprobs = 0;
  // Chat's top_logprobs, or completions' logprobs: alternatives per token.
  const auto read_alternatives = [&top_logprobs](const std::string& field, const json& value) -> absl::Status {
    ASSIGN_OR_RETURN(top_logprobs, Integer(value, field));
    if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs) return BadField(field, absl::StrCat("must be in 0..", kMaxTopLogprobs));
    return absl::OkStatus();
  };
  for (const auto& [field, value] : r.items()) {
    if (field == "model") continue;
    if (field == (chat ? "messages" : "prompt")) continue;  // below, once the rest is known
    if (field == "max_tokens" || field == "max_completion_tokens") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(const int64_t n, Integer(value, field));
      if (n < 1 || n > served.max_new_tokens_limit) return BadField(field, absl::StrCat("must be in 1..", served.max_new_tokens_limit));
      request.set_max_new_tokens(static_cast<uint32_t>(n));
    } else if (field == "temperature") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(const double t, Number(value, field));
      request.mutable_sampling()->set_temperature(static_cast<float>(t));
    } else if (field == "top_p") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(const double p, Number(value, field));
      request.mutable_sampling()->set_top_p(static_cast<float>(p));
    } else if (field == "top_k") {  // an extension, as vLLM has it
      ASSIGN_OR_RETURN(const int64_t k, Integer(value, field));
      if (k < 0) return BadField(field, "must not be negative");
      request.mutable_sampling()->set_top_k(static_cast<int>(k));
    } else if (field == "repetition_penalty") {  // an extension, as vLLM has it
      ASSIGN_OR_RETURN(const double penalty, Number(value, field));
      request.mutable_sampling()->set_repetition_penalty(static_cast<float>(penalty));
    } else if (field == "seed") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(const int64_t seed, Integer(value, field));
      request.mutable_sampling()->set_seed(static_cast<uint64_t>(seed));
    } else if (field == "stop") {
      RETURN_IF_ERROR(SetStop(value, request));
    } else if (field == "stream") {
      if (value.is_null()) continue;
      ASSIGN_OR_RETURN(out.stream, Boolean(value, field));
    } else if (field == "stream_options") {
      if (value.is_null()) continue;
      if (!value.is_object()) return BadField(field, "must be an object");
      for (const auto& [key, option] : value.items()) {
        if (key != "include_usage") return BadField(absl::StrCat(field, ".", key), "is not supported");
        ASSIGN_OR_RETURN(out.include_usage, Boolean(option, "stream_options.include_usage"));
      }
    } else if (field == "logprobs") {
      if (value.is_null()) continue;
      if (chat) {
        ASSIGN_OR_RETURN(logprobs, Boolean(value, field));
      } else {
        // Completions take the number of alternatives; the chosen token's comes with any.
        RETURN_IF_ERROR(read_alternatives(field, value));
        logprobs = true;
      }
    } else if (chat && field == "top_logprobs") {
      if (value.is_null()) continue;
      RETURN_IF_ERROR(read_alternatives(field, value));
    } else if (field == "bits") {  // an extension: the width, as NAME@B selects it
      ASSIGN_OR_RETURN(const int64_t bits, Integer(value, field));
      if (model_bits != 0 && bits != model_bits) return BadField(field, absl::StrCat("= ", bits, " contradicts the model name '", out.model, "'"));
      if (bits < 0 || bits > 64) return BadField(field, "is not a width");
      request.set_bits(static_cast<uint32_t>(bits));
    } else if (field == "min_bits" || field == "max_bits") {  // extensions: an adaptive width's range
      ASSIGN_OR_RETURN(const int64_t bits, Integer(value, field));
      if (bits < 0 || bits > 64) return BadField(field, "is not a width");
      if (field == "min_bits") {
        request.set_min_bits(static_cast<uint32_t>(bits));
      } else {
        request.set_max_bits(static_cast<uint32_t>(bits));
      }
    } else if (field == "speculative") {  // an extension: {"draft_bits": B, "lookahead": K}; draft_bits 0 is plain
      if (!value.is_object()) return BadField(field, "must be an object {\"draft_bits\": B, \"lookahead\": K}");
      for (const auto& [key, option] : value.items()) {
        if (key != "draft_bits" && key != "lookahead") return BadField(absl::StrCat(field, ".", key), "is not a field this server knows");
        ASSIGN_OR_RETURN(const int64_t n, Integer(option, absl::StrCat(field, ".", key)));
        if (n < 0 || n > 64) return BadField(absl::StrCat(field, ".", key), "is out of range");
        if (key == "draft_bits") {
          request.mutable_speculative()->set_draft_bits(static_cast<uint32_t>(n));
        } else {
          request.mutable_speculative()->set_lookahead(static_cast<uint32_t>(n));
        }
      }
      if (!value.contains("draft_bits")) return BadField("speculative.draft_bits", "is missing");
    } else if (field == "ignore_eos") {  // an extension
      ASSIGN_OR_RETURN(const bool ignore, Boolean(value, field));
      request.set_ignore_eos(ignore);
    } else if (field == "user" || field == "metadata") {
      continue;  // the caller's labels for its own records
    } else if (const auto neutral = kNeutralOnly.find(field); neutral != kNeutralOnly.end()) {
      if (!value.is_null() && !neutral->second(value)) {
        return BadField(field, absl::StrCat("= ", value.dump(), " is not supported by this server"));
      }
    } else {
      return BadField(field, "is not a field this server knows");
    }
  }
  if (top_logprobs > 0 && !logprobs) return BadField("top_logprobs", "needs logprobs: true");
  request.set_return_logprobs(logprobs);
  request.set_top_logprobs(static_cast<uint32_t>(top_logprobs));
  if (!chat) {
    if (!r.contains("prompt")) return BadField("prompt", "is missing");
    RETURN_IF_ERROR(SetPrompt(r["prompt"], served, request));
    return out;
  }
  if (served.chat == nullptr) {
    return absl::InvalidArgumentError(
        "this model has no chat template (none in its tokenizer_config.json or chat_template.jinja, and no --chat-template): "
        "use /v1/completions");
  }
  if (!r.contains("messages")) return BadField("messages", "is missing");
  ASSIGN_OR_RETURN(const nlohmann::ordered_json messages, Messages(r["messages"]));
  ChatTemplateOptions options;
  options.add_generation_prompt = true;
  options.bos_token = served.chat->bos_token;
  options.eos_token = served.chat->eos_token;
  absl::StatusOr<std::string> prompt = served.chat->chat_template.Render(messages, options);
  if (!prompt.ok()) return absl::InvalidArgumentError(absl::StrCat("the chat template refused the messages: ", prompt.status().message()));
  // The template writes the special tokens (BOS included) as text; the tokenizer reads them back.
  for (const TokenId id : served.tokenizer->Encode(*prompt)) request.mutable_token_ids()->add_ids(id);
  if (request.token_ids().ids().empty()) return BadField("messages", "render to an empty prompt");
  return out;
}

json ModelList(const Model& model, int64_t created) {
  json data = json::array();
  const auto entry = [&](const std::string& id) { return json{{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "anyprec"}}; };
  data.push_back(entry(model.LogicalName(0)));
  const WidthRange widths = ModelWidths(model.config());
  for (int b = widths.min; b <= widths.max && b > 0; ++b) data.push_back(entry(model.LogicalName(b)));
  return {{"object", "list"}, {"data", data}};
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
    case FinishReason::kStopSequence: return "stop";
    case FinishReason::kLength:
    case FinishReason::kCancelled:
    case FinishReason::kTimeLimit: return "length";
  }
  return "length";
}

namespace {

json Base(const AnswerHeader& h, bool chunk) {
  const bool chat = h.endpoint == Endpoint::kChatCompletions;
  return {{"id", h.id}, {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", h.created}, {"model", h.model}};
}

json Usage(const RequestSummary& s) {
  json usage = {{"prompt_tokens", s.prompt_tokens},
                {"completion_tokens", s.completion_tokens},
                {"total_tokens", s.prompt_tokens + s.completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", s.cached_prompt_tokens}}}};
  // A speculative request's drafts, in the fields OpenAI reports predicted tokens in.
  if (s.speculative.cycles > 0) {
    usage["completion_tokens_details"] = {{"accepted_prediction_tokens", s.speculative.accepted},
                                          {"rejected_prediction_tokens", s.speculative.drafted - s.speculative.accepted}};
  }
  // An extension: the output tokens by the width that produced them, which an adaptive
  // request's width may change.
  json widths = json::object();
  for (const auto& [bits, tokens] : s.tokens_by_width) widths[std::to_string(bits)] = tokens;
  usage["tokens_by_width"] = std::move(widths);
  return usage;
}

// OpenAI's logprobs object for `tokens`: chat's {"content": [...]}, or the completions' lists.
json Logprobs(Endpoint endpoint, std::span<const GeneratedToken> tokens) {
  const auto bytes_of = [](std::string_view text) {
    json bytes = json::array();
    for (const unsigned char c : text) bytes.push_back(c);
    return bytes;
  };
  if (endpoint == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const GeneratedToken& t : tokens) {
      json top = json::array();
      for (const TokenAlternative& a : t.top_logprobs) top.push_back({{"token", utf8::Sanitize(a.bytes)}, {"logprob", a.logprob}, {"bytes", bytes_of(a.bytes)}});
      content.push_back({{"token", t.text}, {"logprob", t.logprob.value_or(0.0f)}, {"bytes", bytes_of(t.text)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json texts = json::array();
  json values = json::array();
  json tops = json::array();
  for (const GeneratedToken& t : tokens) {
    texts.push_back(t.text);
    values.push_back(t.logprob.value_or(0.0f));
    json top = json::object();
    for (const TokenAlternative& a : t.top_logprobs) top[utf8::Sanitize(a.bytes)] = a.logprob;
    tops.push_back(std::move(top));
  }
  return {{"tokens", texts}, {"token_logprobs", values}, {"top_logprobs", tops}};
}

json Choice(Endpoint endpoint, const std::string& text, bool delta, json logprobs, json finish_reason) {
  json choice = {{"index", 0}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish_reason)}};
  if (endpoint == Endpoint::kCompletions) {
    choice["text"] = text;
  } else if (delta) {
    choice["delta"] = {{"content", text}};
  } else {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  }
  return choice;
}

}  // namespace

json Completion(const AnswerHeader& header, const std::vector<GeneratedToken>& tokens, const std::string& tail, bool logprobs,
                const RequestSummary& summary) {
  std::string text;
  for (const GeneratedToken& t : tokens) text += t.text;
  text += tail;
  json out = Base(header, false);
  out["choices"] = json::array({Choice(header.endpoint, text, false, logprobs ? Logprobs(header.endpoint, tokens) : json(nullptr),
                                       FinishReasonName(summary.reason))});
  out["usage"] = Usage(summary);
  return out;
}

json OpeningChunk(const AnswerHeader& header) {
  json out = Base(header, true);
  json choice = Choice(header.endpoint, "", true, nullptr, nullptr);
  choice["delta"] = {{"role", "assistant"}, {"content", ""}};
  out["choices"] = json::array({choice});
  return out;
}

json TokenChunk(const AnswerHeader& header, const GeneratedToken& token, bool logprobs) {
  json out = Base(header, true);
  out["choices"] = json::array(
      {Choice(header.endpoint, token.text, true, logprobs ? Logprobs(header.endpoint, std::span(&token, 1)) : json(nullptr), nullptr)});
  return out;
}

json FinishChunk(const AnswerHeader& header, const std::string& tail, FinishReason reason) {
  json out = Base(header, true);
  out["choices"] = json::array({Choice(header.endpoint, tail, true, nullptr, FinishReasonName(reason))});
  return out;
}

json UsageChunk(const AnswerHeader& header, const RequestSummary& summary) {
  json out = Base(header, true);
  out["choices"] = json::array();
  out["usage"] = Usage(summary);
  return out;
}

HttpError ToHttpError(const absl::Status& status) {
  static const std::map<absl::StatusCode, std::pair<int, const char*>> kByCode = {
      {absl::StatusCode::kUnauthenticated, {401, "authentication_error"}},
      {absl::StatusCode::kPermissionDenied, {403, "permission_error"}},
      {absl::StatusCode::kInvalidArgument, {400, "invalid_request_error"}},
      {absl::StatusCode::kOutOfRange, {400, "invalid_request_error"}},
      {absl::StatusCode::kNotFound, {404, "not_found_error"}},
      {absl::StatusCode::kResourceExhausted, {429, "rate_limit_error"}},
      {absl::StatusCode::kUnavailable, {503, "service_unavailable"}},
  };
  const auto it = kByCode.find(status.code());
  const auto [http, type] = it != kByCode.end() ? it->second : std::pair<int, const char*>{500, "server_error"};
  std::string message(status.message());
  // The field a 400 names, as OpenAI's `param`: the message opens with it in quotes.
  json param = nullptr;
  if (http == 400 && message.starts_with("'")) {
    if (const size_t end = message.find('\'', 1); end != std::string::npos) param = message.substr(1, end - 1);
  }
  return {http, {{"error", {{"message", message}, {"type", type}, {"param", param}, {"code", nullptr}}}}};
}

}  // namespace anyprec::server::openai
