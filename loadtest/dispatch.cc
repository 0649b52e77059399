#include "loadtest/dispatch.h"

namespace anyprec::loadtest {

std::vector<RequestRecord> Dispatch(const RunOptions& options, const StartRequest& start_request, double* seconds) {
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
    start_request(plan, ledger);
  }
  ledger.WaitBelow(1, Clock::time_point::max(), start, options);
  *seconds = Since(start);
  return ledger.Take();
}

}  // namespace anyprec::loadtest
