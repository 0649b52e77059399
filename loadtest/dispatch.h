// What every transport of anyprec-loadtest shares: the ledger of records that requests report
// to from any thread, and the loop that sends the planned requests at their times (open loop)
// or as others finish (closed loop). A transport only starts one request. Internal to
// loadtest/: callers use load_runner.h.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "loadtest/load_runner.h"

namespace anyprec::loadtest {

using Clock = std::chrono::steady_clock;

inline double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// What the dispatcher and the requests share.
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

// A planned request's record as it is sent: its width and tenant, not yet finished.
inline RequestRecord SentRecord(const PlannedRequest& plan) {
  RequestRecord record;
  record.width = plan.width;
  record.tenant = plan.tenant;
  record.status = "UNFINISHED";
  return record;
}

// Starts one planned request, which reports itself to the ledger: Sent at once, Finished when
// it ends (on any thread).
using StartRequest = std::function<void(const PlannedRequest& plan, Ledger& ledger)>;

// Sends the workload through `start` until the bound and waits for every request to finish;
// the records are in sending order, the run's length goes to *seconds.
std::vector<RequestRecord> Dispatch(const RunOptions& options, const StartRequest& start, double* seconds);

}  // namespace anyprec::loadtest
