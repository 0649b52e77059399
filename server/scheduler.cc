#include "server/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/runtime/perplexity.h"
#include "server/metrics.h"

namespace anyprec::server {

struct Scheduler::Sequence {
  GenerationRequest request;
  std::shared_ptr<GenerationSink> sink;
  std::shared_ptr<RequestHandle> handle;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<DecodeStream> text;
  long reserved = 0;
  int prefilled = 0;             // prompt tokens already in the cache
  std::vector<TokenId> output;   // generated tokens
  std::string generated_text;
  bool done = false;
  Clock::time_point submitted;
  Clock::time_point last_token;
};

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Scheduler::Scheduler(const Model& model, const Tokenizer& tokenizer, SchedulerOptions options, ServerMetrics* metrics)
    : model_(model), tokenizer_(tokenizer), options_(options), metrics_(metrics), transformer_(model) {
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<std::shared_ptr<RequestHandle>> Scheduler::Submit(GenerationRequest request,
                                                                  std::shared_ptr<GenerationSink> sink) {
  auto s = std::make_unique<Sequence>();
  s->handle = std::make_shared<RequestHandle>();
  const long positions = static_cast<long>(request.prompt.size()) + request.max_new_tokens;
  s->reserved = std::min<long>(positions, model_.config().max_position_embeddings);
  if (s->reserved > options_.kv_cache_tokens) {
    if (metrics_) metrics_->RequestRejected("kv_too_large");
    return absl::InvalidArgumentError(absl::StrCat("prompt and max_new_tokens need ", s->reserved,
                                                   " KV positions, more than the server's ", options_.kv_cache_tokens));
  }
  s->request = std::move(request);
  s->sink = std::move(sink);
  s->submitted = Clock::now();
  std::shared_ptr<RequestHandle> handle = s->handle;
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) {
      if (metrics_) metrics_->RequestRejected("shutting_down");
      return absl::UnavailableError("the server is shutting down");
    }
    if (static_cast<int>(queue_.size()) >= options_.max_queued) {
      if (metrics_) metrics_->RequestRejected("queue_full");
      return absl::ResourceExhaustedError(absl::StrCat("queue full (", options_.max_queued, " waiting requests)"));
    }
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
  if (metrics_) metrics_->RequestFinished(s.request.bits, reason, Seconds(Clock::now() - s.submitted));
  s.sink->OnFinish(reason, static_cast<int>(s.request.prompt.size()), static_cast<int>(s.output.size()));
}

void Scheduler::Loop() {
  std::vector<std::unique_ptr<Sequence>> running;
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
        const std::optional<FinishReason> reason =
            s->handle->cancelled() ? s->handle->cancelled() : now >= s->request.deadline ? std::optional(FinishReason::kTimeLimit) : std::nullopt;
        if (reason) Finish(*s, *reason);
        return reason.has_value();
      });
      // Admit in arrival order while a sequence slot and its KV positions are free.
      while (!queue_.empty() && static_cast<int>(running.size()) < options_.max_running &&
             kv_reserved_ + queue_.front()->reserved <= options_.kv_cache_tokens) {
        std::unique_ptr<Sequence> s = std::move(queue_.front());
        queue_.pop_front();
        kv_reserved_ += s->reserved;
        if (metrics_) {
          metrics_->RequestAdmitted(s->request.bits, Seconds(Clock::now() - s->submitted), static_cast<int>(s->request.prompt.size()));
        }
        running.push_back(std::move(s));
      }
      waiting_count_ = static_cast<int>(queue_.size());
      running_count_ = static_cast<int>(running.size());
    }
    Step(running);
    std::erase_if(running, [&](const std::unique_ptr<Sequence>& s) {
      if (s->done) kv_reserved_ -= s->reserved;
      return s->done;
    });
    {
      std::lock_guard lock(mutex_);
      running_count_ = static_cast<int>(running.size());
      if (running.empty() && queue_.empty()) idle_.notify_all();
    }
    if (metrics_) metrics_->Load(running_count_, waiting_count_, static_cast<double>(kv_reserved_) / options_.kv_cache_tokens);
  }
  for (auto& s : running) Finish(*s, FinishReason::kCancelled);
  running_count_ = 0;
  kv_reserved_ = 0;
  idle_.notify_all();
}

void Scheduler::Step(std::vector<std::unique_ptr<Sequence>>& running) {
  const ModelConfig& c = model_.config();
  const Clock::time_point now = Clock::now();
  std::vector<SequenceStep> steps;
  std::vector<Sequence*> stepped;
  std::vector<bool> samples;  // whether the step's last row ends the prompt or decodes
  int prompt_budget = options_.step_tokens;
  for (auto& owned : running) {
    Sequence& s = *owned;
    if (auto reason = s.handle->cancelled()) {
      Finish(s, *reason);
      continue;
    }
    if (now >= s.request.deadline) {
      Finish(s, FinishReason::kTimeLimit);
      continue;
    }
    if (!s.cache) {
      s.cache = std::make_unique<KvCache>(c, static_cast<int>(s.reserved));
      s.sampler = std::make_unique<Sampler>(s.request.sampling);
      s.text = std::make_unique<DecodeStream>(tokenizer_);
      for (TokenId id : s.request.prompt) s.text->Next(id);  // continuation text follows the prompt's
    }
    const int prompt_left = static_cast<int>(s.request.prompt.size()) - s.prefilled;
    if (prompt_left > 0) {
      const int chunk = std::min(prompt_left, prompt_budget);
      if (chunk == 0) continue;  // this step's prompt budget is spent; next step
      prompt_budget -= chunk;
      steps.push_back({std::span<const TokenId>(s.request.prompt).subspan(s.prefilled, chunk), s.cache.get(), s.request.bits,
                       LogitsFor::kLastToken});
      s.prefilled += chunk;
      samples.push_back(s.prefilled == static_cast<int>(s.request.prompt.size()));
    } else {
      steps.push_back({std::span<const TokenId>(&s.output.back(), 1), s.cache.get(), s.request.bits, LogitsFor::kLastToken});
      samples.push_back(true);
    }
    stepped.push_back(&s);
  }
  if (steps.empty()) return;

  const int vocab = c.vocab_size;
  std::vector<float> logits(steps.size() * vocab);
  ForwardOptions options;
  options.exact_kernels = options_.exact_kernels;
  const Clock::time_point step_start = Clock::now();
  const absl::Status status = transformer_.ForwardBatch(steps, logits, options);
  if (metrics_) {
    int tokens = 0;
    for (const SequenceStep& step : steps) tokens += static_cast<int>(step.tokens.size());
    metrics_->Step(options_.step_tokens > prompt_budget ? "prefill" : "decode", tokens, Seconds(Clock::now() - step_start));
  }
  if (!status.ok()) {
    // Requests were validated on entry; an engine error ends them rather than the server.
    for (Sequence* s : stepped) Finish(*s, FinishReason::kCancelled);
    return;
  }
  for (size_t i = 0; i < stepped.size(); ++i) {
    if (!samples[i]) continue;
    Sequence& s = *stepped[i];
    const std::span<const float> row = std::span<const float>(logits).subspan(i * vocab, vocab);
    const TokenId next = s.sampler->Sample(row);
    const bool eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
    if (eos && !s.request.ignore_eos) {
      Finish(s, FinishReason::kEos);
      continue;
    }
    s.output.push_back(next);
    const Clock::time_point now_token = Clock::now();
    if (metrics_) {
      const bool first = s.output.size() == 1;
      metrics_->TokenGenerated(s.request.bits, Seconds(now_token - (first ? s.submitted : s.last_token)), first);
    }
    s.last_token = now_token;
    GeneratedToken token{next, s.text->Next(next), std::nullopt};
    if (s.request.return_logprobs) token.logprob = static_cast<float>(-NegativeLogLikelihood(row, next));
    const size_t text_before = s.generated_text.size();
    s.generated_text += token.text;
    // A stop sequence ends the request; the token's text is cut where the stop begins.
    std::optional<size_t> stop_at;
    for (const std::string& stop : s.request.stop) {
      const size_t from = text_before >= stop.size() ? text_before - stop.size() + 1 : 0;
      if (const size_t hit = s.generated_text.find(stop, from); hit != std::string::npos) stop_at = std::min(stop_at.value_or(hit), hit);
    }
    if (stop_at) token.text.resize(*stop_at > text_before ? *stop_at - text_before : 0);
    s.sink->OnToken(std::move(token));
    if (stop_at) {
      Finish(s, FinishReason::kStopSequence);
    } else if (static_cast<int>(s.output.size()) >= s.request.max_new_tokens || s.cache->length() >= s.cache->capacity()) {
      Finish(s, FinishReason::kLength);
    }
  }
}

}  // namespace anyprec::server
