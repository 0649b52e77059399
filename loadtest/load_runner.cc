#include "loadtest/load_runner.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "anyprec/v1/generation.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace anyprec::loadtest {
namespace {

namespace pb = anyprec::v1;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// What the dispatcher and the reactors share.
class Ledger {
 public:
  explicit Ledger(size_t expected) { records_.reserve(expected); }

  void Sent(long index, RequestRecord record) {
    std::lock_guard lock(mutex_);
    if (records_.size() <= static_cast<size_t>(index)) records_.resize(index + 1);
    records_[index] = std::move(record);
    ++progress_.sent;
  }
  void Finished(long index, RequestRecord record) {
    std::lock_guard lock(mutex_);
    const std::string& status = record.status;
    if (status != "OK" && status != "CANCELLED" && status != "DEADLINE_EXCEEDED") ++progress_.failed;
    records_[index] = std::move(record);
    ++progress_.finished;
    changed_.notify_all();
  }
  long InFlight() {
    std::lock_guard lock(mutex_);
    return progress_.sent - progress_.finished;
  }
  // Sleeps until `until`, reporting progress meanwhile.
  void SleepUntil(Clock::time_point until, Clock::time_point start, const RunOptions& options) {
    std::unique_lock lock(mutex_);
    while (Clock::now() < until) {
      changed_.wait_until(lock, std::min(until, Clock::now() + std::chrono::milliseconds(500)));
      Report(lock, start, options);
    }
  }
  // Waits until fewer than `limit` are in flight, or `until`; reports progress meanwhile.
  void WaitBelow(long limit, Clock::time_point until, Clock::time_point start, const RunOptions& options) {
    std::unique_lock lock(mutex_);
    while (progress_.sent - progress_.finished >= limit && Clock::now() < until) {
      changed_.wait_until(lock, std::min(until, Clock::now() + std::chrono::milliseconds(500)));
      Report(lock, start, options);
    }
    Report(lock, start, options);
  }
  std::vector<RequestRecord> Take() {
    std::lock_guard lock(mutex_);
    return std::move(records_);
  }

 private:
  void Report(std::unique_lock<std::mutex>&, Clock::time_point start, const RunOptions& options) {
    if (!options.on_progress || Clock::now() < next_report_) return;
    next_report_ = Clock::now() + std::chrono::milliseconds(500);
    progress_.elapsed = Since(start);
    options.on_progress(progress_);
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<RequestRecord> records_;
  Progress progress_;
  Clock::time_point next_report_;
};

// One request: owns itself from Start until OnDone, the last callback gRPC makes.
class Stream : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  static void Start(pb::Generation::Stub& stub, const PlannedRequest& plan, const RunOptions& options, Ledger& ledger) {
    auto stream = std::make_shared<Stream>(Key{}, plan, ledger);
    Stream& s = *stream;
    s.self_ = std::move(stream);
    s.request_.set_text(plan.prompt);
    s.request_.set_bits(plan.bits);
    s.request_.set_max_new_tokens(plan.max_new_tokens);
    s.request_.set_ignore_eos(true);
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
  Stream(Key, const PlannedRequest& plan, Ledger& ledger) : plan_(plan), ledger_(ledger) {
    record_.bits = plan.bits;
    record_.tenant = plan.tenant;
    record_.status = "UNFINISHED";
  }

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
  Workload workload(options.workload);
  Ledger ledger(options.requests > 0 ? options.requests : 1024);
  const Clock::time_point start = Clock::now();
  const Clock::time_point end_of_sending =
      options.duration > 0 ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.duration))
                           : Clock::time_point::max();
  const bool closed_loop = options.concurrency > 0;
  for (;;) {
    PlannedRequest plan = workload.Next();
    if (options.requests > 0 && plan.index >= options.requests) break;
    if (closed_loop) {
      ledger.WaitBelow(options.concurrency, end_of_sending, start, options);
    } else {
      const Clock::time_point at = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(plan.send_at));
      if (at >= end_of_sending) break;
      ledger.SleepUntil(at, start, options);
    }
    if (Clock::now() >= end_of_sending) break;
    Stream::Start(*stub, plan, options, ledger);
  }
  ledger.WaitBelow(1, Clock::time_point::max(), start, options);
  *seconds = Since(start);
  return ledger.Take();
}

}  // namespace anyprec::loadtest
