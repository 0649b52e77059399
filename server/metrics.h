// Prometheus metrics of the server (prefix anyprec_, label `bits` wherever it applies),
// exposed on /metrics by prometheus-cpp.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace prometheus {
class Registry;
class Exposer;
}  // namespace prometheus

namespace anyprec::server {

enum class FinishReason;

class ServerMetrics {
 public:
  // Serves /metrics on `listen` (HOST:PORT; port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Start(const std::string& listen);
  ~ServerMetrics();

  int port() const;

  void RequestAdmitted(int bits, double queue_seconds, int prompt_tokens);
  void TokenGenerated(int bits, double since_previous_seconds, bool first);
  void RequestFinished(int bits, FinishReason reason, double seconds);
  void RequestRejected(const std::string& reason);
  void Step(const char* phase, int batch_tokens, double seconds);
  void Load(int running, int waiting, double kv_usage);
  void WeightBytes(const std::string& component, double bytes);

 private:
  ServerMetrics();
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace anyprec::server
