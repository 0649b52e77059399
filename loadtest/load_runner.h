// Sends a workload to anyprec-server over gRPC with the callback API: every request a
// streaming reactor that timestamps each message, cancels itself after its first token or
// carries a short deadline when its plan says so. Open loop (arrivals at planned times, as
// many in flight as that makes) or closed loop (a fixed number in flight).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "loadtest/report.h"
#include "loadtest/workload.h"

namespace anyprec::loadtest {

struct Progress {
  long sent = 0;
  long finished = 0;
  long failed = 0;  // finished with a status other than OK, CANCELLED or DEADLINE_EXCEEDED
  double elapsed = 0;
};

struct RunOptions {
  WorkloadOptions workload;
  int concurrency = 0;        // > 0: closed loop with this many in flight (workload.rate ignored)
  double duration = 0;        // seconds of sending; 0: no bound
  long requests = 0;          // requests to send; 0: no bound (one of the two bounds is needed)
  std::vector<std::string> api_keys;  // by tenant index; empty: no key
  double short_deadline = 0.05;       // seconds, for Fault::kShortDeadline
  std::function<void(const Progress&)> on_progress;  // about twice a second
};

// Runs until the bound is reached and every request sent has finished; the records are in
// sending order. The run's length (first send to last status) goes to *seconds.
std::vector<RequestRecord> RunLoad(const std::shared_ptr<grpc::Channel>& channel, const RunOptions& options, double* seconds);

}  // namespace anyprec::loadtest
