#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "server/request.h"

namespace anyprec::server {
namespace {

const char* ReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopSequence: return "stop_sequence";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kTimeLimit: return "time_limit";
  }
  return "unknown";
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

}  // namespace

struct ServerMetrics::Families {
  explicit Families(prometheus::Registry& r)
      : generated(prometheus::BuildCounter().Name("anyprec_generation_tokens_total").Help("Tokens generated").Register(r)),
        prompt(prometheus::BuildCounter().Name("anyprec_prompt_tokens_total").Help("Prompt tokens admitted").Register(r)),
        finished(prometheus::BuildCounter().Name("anyprec_requests_finished_total").Help("Finished requests by reason").Register(r)),
        rejected(prometheus::BuildCounter().Name("anyprec_requests_rejected_total").Help("Rejected requests by reason").Register(r)),
        ttft(prometheus::BuildHistogram().Name("anyprec_time_to_first_token_seconds").Help("Time to first token").Register(r)),
        itl(prometheus::BuildHistogram().Name("anyprec_inter_token_latency_seconds").Help("Time between tokens").Register(r)),
        e2e(prometheus::BuildHistogram().Name("anyprec_request_duration_seconds").Help("End-to-end latency").Register(r)),
        queue(prometheus::BuildHistogram().Name("anyprec_queue_time_seconds").Help("Time queued before admission").Register(r)),
        step(prometheus::BuildHistogram().Name("anyprec_step_duration_seconds").Help("Engine step duration by phase").Register(r)),
        batch(prometheus::BuildHistogram().Name("anyprec_batch_tokens").Help("Tokens per engine step by phase").Register(r)),
        running(prometheus::BuildGauge().Name("anyprec_requests_running").Help("Requests being decoded").Register(r).Add({})),
        waiting(prometheus::BuildGauge().Name("anyprec_requests_waiting").Help("Requests queued").Register(r).Add({})),
        kv(prometheus::BuildGauge().Name("anyprec_kv_cache_usage_ratio").Help("KV cache blocks held by requests / blocks in the pool").Register(r).Add({})),
        prefix_queries(prometheus::BuildCounter().Name("anyprec_prefix_cache_query_tokens_total").Help("Context tokens looked up in the prefix cache at admission, by width").Register(r)),
        prefix_hits(prometheus::BuildCounter().Name("anyprec_prefix_cache_hit_tokens_total").Help("Context tokens found in the prefix cache, at admission or before a prompt chunk, by width").Register(r)),
        prefix_blocks(prometheus::BuildGauge().Name("anyprec_prefix_cache_blocks").Help("KV blocks registered in the prefix cache, held by requests or not").Register(r).Add({})),
        weights(prometheus::BuildGauge().Name("anyprec_weight_bytes").Help("Resident weight bytes by component").Register(r)),
        preempted(prometheus::BuildCounter().Name("anyprec_preemptions_total").Help("Requests preempted for KV blocks").Register(r)),
        reloads(prometheus::BuildCounter().Name("anyprec_tenant_reloads_total").Help("Tenants file reloads by result").Register(r)),
        drafted(prometheus::BuildCounter().Name("anyprec_speculative_drafted_tokens_total").Help("Tokens drafted by speculative requests, by draft and target width").Register(r)),
        accepted(prometheus::BuildCounter().Name("anyprec_speculative_accepted_tokens_total").Help("Drafted tokens the verify steps accepted, by draft and target width").Register(r)),
        per_verify(prometheus::BuildHistogram().Name("anyprec_speculative_tokens_per_verify_step").Help("Tokens a verify step committed (accepted drafts and one more)").Register(r)),
        width_changes(prometheus::BuildCounter().Name("anyprec_width_changes_total").Help("Adaptive requests' width changes, by tenant and direction (up or down)").Register(r)),
        width_ceiling(prometheus::BuildGauge().Name("anyprec_width_ceiling_bits").Help("The width the controller lets a tenant's adaptive requests run at, at most").Register(r)),
        stalled(prometheus::BuildGauge().Name("anyprec_engine_stalled").Help("1 while the watchdog sees the engine loop stalled").Register(r).Add({})),
        build(prometheus::BuildGauge().Name("anyprec_build_info").Help("Build information").Register(r)) {}

  prometheus::Family<prometheus::Counter>& generated;
  prometheus::Family<prometheus::Counter>& prompt;
  prometheus::Family<prometheus::Counter>& finished;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Family<prometheus::Histogram>& ttft;
  prometheus::Family<prometheus::Histogram>& itl;
  prometheus::Family<prometheus::Histogram>& e2e;
  prometheus::Family<prometheus::Histogram>& queue;
  prometheus::Family<prometheus::Histogram>& step;
  prometheus::Family<prometheus::Histogram>& batch;
  prometheus::Gauge& running;
  prometheus::Gauge& waiting;
  prometheus::Gauge& kv;
  prometheus::Family<prometheus::Counter>& prefix_queries;
  prometheus::Family<prometheus::Counter>& prefix_hits;
  prometheus::Gauge& prefix_blocks;
  prometheus::Family<prometheus::Gauge>& weights;
  prometheus::Family<prometheus::Counter>& preempted;
  prometheus::Family<prometheus::Counter>& reloads;
  prometheus::Family<prometheus::Counter>& drafted;
  prometheus::Family<prometheus::Counter>& accepted;
  prometheus::Family<prometheus::Histogram>& per_verify;
  prometheus::Family<prometheus::Counter>& width_changes;
  prometheus::Family<prometheus::Gauge>& width_ceiling;
  prometheus::Gauge& stalled;
  prometheus::Family<prometheus::Gauge>& build;
};

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()), families_(std::make_unique<Families>(*registry_)) {
  families_->build.Add({{"version", "0.1.0"}}).Set(1);
}

ServerMetrics::~ServerMetrics() = default;

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Start(const std::string& listen) {
  std::unique_ptr<ServerMetrics> metrics(new ServerMetrics());
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(listen);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  metrics->exposer_->RegisterCollectable(metrics->registry_);
  return metrics;
}

int ServerMetrics::port() const {
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void ServerMetrics::RequestAdmitted(int bits, const std::string& tenant, const std::string& api, double queue_seconds, int prompt_tokens) {
  const prometheus::Labels labels{{"bits", std::to_string(bits)}, {"tenant", tenant}, {"api", api}};
  families_->queue.Add(labels, LatencyBuckets()).Observe(queue_seconds);
  families_->prompt.Add(labels).Increment(prompt_tokens);
}

void ServerMetrics::TokenGenerated(int bits, const std::string& tenant, const std::string& api, double since_previous_seconds, bool first) {
  const prometheus::Labels labels{{"bits", std::to_string(bits)}, {"tenant", tenant}, {"api", api}};
  families_->generated.Add(labels).Increment();
  (first ? families_->ttft : families_->itl).Add(labels, LatencyBuckets()).Observe(since_previous_seconds);
}

void ServerMetrics::RequestFinished(int bits, const std::string& tenant, const std::string& api, FinishReason reason, double seconds) {
  const std::string b = std::to_string(bits);
  families_->finished.Add({{"bits", b}, {"tenant", tenant}, {"api", api}, {"reason", ReasonName(reason)}}).Increment();
  families_->e2e.Add({{"bits", b}, {"tenant", tenant}, {"api", api}}, LatencyBuckets()).Observe(seconds);
}

void ServerMetrics::RequestRejected(const std::string& reason, const std::string& tenant, const std::string& api) {
  families_->rejected.Add({{"reason", reason}, {"tenant", tenant}, {"api", api}}).Increment();
}

void ServerMetrics::Preempted(int bits, const std::string& tenant, const std::string& api) {
  families_->preempted.Add({{"bits", std::to_string(bits)}, {"tenant", tenant}, {"api", api}}).Increment();
}

void ServerMetrics::Verified(int draft_bits, int bits, int drafted, int accepted, int committed) {
  const prometheus::Labels labels{{"draft_bits", std::to_string(draft_bits)}, {"bits", std::to_string(bits)}};
  families_->drafted.Add(labels).Increment(drafted);
  families_->accepted.Add(labels).Increment(accepted);
  families_->per_verify.Add(labels, prometheus::Histogram::BucketBoundaries{1, 2, 3, 4, 5, 6, 8, 10, 12, 17}).Observe(committed);
}

void ServerMetrics::WidthChanged(const std::string& tenant, bool up) {
  families_->width_changes.Add({{"tenant", tenant}, {"direction", up ? "up" : "down"}}).Increment();
}

void ServerMetrics::WidthCeiling(const std::string& tenant, int bits) { families_->width_ceiling.Add({{"tenant", tenant}}).Set(bits); }

void ServerMetrics::Step(const char* phase, int batch_tokens, double seconds) {
  families_->step.Add({{"phase", phase}}, LatencyBuckets()).Observe(seconds);
  families_->batch.Add({{"phase", phase}}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})
      .Observe(batch_tokens);
}

void ServerMetrics::Load(int running, int waiting, double kv_usage, int prefix_cached_blocks) {
  families_->running.Set(running);
  families_->waiting.Set(waiting);
  families_->kv.Set(kv_usage);
  families_->prefix_blocks.Set(prefix_cached_blocks);
}

void ServerMetrics::PrefixLookup(int bits, int query_tokens, int hit_tokens) {
  const prometheus::Labels labels{{"bits", std::to_string(bits)}};
  families_->prefix_queries.Add(labels).Increment(query_tokens);
  families_->prefix_hits.Add(labels).Increment(hit_tokens);
}

void ServerMetrics::TenantsReloaded(bool ok) { families_->reloads.Add({{"result", ok ? "ok" : "error"}}).Increment(); }

void ServerMetrics::EngineStalled(bool stalled) { families_->stalled.Set(stalled ? 1 : 0); }

void ServerMetrics::WeightBytes(const std::string& component, double bytes) {
  families_->weights.Add({{"component", component}}).Set(bytes);
}

}  // namespace anyprec::server
