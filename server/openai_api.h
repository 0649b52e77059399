// The OpenAI HTTP API's bodies as anyprec reads and writes them: a /v1/completions or
// /v1/chat/completions body becomes a Generation request (which the Generation service then
// validates exactly as it validates gRPC's), and the engine's tokens become OpenAI's objects
// and stream chunks. Fields the engine cannot honour are refused by name, never ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "anyprec/v1/generation.pb.h"
#include "engine/chat/chat_template.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/request.h"

namespace anyprec::server::openai {

enum class Endpoint { kCompletions, kChatCompletions };

// A request as the front runs it.
struct ParsedRequest {
  anyprec::v1::GenerateRequest request;  // prompt, width (0: the tenant's default), sampling, stop, length
  std::string model;                     // as the caller named it, echoed in every answer
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
};

// What the front knows of the served model.
struct ServedModel {
  const Model* model;
  const Tokenizer* tokenizer;
  const ModelChatTemplate* chat = nullptr;  // null: chat completions are refused
  int max_new_tokens_limit = 4096;
};

// InvalidArgument naming the field for a malformed or unsupported request; NotFound for a
// model name that is not one of the served ones (NAME, or NAME@B for a width of the image).
absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, std::string_view body, const ServedModel& served);

// GET /v1/models: the plain name (the caller's default width) and NAME@B for every width.
nlohmann::json ModelList(const Model& model, int64_t created);

// "stop" (EOS or a stop sequence) or "length"; a request cut short otherwise reads "length".
const char* FinishReasonName(FinishReason reason);

// One answer's identity, echoed in every object and chunk of it.
struct AnswerHeader {
  Endpoint endpoint;
  std::string id;  // cmpl-… or chatcmpl-…
  int64_t created;
  std::string model;
};

// The whole answer of a request that does not stream.
nlohmann::json Completion(const AnswerHeader& header, const std::vector<GeneratedToken>& tokens, const std::string& tail, bool logprobs,
                          const RequestSummary& summary);
// Stream chunks: the opening one (chat only: the assistant's role), one per token, the closing
// one with the finish reason, and the usage chunk.
nlohmann::json OpeningChunk(const AnswerHeader& header);  // of a chat
nlohmann::json TokenChunk(const AnswerHeader& header, const GeneratedToken& token, bool logprobs);
nlohmann::json FinishChunk(const AnswerHeader& header, const std::string& tail, FinishReason reason);
nlohmann::json UsageChunk(const AnswerHeader& header, const RequestSummary& summary);

// An error as OpenAI's clients read it: the HTTP status for the code (401, 403, 400, 404, 429,
// 503, else 500) and {"error": {"message", "type", "param", "code"}}.
struct HttpError {
  int status;
  nlohmann::json body;
};
HttpError ToHttpError(const absl::Status& status);

}  // namespace anyprec::server::openai
