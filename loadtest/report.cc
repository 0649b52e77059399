#include "loadtest/report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace anyprec::loadtest {
namespace {

// Nearest-rank percentiles.
Percentiles Of(std::vector<double> values) {
  Percentiles p;
  p.count = static_cast<long>(values.size());
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  const auto rank = [&](double q) { return values[std::min(values.size() - 1, static_cast<size_t>(q * values.size()))]; };
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  return p;
}

nlohmann::json ToJson(const Percentiles& p) { return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"count", p.count}}; }

std::string Ms(const Percentiles& p) {
  if (p.count == 0) return "-";
  return absl::StrFormat("%.1f / %.1f / %.1f", p.p50 * 1e3, p.p90 * 1e3, p.p99 * 1e3);
}

}  // namespace

Report Summarize(const std::vector<RequestRecord>& records, double seconds, double offered_rate, const Slo& slo) {
  std::map<std::string, std::vector<const RequestRecord*>> groups;
  for (const RequestRecord& r : records) {
    groups["all"].push_back(&r);
    groups[r.width.Name()].push_back(&r);
  }
  Report report;
  report.seconds = seconds;
  report.offered_rate = offered_rate;
  report.by_bits["all"];
  for (const auto& [key, members] : groups) {
    Summary& s = report.by_bits[key];
    std::vector<double> ttft, itl, tpot, e2e;
    double bit_tokens = 0, width_tokens = 0;
    for (const RequestRecord* r : members) {
      ++s.requests;
      ++s.outcomes[r->finish.empty() ? r->status : r->status + "/" + r->finish];
      s.drafted += r->drafted;
      s.accepted += r->accepted;
      s.prompt_tokens += r->prompt_tokens;
      s.cached_prompt_tokens += r->cached_prompt_tokens;
      if (r->status != "OK") continue;
      ++s.completed;
      s.output_tokens += r->output_tokens;
      for (const auto& [bits, tokens] : r->tokens_by_width) {
        bit_tokens += static_cast<double>(bits) * tokens;
        width_tokens += tokens;
      }
      ttft.push_back(r->ttft);
      e2e.push_back(r->e2e);
      itl.insert(itl.end(), r->itl.begin(), r->itl.end());
      const double per_token = r->output_tokens > 1 ? (r->e2e - r->ttft) / (r->output_tokens - 1) : 0;
      if (r->output_tokens > 1) tpot.push_back(per_token);
      if ((slo.ttft <= 0 || r->ttft <= slo.ttft) && (slo.tpot <= 0 || per_token <= slo.tpot)) ++s.good;
    }
    s.mean_bits = width_tokens > 0 ? bit_tokens / width_tokens : 0;
    s.ttft = Of(std::move(ttft));
    s.itl = Of(std::move(itl));
    s.tpot = Of(std::move(tpot));
    s.e2e = Of(std::move(e2e));
  }
  return report;
}

std::string Report::Table() const {
  std::string out = absl::StrFormat("%.1f s%s\n\n", seconds,
                                    offered_rate > 0 ? absl::StrFormat(", offered %.2f req/s", offered_rate) : ", closed loop");
  absl::StrAppend(&out,
                  "| bits | sent | ok | req/s | out tok/s | goodput req/s | mean bits served | TTFT ms p50/p90/p99 | ITL ms | TPOT ms | "
                  "E2E ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [key, s] : by_bits) {
    absl::StrAppend(&out, absl::StrFormat("| %s | %d | %d | %.2f | %.1f | %.2f | %.2f | %s | %s | %s | %s |\n", key, s.requests, s.completed,
                                          s.completed / seconds, s.output_tokens / seconds, s.good / seconds, s.mean_bits, Ms(s.ttft),
                                          Ms(s.itl), Ms(s.tpot), Ms(s.e2e)));
  }
  absl::StrAppend(&out, "\noutcomes (all widths):");
  for (const auto& [outcome, count] : overall().outcomes) absl::StrAppend(&out, " ", outcome, " ", count, ";");
  absl::StrAppend(&out, "\n");
  if (overall().drafted > 0) {
    absl::StrAppend(&out, absl::StrFormat("speculative: %d of %d drafted tokens accepted (%.2f)\n", overall().accepted, overall().drafted,
                                          static_cast<double>(overall().accepted) / overall().drafted));
  }
  if (overall().cached_prompt_tokens > 0) {
    absl::StrAppend(&out, absl::StrFormat("prefix cache: %d of %d prompt tokens cached (%.2f)\n", overall().cached_prompt_tokens,
                                          overall().prompt_tokens, static_cast<double>(overall().cached_prompt_tokens) / overall().prompt_tokens));
  }
  return out;
}

nlohmann::json Report::ToJson() const {
  nlohmann::json json = {{"seconds", seconds}, {"offered_rate", offered_rate}, {"by_bits", nlohmann::json::object()}};
  for (const auto& [key, s] : by_bits) {
    json["by_bits"][key] = {{"requests", s.requests},
                            {"completed", s.completed},
                            {"good", s.good},
                            {"output_tokens", s.output_tokens},
                            {"drafted_tokens", s.drafted},
                            {"accepted_tokens", s.accepted},
                            {"prompt_tokens", s.prompt_tokens},
                            {"cached_prompt_tokens", s.cached_prompt_tokens},
                            {"requests_per_second", s.completed / seconds},
                            {"output_tokens_per_second", s.output_tokens / seconds},
                            {"goodput", s.good / seconds},
                            {"mean_bits", s.mean_bits},
                            {"ttft", loadtest::ToJson(s.ttft)},
                            {"itl", loadtest::ToJson(s.itl)},
                            {"tpot", loadtest::ToJson(s.tpot)},
                            {"e2e", loadtest::ToJson(s.e2e)},
                            {"outcomes", s.outcomes}};
  }
  return json;
}

}  // namespace anyprec::loadtest
