// The OpenAI-compatible HTTP API beside gRPC (cpp-httplib): GET /v1/models, POST
// /v1/completions and /v1/chat/completions, streamed as Server-Sent Events or whole. It serves
// through the same tenants, Generation service rules, scheduler and access log as gRPC: a
// client switches to anyprec by its base URL and picks the width by model name (NAME@B).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/generation_service.h"
#include "server/openai_api.h"
#include "server/scheduler.h"
#include "server/tenants.h"

namespace httplib {
class Server;
}

namespace anyprec::server {

class HttpFront {
 public:
  // Listens on `listen` (HOST:PORT; port 0 picks a free one) and serves on threads of its own.
  // Unavailable when the address is taken or invalid. Everything given must outlive the front.
  static absl::StatusOr<std::unique_ptr<HttpFront>> Start(const std::string& listen, const openai::ServedModel& served,
                                                          const GenerationService& validator, Scheduler& scheduler,
                                                          const TenantRegistry& tenants, ServerMetrics* metrics);
  ~HttpFront();  // stops listening; requests still streaming are cancelled

  int port() const { return port_; }

  // Start makes it: use that.
  HttpFront(const openai::ServedModel& served, const GenerationService& validator, Scheduler& scheduler, const TenantRegistry& tenants,
            ServerMetrics* metrics);

 private:
  void Route();

  const openai::ServedModel served_;
  const GenerationService& validator_;
  Scheduler& scheduler_;
  const TenantRegistry& tenants_;
  ServerMetrics* const metrics_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace anyprec::server
