#include "server/scheduler.h"

#include <unistd.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/runtime/logprobs.h"
#include "server/metrics.h"

namespace anyprec::server {

struct Scheduler::Sequence {
  GenerationRequest request;
  std::shared_ptr<GenerationSink> sink;
  std::shared_ptr<RequestHandle> handle;
  // The prompt, then the tokens generated so far (decoder->context()), and how they are chosen.
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<KvCache> cache;  // while admitted
  int cached = 0;                  // context tokens whose keys and values are in the cache
  // The width it runs at now: the request's, or for an adaptive one its tenant's ceiling
  // within its range (0 until first chosen).
  int bits = 0;
  // Every cached position was computed at `bits`, so its full blocks can be registered for
  // other requests; an adaptive request's first width change mid-context ends that until a
  // preemption recomputes it.
  bool one_width = true;
  int prefix_hit_tokens = 0;  // context tokens found cached, until its first preemption
  std::map<int, int> tokens_by_width;
  bool done = false;
  bool preempted = false;  // lost its cache this step; goes back to the queue's front
  int preemptions = 0;
  // A speculative request's cycle in progress: the tokens drafted so far (one per engine step,
  // at the draft width), and how many this cycle drafts before its verify step (-1 between
  // cycles). Its cache then holds `cached` positions plus the drafted ones.
  Draft draft;
  int cycle_lookahead = -1;
  std::mt19937_64 cycle_random;  // the sampler's state when the cycle began
  std::vector<TokenId> speculative_input;  // the draft or verify step's tokens (DraftInput, VerifyInput)
  SpeculativeCounts speculative;
  Clock::time_point submitted;
  std::optional<Clock::time_point> admitted;
  std::optional<Clock::time_point> first_token;
  Clock::time_point last_token;
};

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Arrivals counted for the demand the width controllers see, and first tokens for their TTFT.
constexpr Clock::duration kDemandWindow = std::chrono::seconds(10);
constexpr Clock::duration kFirstTokenWindow = std::chrono::seconds(2);

// A speculative request drafts only below the width it runs at, which an adaptive one's may not be.
bool Speculating(const GenerationRequest& request, int bits) { return request.speculative && request.speculative->draft_bits < bits; }

// Where each step's rows of logits start, and (last) how many rows all steps take: one per
// step, or one per token of a step that asks for every token's (a speculative verify step).
std::vector<size_t> LogitsRowOffsets(std::span<const SequenceStep> steps) {
  std::vector<size_t> rows(steps.size() + 1);
  for (size_t i = 0; i < steps.size(); ++i) {
    rows[i + 1] = rows[i] + (steps[i].which == LogitsFor::kAllTokens ? steps[i].tokens.size() : 1);
  }
  return rows;
}

// Token weights of the virtual token counter: a generated token costs twice a prompt
// token, as in Sheng et al.
constexpr double kPromptTokenCost = 1;
constexpr double kGeneratedTokenCost = 2;

}  // namespace

long KvPoolTokens(const ModelConfig& config, int block_tokens, cpu::KvDType dtype, size_t device_bytes) {
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE);
  long fit = static_cast<long>(memory / 4 / KvBlockPool::BytesPerPosition(config, dtype));
  if (device_bytes > 0) {
    fit = std::min(fit, static_cast<long>(device_bytes / 2 / KvBlockPool::BytesPerPosition(config, cpu::KvDType::kF32)));
  }
  return std::max<long>(block_tokens, std::min<long>(65536, fit) / block_tokens * block_tokens);
}

Scheduler::Scheduler(const Model& model, Device& device, const Tokenizer& tokenizer, SchedulerOptions options, ServerMetrics* metrics)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      metrics_(metrics),
      transformer_(model, device),
      pool_(model.config(), options.kv_block_tokens, static_cast<int>(options.kv_cache_tokens / options.kv_block_tokens),
            options.kv_dtype) {
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

std::optional<Clock::time_point> Scheduler::step_started() const {
  const Clock::rep started = step_started_.load();
  if (started == 0) return std::nullopt;
  return Clock::time_point(Clock::duration(started));
}

absl::StatusOr<std::shared_ptr<RequestHandle>> Scheduler::Submit(GenerationRequest request,
                                                                  std::shared_ptr<GenerationSink> sink) {
  auto s = std::make_unique<Sequence>();
  s->handle = std::make_shared<RequestHandle>();
  s->decoder = std::make_unique<Decoder>(model_.config(), tokenizer_, request.decoding, std::move(request.prompt));
  const int max_positions = s->decoder->max_positions();
  const long blocks = (max_positions + options_.kv_block_tokens - 1) / options_.kv_block_tokens;
  if (blocks > kv_blocks()) {
    if (metrics_) metrics_->RequestRejected("kv_too_large", request.tenant, request.api);
    return absl::InvalidArgumentError(absl::StrCat("prompt and max_new_tokens need ", max_positions, " KV positions, more than the server's ",
                                                   static_cast<long>(kv_blocks()) * options_.kv_block_tokens));
  }
  s->bits = request.adaptive ? 0 : request.bits;
  s->request = std::move(request);
  s->sink = std::move(sink);
  s->submitted = Clock::now();
  std::shared_ptr<RequestHandle> handle = s->handle;
  {
    std::lock_guard lock(mutex_);
    const std::string& tenant = s->request.tenant;
    if (!accepting_) {
      if (metrics_) metrics_->RequestRejected("shutting_down", tenant, s->request.api);
      return absl::UnavailableError("the server is shutting down");
    }
    if (static_cast<int>(queue_.size()) >= options_.max_queued) {
      if (metrics_) metrics_->RequestRejected("queue_full", tenant, s->request.api);
      return absl::ResourceExhaustedError(absl::StrCat("queue full (", options_.max_queued, " waiting requests)"));
    }
    TenantState& state = tenants_[tenant];
    if (state.queued >= s->request.limits.max_queued) {
      if (metrics_) metrics_->RequestRejected("tenant_queue_full", tenant, s->request.api);
      return absl::ResourceExhaustedError(
          absl::StrCat("tenant ", tenant, " already has ", state.queued, " requests waiting, its limit"));
    }
    if (state.queued == 0 && state.running == 0) {
      // A tenant that was away gets no credit for the time it used nothing: it starts level
      // with the least-served tenant still active.
      double least = std::numeric_limits<double>::infinity();
      for (const auto& [name, other] : tenants_) {
        if (other.queued + other.running > 0) least = std::min(least, other.served);
      }
      if (least != std::numeric_limits<double>::infinity()) state.served = std::max(state.served, least);
    }
    ++state.queued;
    if (s->request.adaptive) adaptive_policies_[tenant] = *s->request.adaptive;
    arrivals_.emplace_back(s->submitted, s->request.decoding.max_new_tokens);
    if (!first_arrival_) first_arrival_ = s->submitted;
    queue_.push_back(std::move(s));
    waiting_count_ = static_cast<int>(queue_.size());
  }
  wake_.notify_one();
  return handle;
}

void Scheduler::StopAccepting() {
  std::lock_guard lock(mutex_);
  accepting_ = false;
}

bool Scheduler::WaitIdle(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  return idle_.wait_until(lock, deadline, [this] { return queue_.empty() && running_count_ == 0; });
}

void Scheduler::Stop() {
  {
    std::lock_guard lock(mutex_);
    accepting_ = false;
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Finish(Sequence& s, FinishReason reason) {
  if (s.done) return;
  s.done = true;
  s.cache.reset();  // its blocks are free for the next step
  const Clock::time_point now = Clock::now();
  RequestSummary summary;
  summary.reason = reason;
  summary.text = s.decoder->Finish();
  summary.prompt_tokens = s.decoder->prompt_tokens();
  summary.completion_tokens = s.decoder->generated();
  summary.cached_prompt_tokens = s.prefix_hit_tokens;
  summary.preemptions = s.preemptions;
  summary.speculative = s.speculative;
  summary.tokens_by_width = s.tokens_by_width;
  if (reason == FinishReason::kLength || reason == FinishReason::kEos || reason == FinishReason::kStopSequence) {
    output_tokens_mean_ = outputs_measured_++ == 0 ? summary.completion_tokens : 0.9 * output_tokens_mean_ + 0.1 * summary.completion_tokens;
  }
  summary.queue_seconds = Seconds(s.admitted.value_or(now) - s.submitted);
  if (s.first_token) summary.ttft_seconds = Seconds(*s.first_token - s.submitted);
  summary.total_seconds = Seconds(now - s.submitted);
  if (metrics_) metrics_->RequestFinished(s.request.bits, s.request.tenant, s.request.api, reason, summary.total_seconds);
  s.sink->OnFinish(summary);
}

void Scheduler::Preempt(Sequence& s) {
  s.cache.reset();
  s.cached = 0;
  // The cycle starts again once the context is recomputed, drawing what it drew before.
  if (s.cycle_lookahead >= 0) s.decoder->RestoreRandomState(s.cycle_random);
  s.draft = {};
  s.cycle_lookahead = -1;
  s.preempted = true;
  ++s.preemptions;
  if (metrics_) metrics_->Preempted(s.request.bits, s.request.tenant, s.request.api);
}

void Scheduler::Admit(std::vector<std::unique_ptr<Sequence>>& running) {
  while (!queue_.empty() && static_cast<int>(running.size()) < options_.max_running) {
    // Preempted requests go first (they sit at the queue's front and have users mid-stream);
    // otherwise the oldest request of the least-served tenant that may run one more.
    auto next = queue_.end();
    if (queue_.front()->preemptions > 0) {
      next = queue_.begin();
    } else {
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        const TenantState& state = tenants_[(*it)->request.tenant];
        if (state.running >= (*it)->request.limits.max_running) continue;
        if (next == queue_.end() || state.served < tenants_[(*next)->request.tenant].served) next = it;
      }
    }
    if (next == queue_.end()) return;
    Sequence& s = **next;
    if (s.request.adaptive) s.bits = AdaptiveBits(s);
    // The cached prefix, leaving at least the last token to compute (its logits choose the
    // next), then blocks for the whole context and the next token, so that a fresh admission
    // is not preempted at once.
    const int context = static_cast<int>(s.decoder->context().size());
    auto cache = std::make_unique<KvCache>(pool_);
    const int hit = options_.prefix_cache ? ShareCachedPrefix(s, *cache) : 0;
    if (!cache->Reserve(std::min(context + 1, s.decoder->max_positions()))) return;
    if (options_.prefix_cache) CountPrefixHit(s, context, hit);
    s.cache = std::move(cache);
    s.cached = hit;
    s.one_width = true;
    if (!s.admitted) {
      s.admitted = Clock::now();
      if (metrics_) {
        metrics_->RequestAdmitted(s.request.bits, s.request.tenant, s.request.api, Seconds(*s.admitted - s.submitted), s.decoder->prompt_tokens());
      }
    }
    TenantState& state = tenants_[s.request.tenant];
    --state.queued;
    ++state.running;
    running.push_back(std::move(*next));
    queue_.erase(next);
  }
}

void Scheduler::Loop() {
  std::vector<std::unique_ptr<Sequence>> running;
  LoadSnapshot load;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running.empty(); });
      if (stopping_) {
        for (auto& s : queue_) Finish(*s, FinishReason::kCancelled);
        queue_.clear();
        break;
      }
      // Queued requests that were cancelled or ran out of time end without being admitted.
      const Clock::time_point now = Clock::now();
      std::erase_if(queue_, [&](const std::unique_ptr<Sequence>& s) {
        std::optional<FinishReason> reason = s->handle->cancelled();
        if (!reason && now >= s->request.deadline) reason = FinishReason::kTimeLimit;
        if (!reason) return false;
        Finish(*s, *reason);
        --tenants_[s->request.tenant].queued;
        return true;
      });
      Admit(running);
      waiting_count_ = static_cast<int>(queue_.size());
      running_count_ = static_cast<int>(running.size());
      load = SnapshotLoad();
    }
    Step(running, load);
    {
      std::lock_guard lock(mutex_);
      // Preempted requests return to the queue's front in their admission order.
      for (auto it = running.rbegin(); it != running.rend(); ++it) {
        Sequence& s = **it;
        if (!s.done && !s.preempted) continue;
        TenantState& state = tenants_[s.request.tenant];
        --state.running;
        if (s.preempted && !s.done) {
          s.preempted = false;
          ++state.queued;
          queue_.push_front(std::move(*it));
        }
      }
      std::erase_if(running, [](const std::unique_ptr<Sequence>& s) { return s == nullptr || s->done; });
      running_count_ = static_cast<int>(running.size());
      waiting_count_ = static_cast<int>(queue_.size());
      kv_blocks_used_ = pool_.used_blocks();
      if (running.empty() && queue_.empty()) idle_.notify_all();
    }
    if (metrics_) metrics_->Load(running_count_, waiting_count_, static_cast<double>(kv_blocks_used_) / kv_blocks(), pool_.cached_blocks());
  }
  for (auto& s : running) Finish(*s, FinishReason::kCancelled);
  running.clear();
  running_count_ = 0;
  kv_blocks_used_ = 0;
  if (metrics_) metrics_->Load(0, 0, 0, pool_.cached_blocks());
  idle_.notify_all();
}

absl::Status Scheduler::Forward(std::span<const SequenceStep> steps, std::span<float> logits) {
  if (!options_.group_by_bits) return transformer_.ForwardBatch(steps, logits);
  const size_t vocab = model_.config().vocab_size;
  const std::vector<size_t> rows = LogitsRowOffsets(steps);
  std::vector<bool> run(steps.size());
  for (size_t first = 0; first < steps.size(); ++first) {
    if (run[first]) continue;
    std::vector<size_t> group;
    std::vector<SequenceStep> group_steps;
    for (size_t i = first; i < steps.size(); ++i) {
      if (run[i] || steps[i].bits != steps[first].bits) continue;
      run[i] = true;
      group.push_back(i);
      group_steps.push_back(steps[i]);
    }
    const std::vector<size_t> group_rows = LogitsRowOffsets(group_steps);
    std::vector<float> group_logits(group_rows.back() * vocab);
    RETURN_IF_ERROR(transformer_.ForwardBatch(group_steps, group_logits));
    for (size_t g = 0; g < group.size(); ++g) {
      std::copy(group_logits.begin() + group_rows[g] * vocab, group_logits.begin() + group_rows[g + 1] * vocab,
                logits.begin() + rows[group[g]] * vocab);
    }
  }
  return absl::OkStatus();
}

Scheduler::PlannedStep Scheduler::Plan(std::vector<std::unique_ptr<Sequence>>& running) {
  const Clock::time_point now = Clock::now();
  PlannedStep plan;
  for (size_t i = 0; i < running.size(); ++i) {
    Sequence& s = *running[i];
    if (s.preempted) continue;
    if (auto reason = s.handle->cancelled()) {
      Finish(s, *reason);
      continue;
    }
    if (now >= s.request.deadline) {
      Finish(s, FinishReason::kTimeLimit);
      continue;
    }
    // One token left is a decode step; more is (a chunk of) a prompt, or the context of a
    // preempted request being recomputed.
    const std::vector<TokenId>& context = s.decoder->context();
    if (!Decoding(s)) SharePrefixSince(s);
    const int left = static_cast<int>(context.size()) - s.cached;
    const bool decode = Decoding(s);
    // A speculative request recomputing after preemption stops one token short, so that its
    // next token comes from a cycle (drawing what the cut-short cycle drew) rather than plainly.
    const bool speculating = Speculating(s.request, s.bits);
    const int recompute = speculating && s.decoder->generated() > 0 ? left - 1 : left;
    SequenceStep step{std::span<const TokenId>(context).subspan(s.cached, decode ? 1 : std::min(recompute, options_.step_tokens - plan.prompt_tokens)),
                      s.cache.get(), s.bits, LogitsFor::kLastToken};
    StepKind kind = StepKind::kPlain;
    if (decode && speculating) {
      // A speculative cycle: one draft token per step at the draft width, then the verify step.
      if (s.cycle_lookahead < 0) {
        s.cycle_lookahead = CycleLookahead(*s.decoder, *s.request.speculative);
        s.cycle_random = s.decoder->random_state();
      }
      const int drafted = static_cast<int>(s.draft.tokens.size());
      if (drafted < s.cycle_lookahead) {
        kind = StepKind::kDraft;
        s.speculative_input = {DraftInput(*s.decoder, s.draft)};
        step.tokens = s.speculative_input;
        step.bits = s.request.speculative->draft_bits;
      } else if (drafted > 0) {
        kind = StepKind::kVerify;
        s.cache->Truncate(s.cached);
        s.speculative_input = VerifyInput(*s.decoder, s.draft);
        step.tokens = s.speculative_input;
        step.which = LogitsFor::kAllTokens;
      }
    }
    if (step.tokens.empty()) continue;  // this step's prompt budget is spent; next step
    // Blocks for this step's tokens; when the pool is dry, the most recently admitted
    // request gives its blocks up, down to this one itself.
    while (!s.cache->Reserve(s.cache->length() + static_cast<int>(step.tokens.size()))) {
      auto victim = std::find_if(running.rbegin(), running.rend() - static_cast<long>(i) - 1,
                                 [](const std::unique_ptr<Sequence>& v) { return !v->done && !v->preempted; });
      Preempt(victim == running.rend() - static_cast<long>(i) - 1 ? s : **victim);
      if (s.preempted) break;
    }
    if (s.preempted) continue;
    if (!decode) plan.prompt_tokens += static_cast<int>(step.tokens.size());
    plan.steps.push_back(step);
    plan.sequences.push_back(&s);
    plan.kinds.push_back(kind);
  }
  return plan;
}

bool Scheduler::Decoding(const Sequence& s) {
  return s.decoder->generated() > 0 && static_cast<int>(s.decoder->context().size()) - s.cached == 1;
}

void Scheduler::ChargeTenants(const PlannedStep& plan) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    const Sequence& s = *plan.sequences[i];
    const bool one_token = plan.steps[i].tokens.size() == 1;  // a decode or draft step; a verify step takes k + 1
    tenants_[s.request.tenant].served +=
        (Decoding(s) && one_token ? kGeneratedTokenCost : kPromptTokenCost * plan.steps[i].tokens.size()) / s.request.limits.weight;
  }
}

void Scheduler::Emit(Sequence& s, std::span<const float> logits) { Deliver(s, s.decoder->Next(logits), logits); }

void Scheduler::Deliver(Sequence& s, DecodeStep decoded, std::span<const float> logits) {
  if (!decoded.token) {
    Finish(s, FinishReason::kEos);
    return;
  }
  const Clock::time_point now = Clock::now();
  const bool first = !s.first_token;
  if (first) s.first_token = now;
  if (metrics_) metrics_->TokenGenerated(s.bits, s.request.tenant, s.request.api, Seconds(now - (first ? s.submitted : s.last_token)), first);
  if (first && s.request.adaptive) first_tokens_[s.request.tenant].emplace_back(now, Seconds(now - s.submitted));
  s.last_token = now;
  ++s.tokens_by_width[s.bits];
  GeneratedToken token;
  token.id = *decoded.token;
  token.text = std::move(decoded.text);
  token.bits = s.bits;
  if (s.request.return_logprobs) {
    const double log_sum_exp = LogSumExp(logits);
    token.logprob = static_cast<float>(logits[*decoded.token] - log_sum_exp);
    for (const TokenLogprob& alternative : TopLogprobs(logits, s.request.top_logprobs, log_sum_exp)) {
      token.top_logprobs.push_back({alternative.id, std::string(tokenizer_.TokenBytes(alternative.id)), alternative.logprob});
    }
  }
  s.sink->OnToken(std::move(token));
  if (decoded.end) Finish(s, *decoded.end == DecodeEnd::kStopSequence ? FinishReason::kStopSequence : FinishReason::kLength);
}

void Scheduler::Step(std::vector<std::unique_ptr<Sequence>>& running, const LoadSnapshot& load) {
  UpdateWidths(running, load);
  const PlannedStep plan = Plan(running);
  if (plan.steps.empty()) return;
  const int vocab = model_.config().vocab_size;
  const std::vector<size_t> rows = LogitsRowOffsets(plan.steps);
  std::vector<float> logits(rows.back() * vocab);
  const Clock::time_point step_start = Clock::now();
  step_started_ = step_start.time_since_epoch().count();
  const absl::Status status = Forward(plan.steps, logits);
  step_started_ = 0;
  int step_tokens = 0;
  int widest_bits = 0;
  for (const SequenceStep& step : plan.steps) {
    step_tokens += static_cast<int>(step.tokens.size());
    widest_bits = std::max(widest_bits, step.bits);
  }
  const double step_seconds = Seconds(Clock::now() - step_start);
  if (metrics_) metrics_->Step(plan.prompt_tokens > 0 ? "prefill" : "decode", step_tokens, step_seconds);
  if (!status.ok()) {
    // Requests were validated on entry; an engine error ends them rather than the server.
    for (Sequence* s : plan.sequences) Finish(*s, FinishReason::kCancelled);
    return;
  }
  RecordStep(widest_bits, step_tokens, step_seconds);
  ChargeTenants(plan);
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    Sequence& s = *plan.sequences[i];
    const std::span<const float> step_logits = std::span<const float>(logits).subspan(rows[i] * vocab, (rows[i + 1] - rows[i]) * vocab);
    switch (plan.kinds[i]) {
      case StepKind::kPlain:
        s.cached += static_cast<int>(plan.steps[i].tokens.size());
        RegisterPrefix(s);
        if (s.cached < static_cast<int>(s.decoder->context().size())) continue;  // the prompt goes on next step
        Emit(s, step_logits);
        break;
      case StepKind::kDraft:
        DrawDraft(*s.decoder, step_logits, s.draft);
        break;
      case StepKind::kVerify: {
        const long accepted_before = s.speculative.accepted;
        int committed = 0;
        const bool ended = CommitVerdicts(
            *s.decoder, s.draft, step_logits, vocab,
            [&](const DecodeStep& decoded, std::span<const float> row) {
              committed += decoded.token.has_value();
              Deliver(s, decoded, row);
            },
            s.speculative);
        if (metrics_) {
          metrics_->Verified(s.request.speculative->draft_bits, s.bits, static_cast<int>(s.draft.tokens.size()),
                             static_cast<int>(s.speculative.accepted - accepted_before), committed);
        }
        s.draft = {};
        s.cycle_lookahead = -1;
        if (ended || s.done) break;
        // Only positions computed at the target width stay: the committed context but its last token.
        s.cached = static_cast<int>(s.decoder->context().size()) - 1;
        s.cache->Truncate(s.cached);
        RegisterPrefix(s);
        break;
      }
    }
  }
}

Scheduler::LoadSnapshot Scheduler::SnapshotLoad() {
  LoadSnapshot load;
  const Clock::time_point now = Clock::now();
  while (!arrivals_.empty() && now - arrivals_.front().first > kDemandWindow) arrivals_.pop_front();
  for (const auto& [tenant, policy] : adaptive_policies_) {
    AdaptiveTenant& t = load.tenants[tenant];
    t.policy = policy;
    const TenantState& state = tenants_[tenant];
    t.active = state.queued + state.running > 0;
  }
  for (const std::unique_ptr<Sequence>& s : queue_) {
    const auto it = load.tenants.find(s->request.tenant);
    if (it == load.tenants.end()) continue;
    std::optional<Clock::time_point>& oldest = it->second.oldest_waiting;
    oldest = std::min(oldest.value_or(s->submitted), s->submitted);
  }
  if (!arrivals_.empty()) {
    // Output tokens per request: as finished requests had them; before any, as asked for.
    double tokens = output_tokens_mean_;
    if (outputs_measured_ == 0) {
      tokens = 0;
      for (const auto& [when, asked] : arrivals_) tokens += asked;
      tokens /= static_cast<double>(arrivals_.size());
    }
    // Over the window, or the time since the first request when shorter (at least a second,
    // so that a first burst does not read as a rate without end).
    const double span = std::max(1.0, Seconds(std::min(kDemandWindow, now - *first_arrival_)));
    load.demand_tokens_per_second = static_cast<double>(arrivals_.size()) / span * tokens;
  }
  return load;
}

void Scheduler::UpdateWidths(std::vector<std::unique_ptr<Sequence>>& running, const LoadSnapshot& load) {
  const Clock::time_point now = Clock::now();
  bool moved = false;
  for (const auto& [tenant, info] : load.tenants) {
    auto [it, fresh] = controllers_.try_emplace(tenant, info.policy.tenant_widths, info.policy.slo);
    WidthController& controller = it->second;
    // The ceiling the gauge shows, set when the controller is made and whenever it moves.
    const int published = fresh ? -1 : controller.ceiling();
    if (!fresh) controller.SetPolicy(info.policy.tenant_widths, info.policy.slo);
    TenantLoad seen;
    seen.active = info.active;
    seen.steps_measured = window_.steps();
    seen.step_seconds = window_.mean_seconds();
    seen.rows = window_.mean_rows();
    std::deque<std::pair<Clock::time_point, double>>& first_tokens = first_tokens_[tenant];
    while (!first_tokens.empty() && now - first_tokens.front().first > kFirstTokenWindow) first_tokens.pop_front();
    for (const auto& [when, ttft] : first_tokens) seen.ttft_seconds += ttft / static_cast<double>(first_tokens.size());
    if (info.oldest_waiting) seen.ttft_seconds = std::max(seen.ttft_seconds, Seconds(now - *info.oldest_waiting));
    for (const std::unique_ptr<Sequence>& s : running) {
      if (s->done || (s->request.adaptive && s->request.tenant == tenant)) continue;
      seen.others_widest = std::max(seen.others_widest, s->bits);
    }
    seen.demand_tokens_per_second = load.demand_tokens_per_second;
    seen.slots = options_.max_running;
    const int before = controller.ceiling();
    moved |= controller.Update(seen, step_costs_, Seconds(now.time_since_epoch())) != before;
    if (metrics_ && controller.ceiling() != published) metrics_->WidthCeiling(tenant, controller.ceiling());
  }
  if (moved) window_.Clear();
  for (const std::unique_ptr<Sequence>& s : running) {
    // A speculative cycle keeps the width it began at.
    if (!s->request.adaptive || s->done || s->cycle_lookahead >= 0) continue;
    const int bits = AdaptiveBits(*s);
    if (bits == s->bits) continue;
    if (metrics_) metrics_->WidthChanged(s->request.tenant, bits > s->bits);
    if (s->cached > 0) s->one_width = false;
    s->bits = bits;
  }
}

int Scheduler::AdaptiveBits(const Sequence& s) const {
  const auto it = controllers_.find(s.request.tenant);
  const WidthRange& widths = s.request.adaptive->widths;
  return it == controllers_.end() ? widths.max : std::clamp(it->second.ceiling(), widths.min, widths.max);
}

int Scheduler::ShareCachedPrefix(const Sequence& s, KvCache& cache) {
  const std::vector<TokenId>& context = s.decoder->context();
  return cache.SharePrefix(s.bits, context, static_cast<int>(context.size()) - 1);
}

void Scheduler::CountPrefixHit(Sequence& s, int query_tokens, int hit_tokens) {
  if (s.preemptions == 0) s.prefix_hit_tokens += hit_tokens;
  if (metrics_) metrics_->PrefixLookup(s.bits, query_tokens, hit_tokens);
}

void Scheduler::SharePrefixSince(Sequence& s) {
  if (!options_.prefix_cache || !s.one_width || s.cached != s.cache->length()) return;
  const int before = s.cached;
  s.cached = ShareCachedPrefix(s, *s.cache);
  if (s.cached > before) CountPrefixHit(s, 0, s.cached - before);
}

void Scheduler::RegisterPrefix(Sequence& s) {
  if (options_.prefix_cache && s.one_width) s.cache->RegisterPrefix(s.bits, s.decoder->context(), s.cached);
}

void Scheduler::RecordStep(int widest_bits, int rows, double seconds) {
  step_costs_.Record(widest_bits, rows, seconds);
  window_.Record(seconds, rows);
}

}  // namespace anyprec::server
