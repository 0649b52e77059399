// The client side of anyprec-server's OpenAI-compatible HTTP front, as `anyprec chat` and
// anyprec-loadtest use it: the model list, and one streamed request whose Server-Sent Events
// reach the caller as parsed JSON while the request runs.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace anyprec {

struct OpenAIServer {
  std::string address;  // host:port of --http-listen
  std::string api_key;  // sent as "Authorization: Bearer KEY" when not empty
  // A request that receives nothing for this long ends with kDeadlineExceeded. The server sends
  // a keep-alive comment every second while a request waits, so a few seconds suffice.
  std::chrono::milliseconds read_timeout = std::chrono::seconds(60);
};

// GET /v1/models: the ids in the server's order (the plain name first, then NAME@B).
absl::StatusOr<std::vector<std::string>> ListModels(const OpenAIServer& server);

// How a streamed request ended.
struct StreamEnd {
  int http_status = 0;       // 0 when no answer came
  nlohmann::json error;      // the error object of an answer other than 200
  bool done = false;         // "data: [DONE]" arrived
  bool stopped = false;      // on_event asked to stop, and the connection was closed
  bool timed_out = false;    // nothing arrived within read_timeout
  std::string transport_error;  // why no answer came, or why it broke off
};

// POSTs `body` (which should ask for "stream": true) to `path` and hands each event's JSON to
// `on_event` as it arrives; on_event returns false to stop, which closes the connection (the
// server then cancels the request). A body that does not stream arrives as one event.
StreamEnd StreamOpenAI(const OpenAIServer& server, const std::string& path, const nlohmann::json& body,
                       const std::function<bool(const nlohmann::json& event)>& on_event);

// The status code anyprec's gRPC API gives for an HTTP status ("OK", "UNAUTHENTICATED",
// "RESOURCE_EXHAUSTED", ...), so that both fronts' outcomes are counted alike.
std::string GrpcCodeNameOfHttpStatus(int http_status);

}  // namespace anyprec
