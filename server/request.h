// A generation request as the server's parts share it: validated by the Generation service,
// queued and run by the scheduler, its tokens and end delivered to a sink, and counted by the
// metrics.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/width.h"
#include "engine/runtime/decoder.h"
#include "engine/runtime/speculative.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec::server {

using Clock = std::chrono::steady_clock;

// What the scheduler enforces for one tenant.
struct TenantLimits {
  int max_running = 1 << 20;
  int max_queued = 1 << 20;
  double weight = 1.0;  // share of the engine relative to other tenants
};

// The latencies a tenant's adaptive requests are served to keep: time to the first token, and
// time per output token after it.
struct Slo {
  double ttft_seconds = 2.0;
  double tpot_seconds = 0.15;
};

// A request whose width the scheduler chooses under load (docs/TENANTS.md): within `widths`,
// which lie within `tenant_widths`, the range the tenant's width ceiling moves in.
struct AdaptiveWidth {
  WidthRange widths;
  WidthRange tenant_widths;
  Slo slo;
};

struct GenerationRequest {
  std::string id;      // for logs
  std::string tenant;  // fair share, limits and metrics are kept per tenant
  std::string api = "grpc";  // the front it came by, "grpc" or "http": a label of its metrics
  TenantLimits limits;
  std::vector<TokenId> prompt;  // BOS included when the caller wants it
  int bits = 0;  // the width; an adaptive request's highest
  // Set: the scheduler chooses the width step by step within adaptive->widths.
  std::optional<AdaptiveWidth> adaptive;
  DecodingOptions decoding;
  bool return_logprobs = false;
  int top_logprobs = 0;  // alternatives per token, with return_logprobs
  // Set: decode speculatively, drafting at a lower width (validated against the model).
  std::optional<SpeculativeOptions> speculative;
  Clock::time_point deadline = Clock::time_point::max();
};

enum class FinishReason { kLength, kEos, kStopSequence, kCancelled, kTimeLimit };

// A token the model could have produced instead, with its own bytes (maybe part of a UTF-8
// character).
struct TokenAlternative {
  TokenId id;
  std::string bytes;
  float logprob;
};

struct GeneratedToken {
  TokenId id;
  std::string text;  // what this token completes; whole UTF-8 characters
  std::optional<float> logprob;
  std::vector<TokenAlternative> top_logprobs;  // most likely first
  int bits = 0;  // the width that produced it
};

// How a finished request went, for its access log line.
struct RequestSummary {
  FinishReason reason = FinishReason::kLength;
  std::string text;  // the output's last text, which completes no token (Decoder::Finish)
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens found in the prefix cache (until a preemption, if any)
  int preemptions = 0;
  SpeculativeCounts speculative;          // zero for a plain request
  std::map<int, int> tokens_by_width;     // output tokens by the width that produced them
  double queue_seconds = 0;               // submission to first admission
  std::optional<double> ttft_seconds;     // submission to first token
  double total_seconds = 0;
};

// Receives a request's output; called on the engine loop thread, so it must not block.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  virtual void OnToken(GeneratedToken token) = 0;
  virtual void OnFinish(const RequestSummary& summary) = 0;
};

// Lets the transport stop a request; it ends within one engine step.
class RequestHandle {
 public:
  void Cancel(FinishReason reason = FinishReason::kCancelled) {
    int expected = -1;
    cancel_reason_.compare_exchange_strong(expected, static_cast<int>(reason));
  }
  std::optional<FinishReason> cancelled() const {
    const int r = cancel_reason_.load();
    return r < 0 ? std::nullopt : std::optional<FinishReason>(static_cast<FinishReason>(r));
  }

 private:
  std::atomic<int> cancel_reason_{-1};
};

}  // namespace anyprec::server
