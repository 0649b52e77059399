// The engine loop: one thread runs every admitted request through Transformer::ForwardBatch,
// step by step (continuous batching). Each step takes chunks of waiting prompts within a
// token budget and one decode token of every running request, each at its own width. KV
// entries live in one paged block pool; requests are admitted when their blocks can be
// had, tenants take turns by weighted tokens served (a virtual token counter, as in Sheng
// et al., OSDI 2024), and when the pool runs dry mid-decode the most recently admitted
// request is preempted and later recomputed. Adaptive requests run at the width their tenant's
// WidthController chooses each step from the measured step costs, latencies and demand.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/device/kv_cache.h"
#include "engine/runtime/transformer.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/request.h"
#include "server/step_costs.h"
#include "server/width_controller.h"

namespace anyprec::server {

struct SchedulerOptions {
  int max_running = 16;          // sequences decoded together
  int max_queued = 64;           // waiting requests; past it, RESOURCE_EXHAUSTED
  long kv_cache_tokens = 65536;  // KV positions in the block pool, all requests together (see KvPoolTokens)
  int kv_block_tokens = 16;      // positions per block
  cpu::KvDType kv_dtype = cpu::KvDType::kF32;  // how the pool stores keys and values
  int step_tokens = 256;         // prompt tokens one step may take (chunked prefill)
  // Full KV blocks are registered by their contents (width and tokens from the start), and a
  // request admitted takes the longest prefix of its context the pool holds at its width.
  bool prefix_cache = true;
  // Runs each width's rows as a batch of its own rather than all widths in one pass; only
  // for measuring what the one-pass mixed-precision kernels save.
  bool group_by_bits = false;
};

class ServerMetrics;

// The pool size for --kv-cache-tokens auto (0): 65536 positions, or as many as fit in a
// quarter of the machine's memory when that is fewer, and, when the model runs on a GPU
// (`device_bytes` > 0) that mirrors the pool in fp32, in half of the device's memory.
long KvPoolTokens(const ModelConfig& config, int block_tokens, cpu::KvDType dtype, size_t device_bytes = 0);

class Scheduler {
 public:
  // Steps run on `device`, made for `model`. `metrics` may be null. All must outlive the
  // scheduler.
  Scheduler(const Model& model, Device& device, const Tokenizer& tokenizer, SchedulerOptions options, ServerMetrics* metrics = nullptr);
  ~Scheduler();  // stops the loop; requests still running end as CANCELLED

  // Queues a validated request. RESOURCE_EXHAUSTED when the queue (the server's or the
  // tenant's) is full, UNAVAILABLE after StopAccepting().
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerationRequest request, std::shared_ptr<GenerationSink> sink);

  // Refuses new requests; those admitted or queued go on.
  void StopAccepting();
  // Waits until no request is queued or running, or until `deadline`; true when idle.
  bool WaitIdle(Clock::time_point deadline);
  // Ends every request still there as CANCELLED and joins the loop.
  void Stop();

  int running() const { return running_count_.load(); }
  int waiting() const { return waiting_count_.load(); }
  // Blocks of the KV pool held by requests, and all of them (cached blocks no request holds
  // count as free: they are evicted when needed).
  int kv_blocks_used() const { return kv_blocks_used_.load(); }
  int kv_blocks() const { return static_cast<int>(options_.kv_cache_tokens / options_.kv_block_tokens); }
  // When the engine step now running began; nullopt between steps. A watchdog reads it.
  std::optional<Clock::time_point> step_started() const;

 private:
  struct Sequence;
  struct TenantState {
    int queued = 0;
    int running = 0;
    double served = 0;  // weighted tokens served / weight: the virtual token counter
  };
  // What the width controllers need of the queue and the tenants, copied under mutex_ (held).
  struct AdaptiveTenant {
    AdaptiveWidth policy;  // the tenant range and objectives of its latest adaptive request
    bool active = false;   // a request of the tenant is running or waiting
    std::optional<Clock::time_point> oldest_waiting;  // submission of its longest-waiting request
  };
  struct LoadSnapshot {
    std::map<std::string, AdaptiveTenant> tenants;
    double demand_tokens_per_second = 0;
  };
  void Loop();
  // Admits queued requests while blocks for their context can be had, each starting on the
  // cached blocks of its longest cached prefix (with mutex_ held).
  void Admit(std::vector<std::unique_ptr<Sequence>>& running);
  // The width an adaptive sequence runs at now: its tenant's ceiling within its own range.
  int AdaptiveBits(const Sequence& s) const;
  // One engine step: Plan, one Forward over every sequence planned, ChargeTenants, and
  // Emit for each sequence whose context is now all in its cache.
  void Step(std::vector<std::unique_ptr<Sequence>>& running, const LoadSnapshot& load);
  // What the step runs: each running sequence's next tokens (one to decode, or a chunk of
  // prompt within the step's budget) with their KV blocks reserved, preempting when the pool
  // is dry; cancelled and timed-out sequences end here.
  // A step of a speculative request drafts a token or verifies the drafted ones; any other is plain.
  enum class StepKind { kPlain, kDraft, kVerify };
  struct PlannedStep {
    std::vector<SequenceStep> steps;
    std::vector<Sequence*> sequences;  // sequences[i] runs steps[i]
    std::vector<StepKind> kinds;       // what steps[i] is
    int prompt_tokens = 0;
  };
  PlannedStep Plan(std::vector<std::unique_ptr<Sequence>>& running);
  LoadSnapshot SnapshotLoad();  // with mutex_ held
  // Moves each adaptive tenant's width ceiling, then each adaptive sequence between speculative
  // cycles to its ceiling (within its own range).
  void UpdateWidths(std::vector<std::unique_ptr<Sequence>>& running, const LoadSnapshot& load);
  // Adds a step that ran (its widest width and token rows) to the step costs and to the
  // measurement window of the widths in force.
  void RecordStep(int widest_bits, int rows, double seconds);
  // Whether the sequence's next step decodes (generates from its last token) rather than
  // computing part of its context.
  static bool Decoding(const Sequence& s);
  // Adds the step's tokens to each tenant's virtual token counter (fair share).
  void ChargeTenants(const PlannedStep& plan);
  // Chooses the sequence's next token from `logits` and delivers it, or ends the sequence.
  void Emit(Sequence& s, std::span<const float> logits);
  // Delivers a chosen token (its logprobs from `logits`, the row it was chosen from), or ends the sequence.
  void Deliver(Sequence& s, DecodeStep decoded, std::span<const float> logits);
  absl::Status Forward(std::span<const SequenceStep> steps, std::span<float> logits);
  void Preempt(Sequence& s);
  // Extends `cache`, holding only its shared prefix, with what the prefix cache holds of the
  // sequence's context at its width, leaving the last token to compute (its logits choose the
  // next); returns the positions it then holds.
  static int ShareCachedPrefix(const Sequence& s, KvCache& cache);
  // Counts a lookup (`query_tokens` looked up, 0 after admission) and the tokens it found, in
  // the metrics and, before any preemption, in the request's usage.
  void CountPrefixHit(Sequence& s, int query_tokens, int hit_tokens);
  // Registers the sequence's newly filled blocks in the prefix cache, while it may.
  void RegisterPrefix(Sequence& s);
  // Before a chunk of context, when the sequence holds nothing past its shared prefix: takes
  // what other requests have registered of its context since (one computing the same prefix
  // a step ahead), so that a burst of requests with one new prefix computes it about once.
  void SharePrefixSince(Sequence& s);
  void Finish(Sequence& s, FinishReason reason);

  const Model& model_;
  const Tokenizer& tokenizer_;
  const SchedulerOptions options_;
  ServerMetrics* const metrics_;
  Transformer transformer_;
  KvBlockPool pool_;  // engine loop only

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::unique_ptr<Sequence>> queue_;  // guarded by mutex_
  std::map<std::string, TenantState> tenants_;   // guarded by mutex_
  bool accepting_ = true;                        // guarded by mutex_
  bool stopping_ = false;                        // guarded by mutex_
  std::map<std::string, AdaptiveWidth> adaptive_policies_;  // guarded by mutex_: by tenant
  // guarded by mutex_: recent submissions and their max_new_tokens, and the first ever
  std::deque<std::pair<Clock::time_point, int>> arrivals_;
  std::optional<Clock::time_point> first_arrival_;
  // The engine loop's alone: what the width controllers measure and decide.
  StepCosts step_costs_;
  std::map<std::string, WidthController> controllers_;
  std::map<std::string, std::deque<std::pair<Clock::time_point, double>>> first_tokens_;  // recent TTFTs of adaptive requests
  double output_tokens_mean_ = 0;  // of finished requests, recent ones weighing more
  long outputs_measured_ = 0;
  StepWindow window_;  // steps since the widths last changed
  std::atomic<int> running_count_{0};
  std::atomic<int> waiting_count_{0};
  std::atomic<int> kv_blocks_used_{0};
  std::atomic<Clock::rep> step_started_{0};  // 0 between steps
  std::thread thread_;
};

}  // namespace anyprec::server
