#include "proto/openai_client.h"

#include <httplib.h>

#include <map>

#include "absl/strings/str_cat.h"

namespace anyprec {
namespace {

using nlohmann::json;

httplib::Client Connect(const OpenAIServer& server) {
  httplib::Client client("http://" + server.address);
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(server.read_timeout);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(server.read_timeout - seconds);
  client.set_read_timeout(seconds.count(), micros.count());
  client.set_connection_timeout(10);
  if (!server.api_key.empty()) client.set_bearer_token_auth(server.api_key.c_str());
  return client;
}

// Splits Server-Sent Events out of the bytes as they arrive: "data: X" lines, each event ended
// by a blank line; comments (": ...") and other fields are skipped.
class EventReader {
 public:
  // Feeds bytes; calls `on_data` with each complete event's data, stopping when it returns false.
  bool Feed(std::string_view bytes, const std::function<bool(std::string_view)>& on_data) {
    buffer_ += bytes;
    size_t start = 0;
    for (size_t end; (end = buffer_.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string_view line(buffer_.data() + start, end - start);
      if (line.ends_with('\r')) line.remove_suffix(1);
      if (line.empty()) {
        if (!data_.empty() && !on_data(data_)) {
          buffer_.erase(0, end + 1);
          return false;
        }
        data_.clear();
      } else if (line.starts_with("data:")) {
        line.remove_prefix(5);
        if (line.starts_with(' ')) line.remove_prefix(1);
        if (!data_.empty()) data_ += '\n';
        data_ += line;
      }
    }
    buffer_.erase(0, start);
    return true;
  }

 private:
  std::string buffer_;
  std::string data_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ListModels(const OpenAIServer& server) {
  httplib::Client client = Connect(server);
  const httplib::Result r = client.Get("/v1/models");
  if (!r) return absl::UnavailableError(absl::StrCat("cannot reach ", server.address, ": ", httplib::to_string(r.error())));
  const json body = json::parse(r->body, nullptr, false);
  if (r->status != 200) {
    const std::string message = body.is_object() && body.contains("error") ? body["error"].value("message", r->body) : r->body;
    return absl::UnavailableError(absl::StrCat("GET /v1/models: ", r->status, " ", message));
  }
  if (!body.is_object() || !body.contains("data") || !body["data"].is_array()) {
    return absl::DataLossError("GET /v1/models: the answer is not a model list");
  }
  std::vector<std::string> ids;
  for (const json& m : body["data"]) {
    if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
  }
  return ids;
}

StreamEnd StreamOpenAI(const OpenAIServer& server, const std::string& path, const json& body,
                       const std::function<bool(const json& event)>& on_event) {
  httplib::Client client = Connect(server);
  StreamEnd end;
  const bool streams = body.value("stream", false);
  std::string answer;  // an error, or an answer that does not stream
  EventReader events;
  auto last_arrival = std::chrono::steady_clock::now();
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.body = body.dump();
  request.set_header("Content-Type", "application/json");
  request.set_header("Accept", "text/event-stream");
  request.response_handler = [&](const httplib::Response& response) {
    last_arrival = std::chrono::steady_clock::now();
    end.http_status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    last_arrival = std::chrono::steady_clock::now();
    if (end.http_status != 200) {
      answer.append(data, size);
      return true;
    }
    // An answer that does not stream is one JSON object, not events.
    if (!streams) {
      answer.append(data, size);
      return true;
    }
    return events.Feed(std::string_view(data, size), [&](std::string_view event) {
      if (event == "[DONE]") {
        end.done = true;
        return true;
      }
      const json parsed = json::parse(event, nullptr, false);
      if (parsed.is_discarded()) return true;
      if (!on_event(parsed)) {
        end.stopped = true;
        return false;
      }
      return true;
    });
  };
  const httplib::Result r = client.send(request);
  if (end.stopped) return end;
  if (!r) {
    end.timed_out = r.error() == httplib::Error::Read && std::chrono::steady_clock::now() - last_arrival >= server.read_timeout;
    end.transport_error = httplib::to_string(r.error());
    return end;
  }
  end.http_status = r->status;
  if (end.http_status != 200) {
    const json parsed = json::parse(answer, nullptr, false);
    end.error = parsed.is_object() && parsed.contains("error") ? parsed["error"] : json{{"message", answer}};
  } else if (!streams) {
    const json parsed = json::parse(answer, nullptr, false);
    if (!parsed.is_discarded()) on_event(parsed);
  }
  return end;
}

std::string GrpcCodeNameOfHttpStatus(int http_status) {
  static const std::map<int, const char*> kByStatus = {
      {200, "OK"},
      {400, "INVALID_ARGUMENT"},
      {401, "UNAUTHENTICATED"},
      {403, "PERMISSION_DENIED"},
      {404, "NOT_FOUND"},
      {429, "RESOURCE_EXHAUSTED"},
      {503, "UNAVAILABLE"},
  };
  const auto it = kByStatus.find(http_status);
  return it != kByStatus.end() ? it->second : http_status == 0 ? "UNAVAILABLE" : "INTERNAL";
}

}  // namespace anyprec
