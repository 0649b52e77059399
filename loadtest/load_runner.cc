#include "loadtest/load_runner.h"

#include <chrono>

#include "absl/status/status.h"
#include "anyprec/v1/generation.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "loadtest/dispatch.h"

namespace anyprec::loadtest {
namespace {

namespace pb = anyprec::v1;
// One request: owns itself from Start until OnDone, the last callback gRPC makes.
class Stream : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  static void Start(pb::Generation::Stub& stub, const PlannedRequest& plan, const RunOptions& options, Ledger& ledger) {
    auto stream = std::make_shared<Stream>(Key{}, plan, ledger);
    Stream& s = *stream;
    s.self_ = std::move(stream);
    s.request_.set_text(plan.prompt);
    s.request_.set_bits(plan.width.bits);
    if (plan.width.adaptive()) {
      s.request_.set_min_bits(plan.width.min_bits);
      s.request_.set_max_bits(plan.width.max_bits);
    }
    s.request_.set_max_new_tokens(plan.max_new_tokens);
    s.request_.set_ignore_eos(true);
    if (plan.speculative) {
      s.request_.mutable_speculative()->set_draft_bits(options.workload.draft_bits);
      s.request_.mutable_speculative()->set_lookahead(options.workload.lookahead);
    }
    if (plan.tenant < static_cast<int>(options.api_keys.size())) {
      s.context_.AddMetadata("authorization", "Bearer " + options.api_keys[plan.tenant]);
    }
    if (plan.fault == Fault::kShortDeadline) {
      s.context_.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(options.short_deadline)));
    }
    ledger.Sent(plan.index, s.record_);
    s.start_ = s.last_ = Clock::now();
    stub.async()->Generate(&s.context_, &s.request_, &s);
    s.StartRead(&s.response_);
    s.StartCall();
  }

  // Called through make_shared by Start only (Key is private to this file).
  struct Key {};
  Stream(Key, const PlannedRequest& plan, Ledger& ledger) : plan_(plan), ledger_(ledger), record_(SentRecord(plan)) {}

  void OnReadDone(bool ok) override {
    if (!ok) return;
    const Clock::time_point now = Clock::now();
    const int tokens = response_.tokens_size();
    if (tokens > 0) {
      if (record_.ttft < 0) {
        record_.ttft = std::chrono::duration<double>(now - start_).count();
      } else {
        const double gap = std::chrono::duration<double>(now - last_).count() / tokens;
        record_.itl.insert(record_.itl.end(), tokens, gap);
      }
      last_ = now;
      record_.output_tokens += tokens;
    }
    if (response_.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
      record_.finish = pb::FinishReason_Name(response_.finish_reason());
      record_.served_bits = static_cast<int>(response_.bits());
      record_.drafted = static_cast<int>(response_.usage().drafted_tokens());
      record_.accepted = static_cast<int>(response_.usage().accepted_tokens());
      record_.prompt_tokens = static_cast<int>(response_.usage().prompt_tokens());
      record_.cached_prompt_tokens = static_cast<int>(response_.usage().cached_prompt_tokens());
      for (const pb::WidthTokens& width : response_.usage().tokens_by_width()) record_.tokens_by_width[width.bits()] = width.tokens();
    }
    if (plan_.fault == Fault::kCancelAfterFirstToken && record_.output_tokens > 0 && record_.finish.empty()) {
      context_.TryCancel();
      return;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    record_.status = absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
    record_.e2e = std::chrono::duration<double>(Clock::now() - start_).count();
    Ledger& ledger = ledger_;
    const long index = plan_.index;
    RequestRecord record = std::move(record_);
    // The ClientContext holds a channel reference. It must be gone before the ledger lets
    // RunLoad return: otherwise the caller may drop its channel first, and this callback thread
    // would then destroy the channel and with it the completion queue it is running on.
    self_.reset();
    ledger.Finished(index, std::move(record));
  }

 private:
  const PlannedRequest plan_;
  Ledger& ledger_;
  std::shared_ptr<Stream> self_;
  grpc::ClientContext context_;
  pb::GenerateRequest request_;
  pb::GenerateResponse response_;
  RequestRecord record_;
  Clock::time_point start_, last_;
};

}  // namespace

std::vector<RequestRecord> RunLoad(const std::shared_ptr<grpc::Channel>& channel, const RunOptions& options, double* seconds) {
  const auto stub = pb::Generation::NewStub(channel);
  return Dispatch(
      options, [&](const PlannedRequest& plan, Ledger& ledger) { Stream::Start(*stub, plan, options, ledger); }, seconds);
}

}  // namespace anyprec::loadtest
