// Sends a workload to anyprec-server, over gRPC or through its OpenAI HTTP front. Over gRPC
// every request is a streaming reactor of the callback API; over HTTP a streamed
// /v1/completions on a thread of its own. Either timestamps each token, cancels itself after
// its first token or gives up after a short deadline when its plan says so. Open loop
// (arrivals at planned times, as many in flight as that makes) or closed loop (a fixed number
// in flight).
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

// The OpenAI HTTP front to load: requests name `model` (the plain name from /v1/models) or
// `model@B` for a width, ask for greedy decoding as gRPC's default does, and ignore EOS. A
// short deadline is the client's own there (HTTP carries none): it leaves when the deadline
// passes, and the server counts the request cancelled. Statuses read as gRPC's (429: RESOURCE_EXHAUSTED, ...).
struct HttpTarget {
  std::string address;  // host:port of --http-listen
  std::string model;
};
std::vector<RequestRecord> RunHttpLoad(const HttpTarget& target, const RunOptions& options, double* seconds);

}  // namespace anyprec::loadtest
