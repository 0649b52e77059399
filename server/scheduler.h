// The engine loop: one thread runs every admitted request through Transformer::ForwardBatch,
// step by step (continuous batching). Each step takes chunks of waiting prompts within a
// token budget and one decode token of every running request, each at its own width.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/transformer.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec::server {

using Clock = std::chrono::steady_clock;

struct GenerationRequest {
  std::vector<TokenId> prompt;  // BOS included when the caller wants it
  int bits = 0;
  int max_new_tokens = 0;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool return_logprobs = false;
  Clock::time_point deadline = Clock::time_point::max();
};

enum class FinishReason { kLength, kEos, kStopSequence, kCancelled, kTimeLimit };

struct GeneratedToken {
  TokenId id;
  std::string text;
  std::optional<float> logprob;
};

// Receives a request's output; called on the engine loop thread, so it must not block.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  virtual void OnToken(GeneratedToken token) = 0;
  virtual void OnFinish(FinishReason reason, int prompt_tokens, int completion_tokens) = 0;
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

struct SchedulerOptions {
  int max_running = 16;          // sequences decoded together
  int max_queued = 64;           // waiting requests; past it, RESOURCE_EXHAUSTED
  long kv_cache_tokens = 65536;  // KV positions reserved by running requests, all together
  int step_tokens = 256;         // prompt tokens one step may take (chunked prefill)
  bool exact_kernels = false;
};

class ServerMetrics;

class Scheduler {
 public:
  // `metrics` may be null; it must outlive the scheduler.
  Scheduler(const Model& model, const Tokenizer& tokenizer, SchedulerOptions options, ServerMetrics* metrics = nullptr);
  ~Scheduler();  // stops the loop; requests still running end as CANCELLED

  // Queues a validated request. RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE
  // after Stop().
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerationRequest request, std::shared_ptr<GenerationSink> sink);

  // Refuses new requests; those admitted or queued go on.
  void StopAccepting();
  // Waits until no request is queued or running, or until `deadline`; true when idle.
  bool WaitIdle(Clock::time_point deadline);
  // Ends every request still there as CANCELLED and joins the loop.
  void Stop();

  int running() const { return running_count_.load(); }
  int waiting() const { return waiting_count_.load(); }
  long kv_reserved() const { return kv_reserved_.load(); }
  long kv_capacity() const { return options_.kv_cache_tokens; }

 private:
  struct Sequence;
  void Loop();
  void Step(std::vector<std::unique_ptr<Sequence>>& running);
  void Finish(Sequence& s, FinishReason reason);

  const Model& model_;
  const Tokenizer& tokenizer_;
  const SchedulerOptions options_;
  ServerMetrics* const metrics_;
  Transformer transformer_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::unique_ptr<Sequence>> queue_;  // guarded by mutex_
  bool accepting_ = true;                        // guarded by mutex_
  bool stopping_ = false;                        // guarded by mutex_
  std::atomic<int> running_count_{0};
  std::atomic<int> waiting_count_{0};
  std::atomic<long> kv_reserved_{0};
  std::thread thread_;
};

}  // namespace anyprec::server
