// Prometheus metrics of the server (prefix anyprec_, label `bits` wherever it applies, and
// `tenant` and `api` (grpc or http, the front a request came by) for per-request series),
// exposed on /metrics by prometheus-cpp. Tenant names come
// from the tenants file only, never from clients, so the label's values stay few.
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

  void RequestAdmitted(int bits, const std::string& tenant, const std::string& api, double queue_seconds, int prompt_tokens);
  void TokenGenerated(int bits, const std::string& tenant, const std::string& api, double since_previous_seconds, bool first);
  void RequestFinished(int bits, const std::string& tenant, const std::string& api, FinishReason reason, double seconds);
  // `tenant` is empty when the request was refused before its tenant was known.
  void RequestRejected(const std::string& reason, const std::string& tenant, const std::string& api);
  void Preempted(int bits, const std::string& tenant, const std::string& api);
  // A speculative request's verify step: the tokens it drafted and the ones accepted, and the
  // tokens the step committed (the accepted ones and the one drawn after them, fewer when the
  // request ended among them).
  void Verified(int draft_bits, int bits, int drafted, int accepted, int committed);
  // An adaptive request of `tenant` moved to a higher (`up`) or lower width.
  void WidthChanged(const std::string& tenant, bool up);
  // The width ceiling the controller set for `tenant`'s adaptive requests.
  void WidthCeiling(const std::string& tenant, int bits);
  void Step(const char* phase, int batch_tokens, double seconds);
  // `kv_usage`: blocks held by requests over all blocks; cached blocks that no request holds
  // are counted apart, in `prefix_cached_blocks` (with the held ones that are cached).
  void Load(int running, int waiting, double kv_usage, int prefix_cached_blocks);
  // A prefix cache lookup: at admission, the context's tokens and those found cached; before a
  // prompt chunk, no query and the tokens found since.
  void PrefixLookup(int bits, int query_tokens, int hit_tokens);
  void WeightBytes(const std::string& component, double bytes);
  void TenantsReloaded(bool ok);
  void EngineStalled(bool stalled);

 private:
  ServerMetrics();
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace anyprec::server
