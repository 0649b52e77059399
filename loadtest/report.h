// What anyprec-loadtest measured: one record per request, and their summary per bit-width and
// overall (latency percentiles, throughput, goodput against SLOs, every outcome counted).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "loadtest/workload.h"
#include "nlohmann/json.hpp"

namespace anyprec::loadtest {

struct RequestRecord {
  Width width;           // as asked
  int served_bits = 0;   // as the server reported it; 0 when no final message came
  std::map<int, int> tokens_by_width;  // output tokens by the width that produced them, as reported
  int tenant = 0;
  std::string status;    // the gRPC status code's name, e.g. "OK", "CANCELLED"
  std::string finish;    // the finish reason's name; empty when none came
  int output_tokens = 0;
  int prompt_tokens = 0;         // as reported, and those of them found in the prefix cache
  int cached_prompt_tokens = 0;
  int drafted = 0;       // a speculative request's drafted tokens, and the accepted ones, as reported
  int accepted = 0;
  double ttft = -1;      // seconds from sending to the first token; -1 when none came
  double e2e = 0;        // seconds from sending to the status
  std::vector<double> itl;  // seconds between tokens (a message's gap shared by its tokens)
};

struct Slo {
  double ttft = 0;  // seconds; 0: no bound
  double tpot = 0;  // seconds per output token after the first; 0: no bound
};

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;
  long count = 0;
};

struct Summary {
  long requests = 0;
  long completed = 0;  // status OK
  long output_tokens = 0;
  long good = 0;       // completed within the SLOs
  long drafted = 0;    // speculative requests' drafted and accepted tokens
  long accepted = 0;
  double mean_bits = 0;  // of the output tokens of completed requests, by the widths reported
  long prompt_tokens = 0;  // of the requests that reported usage, and those found in the prefix cache
  long cached_prompt_tokens = 0;
  Percentiles ttft, itl, tpot, e2e;
  std::map<std::string, long> outcomes;  // "OK/LENGTH", "CANCELLED", "RESOURCE_EXHAUSTED", ...
};

// Per width asked ("3", "4", "3-8" for an adaptive range, ...; "all" overall); `seconds` is the run's length.
struct Report {
  double seconds = 0;
  double offered_rate = 0;  // 0 for closed loop
  std::map<std::string, Summary> by_bits;

  const Summary& overall() const { return by_bits.at("all"); }
  std::string Table() const;
  nlohmann::json ToJson() const;
};

Report Summarize(const std::vector<RequestRecord>& records, double seconds, double offered_rate, const Slo& slo);

}  // namespace anyprec::loadtest
