// What anyprec-loadtest sends: a deterministic stream of planned requests (when to send,
// which prompt, how many tokens, which width and tenant, which client-side fault), drawn from
// a seeded generator so that two runs with the same options send the same traffic.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace anyprec::loadtest {

// One entry of a weighted mix, e.g. bits 4 with weight 0.3.
template <typename T>
struct Weighted {
  T value;
  double weight;
};

// A width to ask for: a fixed one (bits; 0 is the tenant's default), or an adaptive range
// min_bits..max_bits within which the server chooses (bits 0).
struct Width {
  int bits = 0;
  int min_bits = 0;
  int max_bits = 0;

  static Width Fixed(int bits) {
    Width w;
    w.bits = bits;
    return w;
  }
  static Width Adaptive(int min_bits, int max_bits) {
    Width w;
    w.min_bits = min_bits;
    w.max_bits = max_bits;
    return w;
  }
  bool adaptive() const { return max_bits > 0; }
  int highest() const { return adaptive() ? max_bits : bits; }
  // "8", or "3-8" for an adaptive range: how reports name it.
  std::string Name() const;
};

// Parses "3:0.5,4:0.3,3-8:0.2": widths or adaptive ranges with weights (which need not sum
// to 1; a missing weight counts 1).
absl::StatusOr<std::vector<Weighted<Width>>> ParseWidthMix(const std::string& text);

// Paragraphs (blocks separated by blank lines) or lines of a text file, without empty ones.
enum class PromptSplit { kParagraphs, kLines };
absl::StatusOr<std::vector<std::string>> ReadPrompts(const std::string& path, PromptSplit split);

// An inclusive range to sample uniformly from; min == max for a set value.
struct Range {
  int min = 0;
  int max = 0;
};
absl::StatusOr<Range> ParseRange(const std::string& text);  // "64" or "32-128"

enum class Fault { kNone, kCancelAfterFirstToken, kShortDeadline };

struct WorkloadOptions {
  double rate = 0;          // requests per second, open loop; 0 for closed loop
  double burstiness = 1.0;  // shape of the Gamma inter-arrival times; 1 is Poisson, < 1 burstier
  std::vector<std::string> prompts;
  Range prompt_words{0, 0};  // 0..0: whole prompts; else cut to this many words
  // Texts that requests start with (a system prompt, few-shot examples), one drawn per
  // request and put before its prompt with a blank line; none when empty.
  std::vector<std::string> prefixes;
  Range output_tokens{64, 64};
  std::vector<Weighted<Width>> width_mix = {{Width{}, 1.0}};  // the tenant's default width
  std::vector<Weighted<int>> tenant_mix = {{0, 1.0}};  // index into the API keys
  double cancel_fraction = 0;
  double deadline_fraction = 0;
  // This fraction of the requests with a width above draft_bits decode self-speculatively.
  double speculative_fraction = 0;
  int draft_bits = 3;
  int lookahead = 4;
  uint64_t seed = 0;
};

struct PlannedRequest {
  long index = 0;
  double send_at = 0;  // seconds after the start (open loop)
  std::string prompt;
  int max_new_tokens = 0;
  Width width;
  int tenant = 0;
  Fault fault = Fault::kNone;
  bool speculative = false;  // with WorkloadOptions' draft_bits and lookahead
};

class Workload {
 public:
  explicit Workload(WorkloadOptions options);
  // The next request; open-loop arrival times accumulate from 0.
  PlannedRequest Next();

 private:
  template <typename T>
  T Pick(const std::vector<Weighted<T>>& mix);

  WorkloadOptions options_;
  std::mt19937_64 rng_;
  long next_index_ = 0;
  double clock_ = 0;
};

}  // namespace anyprec::loadtest
