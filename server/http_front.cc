#include "server/http_front.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "server/logging.h"
#include "server/metrics.h"

namespace anyprec::server {
namespace {

using openai::Endpoint;

// Requests that may wait or stream at once, each holding one of the front's threads: the
// scheduler's queue and batch are far smaller, so this never binds first.
constexpr int kThreads = 128;
// An answer with nothing to send writes this often (an SSE comment, or a space before a whole
// answer), so that a client that went away is noticed (and its request cancelled) even while
// the request waits in the queue.
constexpr auto kKeepAlive = std::chrono::seconds(1);

// One request's output, handed from the engine loop (which must never block) to the HTTP
// thread that answers it.
class HttpSink final : public GenerationSink {
 public:
  HttpSink(const GenerationRequest& request, std::string peer)
      : id_(request.id), tenant_(request.tenant), bits_(request.bits), peer_(std::move(peer)) {}

  void OnToken(GeneratedToken token) override {
    std::lock_guard lock(mutex_);
    tokens_.push_back(std::move(token));
    changed_.notify_all();
  }

  void OnFinish(const RequestSummary& summary) override {
    LogFinishedRequest(id_, tenant_, bits_, summary, "http", peer_);
    std::lock_guard lock(mutex_);
    summary_ = summary;
    changed_.notify_all();
  }

  struct News {
    std::vector<GeneratedToken> tokens;
    std::optional<RequestSummary> finished;
  };
  // What arrived since the last call, waiting up to `timeout` for anything.
  News Wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return !tokens_.empty() || summary_.has_value(); });
    News news;
    news.tokens.assign(std::make_move_iterator(tokens_.begin()), std::make_move_iterator(tokens_.end()));
    tokens_.clear();
    if (summary_) news.finished = summary_;
    return news;
  }

 private:
  const std::string id_;
  const std::string tenant_;
  const int bits_;
  const std::string peer_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<GeneratedToken> tokens_;
  std::optional<RequestSummary> summary_;
};

void Reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void ReplyError(httplib::Response& res, const absl::Status& status) {
  const openai::HttpError error = openai::ToHttpError(status);
  if (error.status == 429) res.set_header("Retry-After", "1");
  Reply(res, error.status, error.body);
}

// The request's Authorization header, if it sent one (httplib returns a copy: keep it alive).
std::optional<std::string> Authorization(const httplib::Request& req) {
  if (!req.has_header("Authorization")) return std::nullopt;
  return req.get_header_value("Authorization");
}

absl::StatusOr<Tenant> Authenticate(const TenantRegistry& tenants, const httplib::Request& req) {
  const std::optional<std::string> authorization = Authorization(req);
  return tenants.Authenticate(authorization ? std::optional<std::string_view>(*authorization) : std::nullopt);
}

std::string SseEvent(const nlohmann::json& data) { return absl::StrCat("data: ", data.dump(), "\n\n"); }

// An answer in progress: what its content provider needs between calls. Both kinds are written
// as the request runs, so that a client that leaves is noticed and its request cancelled: a
// stream as Server-Sent Events, a whole answer as one JSON object at the end, after a space
// every kKeepAlive while it waits (JSON allows leading whitespace).
struct Answer {
  std::shared_ptr<HttpSink> sink;
  std::shared_ptr<RequestHandle> handle;
  openai::AnswerHeader header;
  bool stream = false;
  bool logprobs = false;
  bool include_usage = false;
  bool opened = false;
  std::vector<GeneratedToken> tokens;  // a whole answer's, until it ends
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};

// Writes what the request produced since the last call; false when the client is gone (the
// request is then cancelled) or after the last byte.
bool WriteAnswer(Answer& a, httplib::DataSink& out) {
  const auto write = [&](const std::string& text) {
    a.last_write = std::chrono::steady_clock::now();
    return out.write(text.data(), text.size());
  };
  const auto gone = [&] {
    a.handle->Cancel();
    return false;
  };
  if (a.stream && !a.opened) {
    a.opened = true;
    if (a.header.endpoint == Endpoint::kChatCompletions && !write(SseEvent(openai::OpeningChunk(a.header)))) return gone();
  }
  HttpSink::News news = a.sink->Wait(std::chrono::milliseconds(100));
  if (!a.stream) {
    a.tokens.insert(a.tokens.end(), std::make_move_iterator(news.tokens.begin()), std::make_move_iterator(news.tokens.end()));
    if (news.finished) {
      if (!write(openai::Completion(a.header, a.tokens, news.finished->text, a.logprobs, *news.finished).dump())) return false;
      out.done();
      return true;
    }
    if (std::chrono::steady_clock::now() - a.last_write >= kKeepAlive && !write(" ")) return gone();
    return true;
  }
  // One chunk per token, as OpenAI streams, so that clients may count tokens by chunks; those
  // that arrived together go out in one write.
  std::string chunks;
  for (const GeneratedToken& token : news.tokens) chunks += SseEvent(openai::TokenChunk(a.header, token, a.logprobs));
  if (!chunks.empty() && !write(chunks)) return gone();
  if (news.finished) {
    std::string tail = SseEvent(openai::FinishChunk(a.header, news.finished->text, news.finished->reason));
    if (a.include_usage) tail += SseEvent(openai::UsageChunk(a.header, *news.finished));
    tail += "data: [DONE]\n\n";
    if (!write(tail)) return false;
    out.done();
    return true;
  }
  if (std::chrono::steady_clock::now() - a.last_write >= kKeepAlive && !write(": waiting\n\n")) return gone();
  return true;
}

}  // namespace

HttpFront::HttpFront(const openai::ServedModel& served, const GenerationService& validator, Scheduler& scheduler,
                     const TenantRegistry& tenants, ServerMetrics* metrics)
    : served_(served), validator_(validator), scheduler_(scheduler), tenants_(tenants), metrics_(metrics),
      http_(std::make_unique<httplib::Server>()) {}

HttpFront::~HttpFront() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<HttpFront>> HttpFront::Start(const std::string& listen, const openai::ServedModel& served,
                                                            const GenerationService& validator, Scheduler& scheduler,
                                                            const TenantRegistry& tenants, ServerMetrics* metrics) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    const std::string digits = listen.substr(colon + 1);
    if (!digits.empty() && digits.size() <= 5 && std::all_of(digits.begin(), digits.end(), ::isdigit)) port = std::stoi(digits);
  }
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("--http-listen ", listen, ": not HOST:PORT"));
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto front = std::make_unique<HttpFront>(served, validator, scheduler, tenants, metrics);
  httplib::Server& http = *front->http_;
  // httplib's default binds with SO_REUSEPORT, with which a second server would share the port.
  socket_t listening = INVALID_SOCKET;
  http.set_socket_options([&listening](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listening = sock;
  });
  http.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };  // httplib takes ownership
  front->Route();
  front->port_ = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (front->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", listen, ": the address is in use or not this host's"));
  }
  // Debian's httplib listens with a backlog of 5: a burst of new connections overflows it, and
  // the kernel drops them (clients stall or fail). Listening again sets the backlog.
  if (::listen(listening, SOMAXCONN) != 0) {
    return absl::InternalError(absl::StrCat("cannot listen on ", listen, " with a backlog of ", SOMAXCONN, ": ", std::strerror(errno)));
  }
  front->thread_ = std::thread([&http] { http.listen_after_bind(); });
  return front;
}

void HttpFront::Route() {
  http_->Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (const absl::StatusOr<Tenant> tenant = Authenticate(tenants_, req); !tenant.ok()) return ReplyError(res, tenant.status());
    Reply(res, 200, openai::ModelList(*served_.model, std::time(nullptr)));
  });
  const auto generate = [this](Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    const absl::StatusOr<Tenant> tenant = Authenticate(tenants_, req);
    if (!tenant.ok()) {
      if (metrics_) metrics_->RequestRejected("unauthenticated", "", "http");
      return ReplyError(res, tenant.status());
    }
    absl::StatusOr<openai::ParsedRequest> parsed = openai::ParseRequest(endpoint, req.body, served_);
    absl::StatusOr<GenerationRequest> validated = parsed.ok() ? validator_.Validate(parsed->request, *tenant) : parsed.status();
    if (!validated.ok()) {
      if (metrics_) {
        const bool denied = validated.status().code() == absl::StatusCode::kPermissionDenied;
        metrics_->RequestRejected(denied ? "permission_denied" : "invalid_argument", tenant->name, "http");
      }
      return ReplyError(res, validated.status());
    }
    validated->id = absl::StrCat("http-", next_id_++);
    validated->api = "http";
    const openai::AnswerHeader header{endpoint, absl::StrCat(endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", validated->id),
                                      std::time(nullptr), served_.model->LogicalName(validated->bits)};
    const bool logprobs = validated->return_logprobs;
    auto sink = std::make_shared<HttpSink>(*validated, absl::StrCat(req.remote_addr, ":", req.remote_port));
    absl::StatusOr<std::shared_ptr<RequestHandle>> handle = scheduler_.Submit(*std::move(validated), sink);
    if (!handle.ok()) return ReplyError(res, handle.status());
    auto answer = std::make_shared<Answer>();
    answer->sink = sink;
    answer->handle = *handle;
    answer->header = header;
    answer->stream = parsed->stream;
    answer->logprobs = logprobs;
    answer->include_usage = parsed->include_usage;
    if (parsed->stream) res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        parsed->stream ? "text/event-stream" : "application/json",
        [answer](size_t, httplib::DataSink& out) { return WriteAnswer(*answer, out); },
        // The response is done, written or not: a request the client left must not run on.
        [answer](bool) { answer->handle->Cancel(); });
  };
  http_->Post("/v1/completions",
              [generate](const httplib::Request& req, httplib::Response& res) { generate(Endpoint::kCompletions, req, res); });
  http_->Post("/v1/chat/completions",
              [generate](const httplib::Request& req, httplib::Response& res) { generate(Endpoint::kChatCompletions, req, res); });
  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    // httplib calls this for every error status: only a request no route took has no body yet.
    if (res.status == 404 && res.body.empty()) ReplyError(res, absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path)));
  });
}

}  // namespace anyprec::server
