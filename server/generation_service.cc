#include "server/generation_service.h"

#include <cmath>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/model/width.h"
#include "engine/runtime/logprobs.h"
#include "engine/runtime/prompt.h"
#include "engine/tokenizer/utf8.h"
#include "server/grpc_status.h"
#include "server/logging.h"
#include "server/metrics.h"

namespace anyprec::server {
namespace {

namespace pb = anyprec::v1;

pb::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return pb::LENGTH;
    case FinishReason::kEos: return pb::EOS;
    case FinishReason::kStopSequence: return pb::STOP_SEQUENCE;
    case FinishReason::kCancelled: return pb::CANCELLED;
    case FinishReason::kTimeLimit: return pb::TIME_LIMIT;
  }
  return pb::FINISH_REASON_UNSPECIFIED;
}

// One Generate call. The engine loop pushes messages into the outbox; gRPC drains it one
// write at a time. Tokens that arrive while a write is in flight are merged into the next
// message, so a slow reader costs one growing message, never a blocked engine loop.
class GenerateReactor final : public grpc::ServerWriteReactor<pb::GenerateResponse>,
                              public GenerationSink,
                              public std::enable_shared_from_this<GenerateReactor> {
 public:
  GenerateReactor(grpc::CallbackServerContext* context, const GenerationRequest& request, std::string model)
      : context_(context),
        bits_(request.bits),
        model_(std::move(model)),
        id_(request.id),
        tenant_(request.tenant),
        peer_(context->peer()) {}

  void Begin(std::shared_ptr<RequestHandle> handle) {
    std::lock_guard lock(mutex_);
    handle_ = std::move(handle);
  }

  void OnToken(GeneratedToken token) override {
    std::unique_lock lock(mutex_);
    if (pending_.empty() || pending_.back().finish_reason() != pb::FINISH_REASON_UNSPECIFIED) pending_.emplace_back();
    pb::Token* t = pending_.back().add_tokens();
    t->set_id(token.id);
    t->set_text(std::move(token.text));
    if (token.logprob) t->set_logprob(*token.logprob);
    t->set_bits(token.bits);
    for (TokenAlternative& alternative : token.top_logprobs) {
      pb::TokenAlternative* a = t->add_top_logprobs();
      a->set_id(alternative.id);
      a->set_text(std::move(alternative.bytes));
      a->set_logprob(alternative.logprob);
    }
    MaybeWrite(lock);
  }

  void OnFinish(const RequestSummary& summary) override {
    const FinishReason reason = summary.reason;
    LogFinishedRequest(id_, tenant_, bits_, summary, "grpc", peer_);
    std::unique_lock lock(mutex_);
    pb::GenerateResponse& last = pending_.emplace_back();
    last.set_finish_reason(ToProto(reason));
    last.mutable_usage()->set_prompt_tokens(summary.prompt_tokens);
    last.mutable_usage()->set_completion_tokens(summary.completion_tokens);
    last.mutable_usage()->set_cached_prompt_tokens(summary.cached_prompt_tokens);
    last.mutable_usage()->set_drafted_tokens(static_cast<uint32_t>(summary.speculative.drafted));
    last.mutable_usage()->set_accepted_tokens(static_cast<uint32_t>(summary.speculative.accepted));
    for (const auto& [bits, tokens] : summary.tokens_by_width) {
      pb::WidthTokens* width = last.mutable_usage()->add_tokens_by_width();
      width->set_bits(bits);
      width->set_tokens(tokens);
    }
    last.set_bits(bits_);
    last.set_model(model_);
    last.set_text(summary.text);
    finished_ = true;
    if (reason == FinishReason::kTimeLimit) final_status_ = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
    if (reason == FinishReason::kCancelled) final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
    MaybeWrite(lock);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mutex_);
    writing_ = false;
    if (!ok) {  // the client is gone: stop generating, and end once the engine has let go
      broken_ = true;
      if (handle_) handle_->Cancel(CancelReason());
    }
    MaybeWrite(lock);
  }

  void OnCancel() override {
    std::lock_guard lock(mutex_);
    if (handle_) handle_->Cancel(CancelReason());
  }

  void OnDone() override {
    // The engine may still hold a reference; if not, this reactor dies as `self` does, so
    // the lock must be released first.
    std::shared_ptr<GenerateReactor> self;
    {
      std::lock_guard lock(mutex_);
      self = std::move(self_);
    }
  }

  void KeepAliveUntilDone(std::shared_ptr<GenerateReactor> self) { self_ = std::move(self); }

 private:
  // Why a call that went away did: a client's deadline fires on the client, whose
  // cancellation reaches us before our own copy of the deadline (its arrival time plus the
  // timeout it carried) runs out, by the request's transit time; so a call that ends that
  // close to its deadline ended because of it.
  FinishReason CancelReason() const {
    constexpr auto kTransitSlack = std::chrono::milliseconds(10);
    return Clock::now() + kTransitSlack >= deadline() ? FinishReason::kTimeLimit : FinishReason::kCancelled;
  }

  Clock::time_point deadline() const {
    const auto remaining = context_->deadline() - std::chrono::system_clock::now();
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(remaining);
  }

  // Starts the next write, or finishes the call once everything is written. Called with
  // the lock held; releases it before calling into gRPC.
  void MaybeWrite(std::unique_lock<std::mutex>& lock) {
    if (writing_ || done_) return;
    if (broken_) pending_.clear();  // nobody is reading any more
    if (!pending_.empty()) {
      current_ = std::move(pending_.front());
      pending_.pop_front();
      writing_ = true;
      const bool last = current_.finish_reason() != pb::FINISH_REASON_UNSPECIFIED && pending_.empty() && final_status_.ok();
      lock.unlock();
      if (last) {
        StartWriteLast(&current_, grpc::WriteOptions());
      } else {
        StartWrite(&current_);
      }
      return;
    }
    if (finished_) {
      done_ = true;
      const grpc::Status status = broken_ ? grpc::Status(grpc::StatusCode::CANCELLED, "client went away") : final_status_;
      lock.unlock();
      Finish(status);
    }
  }

  grpc::CallbackServerContext* context_;
  const int bits_;
  const std::string model_;
  const std::string id_;
  const std::string tenant_;
  const std::string peer_;
  std::mutex mutex_;
  std::shared_ptr<RequestHandle> handle_;
  std::deque<pb::GenerateResponse> pending_;
  pb::GenerateResponse current_;
  bool writing_ = false;
  bool finished_ = false;
  bool broken_ = false;
  bool done_ = false;
  grpc::Status final_status_ = grpc::Status::OK;
  std::shared_ptr<GenerateReactor> self_;
};

// A reactor that only reports an error.
class RejectedReactor final : public grpc::ServerWriteReactor<pb::GenerateResponse> {
 public:
  explicit RejectedReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

void LogFinishedRequest(const std::string& id, const std::string& tenant, int bits, const RequestSummary& summary, std::string_view api,
                        const std::string& peer) {
  nlohmann::json fields = {{"id", id},
                           {"api", api},
                           {"tenant", tenant},
                           {"bits", bits},
                           {"prompt_tokens", summary.prompt_tokens},
                           {"cached_prompt_tokens", summary.cached_prompt_tokens},
                           {"completion_tokens", summary.completion_tokens},
                           {"finish", pb::FinishReason_Name(ToProto(summary.reason))},
                           {"queue_ms", summary.queue_seconds * 1e3},
                           {"total_ms", summary.total_seconds * 1e3},
                           {"preemptions", summary.preemptions},
                           {"peer", peer}};
  if (summary.speculative.cycles > 0) {
    fields["drafted_tokens"] = summary.speculative.drafted;
    fields["accepted_tokens"] = summary.speculative.accepted;
  }
  if (summary.ttft_seconds) fields["ttft_ms"] = *summary.ttft_seconds * 1e3;
  // The widths the output came from, as "bits": tokens; one unless the request was adaptive.
  nlohmann::json widths = nlohmann::json::object();
  for (const auto& [b, tokens] : summary.tokens_by_width) widths[std::to_string(b)] = tokens;
  fields["tokens_by_width"] = std::move(widths);
  Log(spdlog::level::info, "request", fields);
}

GenerationService::GenerationService(const Model& model, const Tokenizer& tokenizer, Scheduler& scheduler,
                                     const TenantRegistry& tenants, ServiceConfig config, ServerMetrics* metrics)
    : model_(model), tokenizer_(tokenizer), scheduler_(scheduler), tenants_(tenants), config_(config), metrics_(metrics) {}

std::optional<std::string_view> Authorization(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  return std::string_view(it->second.data(), it->second.size());
}

absl::StatusOr<GenerationRequest> GenerationService::Validate(const pb::GenerateRequest& r, const Tenant& tenant) const {
  const ModelConfig& c = model_.config();
  GenerationRequest out;
  out.tenant = tenant.name;
  out.limits = tenant.limits;
  // Past any width, so that a huge value reads as itself in the error rather than wrapped.
  const auto width = [](uint32_t bits) { return static_cast<int>(std::min<uint32_t>(bits, 1000)); };
  const bool asks_range = r.has_min_bits() || r.has_max_bits();
  if (asks_range && r.bits() != 0) {
    return absl::InvalidArgumentError("bits fixes the width, min_bits and max_bits ask for an adaptive one: set one or the other");
  }
  if (r.bits() == 0 && (asks_range || tenant.adaptive)) {
    const WidthRange bound = tenant.adaptive.value_or(tenant.widths());
    const WidthRange range{r.has_min_bits() ? width(r.min_bits()) : bound.min, r.has_max_bits() ? width(r.max_bits()) : bound.max};
    RETURN_IF_ERROR(ModelWidths(c).Check(range.min, "min_bits", "the served"));
    RETURN_IF_ERROR(ModelWidths(c).Check(range.max, "max_bits", "the served"));
    if (range.min > range.max) return absl::InvalidArgumentError(absl::StrCat("min_bits ", range.min, " exceeds max_bits ", range.max));
    if (!bound.Contains(range.min) || !bound.Contains(range.max)) {
      return absl::PermissionDeniedError(
          absl::StrCat("tenant ", tenant.name, " may adapt within widths ", bound.ToString(), ", not ", range.ToString()));
    }
    out.bits = range.max;
    out.adaptive = AdaptiveWidth{range, bound, tenant.slo.value_or(config_.slo)};
  } else {
    out.bits = r.bits() == 0 ? tenant.default_bits : width(r.bits());
    RETURN_IF_ERROR(ModelWidths(c).Check(out.bits, "bits", "the served"));
    if (!tenant.widths().Contains(out.bits)) {
      return absl::PermissionDeniedError(
          absl::StrCat("tenant ", tenant.name, " may use widths ", tenant.widths().ToString(), ", not ", out.bits));
    }
  }
  if (r.has_token_ids()) {
    if (r.token_ids().ids().empty()) return absl::InvalidArgumentError("prompt token_ids is empty");
    for (const int id : r.token_ids().ids()) {
      if (id < 0 || id >= c.vocab_size) return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " is outside the vocabulary"));
      out.prompt.push_back(id);
    }
  } else {
    if (r.text().empty()) return absl::InvalidArgumentError("prompt is empty");
    if (!utf8::IsValid(r.text())) return absl::InvalidArgumentError("prompt text is not valid UTF-8");
    out.prompt = EncodePrompt(c, tokenizer_, r.text());
  }
  if (static_cast<int>(out.prompt.size()) >= c.context_length()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", out.prompt.size(), " tokens leaves no room in the model's ",
                                                   c.context_length(), "-token context"));
  }
  if (r.max_new_tokens() == 0 || r.max_new_tokens() > static_cast<uint32_t>(config_.max_new_tokens_limit)) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be in 1..", config_.max_new_tokens_limit, ", got ",
                                                   r.max_new_tokens()));
  }
  out.decoding.max_new_tokens = static_cast<int>(r.max_new_tokens());
  DecodingOptions& decoding = out.decoding;
  const pb::Sampling& s = r.sampling();
  decoding.sampling.temperature = s.temperature();
  decoding.sampling.top_p = s.top_p() == 0 ? 1.0f : s.top_p();
  decoding.sampling.top_k = s.top_k();
  decoding.sampling.seed = s.seed();
  if (absl::Status status = decoding.sampling.Validate(); !status.ok()) return status;
  decoding.repetition_penalty = s.repetition_penalty() == 0 ? 1.0f : s.repetition_penalty();
  if (!(decoding.repetition_penalty > 0 && decoding.repetition_penalty <= 10)) {
    return absl::InvalidArgumentError(absl::StrCat("repetition_penalty must be in (0, 10], got ", s.repetition_penalty()));
  }
  for (const std::string& stop : r.stop()) {
    if (stop.empty()) return absl::InvalidArgumentError("stop sequences must not be empty");
    if (!utf8::IsValid(stop)) return absl::InvalidArgumentError("a stop sequence is not valid UTF-8");
    decoding.stop.push_back(stop);
  }
  decoding.ignore_eos = r.ignore_eos();
  out.return_logprobs = r.return_logprobs();
  if (r.top_logprobs() > static_cast<uint32_t>(kMaxTopLogprobs)) {
    return absl::InvalidArgumentError(absl::StrCat("top_logprobs must be in 0..", kMaxTopLogprobs, ", got ", r.top_logprobs()));
  }
  if (r.top_logprobs() > 0 && !r.return_logprobs()) return absl::InvalidArgumentError("top_logprobs needs return_logprobs");
  out.top_logprobs = static_cast<int>(r.top_logprobs());
  if (r.has_speculative()) {
    // Asked for: checked, and refused with the reason. A draft width of 0 asks for plain decoding.
    if (r.speculative().draft_bits() != 0) {
      const SpeculativeOptions speculative{static_cast<int>(r.speculative().draft_bits()),
                                           r.speculative().lookahead() == 0 ? kDefaultLookahead : static_cast<int>(r.speculative().lookahead())};
      RETURN_IF_ERROR(ValidateSpeculation(c, out.bits, speculative));
      out.speculative = speculative;
    }
  } else if (const std::optional<SpeculativeOptions>& fallback = tenant.speculative ? tenant.speculative : config_.speculative;
             fallback && fallback->draft_bits < out.bits) {
    // The tenant's default, else the server's: for the widths it can draft for, never a refusal.
    out.speculative = fallback;
  }
  return out;
}

grpc::ServerWriteReactor<pb::GenerateResponse>* GenerationService::Generate(grpc::CallbackServerContext* context,
                                                                           const pb::GenerateRequest* request) {
  const absl::StatusOr<Tenant> tenant = tenants_.Authenticate(Authorization(*context));
  if (!tenant.ok()) {
    if (metrics_) metrics_->RequestRejected("unauthenticated", "", "grpc");
    return new RejectedReactor(ToGrpc(tenant.status()));
  }
  absl::StatusOr<GenerationRequest> validated = Validate(*request, *tenant);
  if (!validated.ok()) {
    if (metrics_) {
      const bool denied = validated.status().code() == absl::StatusCode::kPermissionDenied;
      metrics_->RequestRejected(denied ? "permission_denied" : "invalid_argument", tenant->name, "grpc");
    }
    return new RejectedReactor(ToGrpc(validated.status()));
  }
  validated->id = absl::StrCat("req-", next_request_id_++);
  const auto remaining = context->deadline() - std::chrono::system_clock::now();
  if (remaining < std::chrono::hours(24 * 365)) {
    validated->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(remaining);
  }
  auto reactor = std::make_shared<GenerateReactor>(context, *validated, model_.LogicalName(validated->bits));
  reactor->KeepAliveUntilDone(reactor);
  absl::StatusOr<std::shared_ptr<RequestHandle>> handle = scheduler_.Submit(*std::move(validated), reactor);
  if (!handle.ok()) {
    reactor->KeepAliveUntilDone(nullptr);
    return new RejectedReactor(ToGrpc(handle.status()));
  }
  reactor->Begin(*handle);
  return reactor.get();
}

grpc::ServerUnaryReactor* GenerationService::ListModels(grpc::CallbackServerContext* context, const pb::ListModelsRequest*,
                                                        pb::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::StatusOr<Tenant> tenant = tenants_.Authenticate(Authorization(*context));
  if (!tenant.ok()) {
    reactor->Finish(ToGrpc(tenant.status()));
    return reactor;
  }
  const ModelConfig& c = model_.config();
  if (c.quantization) {
    for (int b = c.quantization->seed_bits; b <= c.quantization->max_bits; ++b) {
      pb::LogicalModel* m = response->add_models();
      m->set_name(model_.LogicalName(b));
      m->set_bits(b);
      m->set_bytes_per_token(model_.BytesReadPerToken(b));
    }
  }
  response->set_default_bits(tenant->default_bits);
  response->set_min_bits(tenant->min_bits);
  response->set_max_bits(tenant->max_bits);
  response->set_tenant(tenant->name);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace anyprec::server
