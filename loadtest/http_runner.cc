#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "loadtest/dispatch.h"
#include "loadtest/load_runner.h"
#include "proto/openai_client.h"

namespace anyprec::loadtest {
namespace {

using nlohmann::json;

// One streamed completion, start to end, on the calling thread; the ledger has it as sent.
void RunHttpRequest(const HttpTarget& target, const PlannedRequest& plan, const RunOptions& options, RequestRecord record, Ledger& ledger) {
  OpenAIServer server;
  server.address = target.address;
  if (plan.tenant < static_cast<int>(options.api_keys.size())) server.api_key = options.api_keys[plan.tenant];
  // HTTP carries no deadline: the client keeps its own, reading no longer than it allows.
  const bool has_deadline = plan.fault == Fault::kShortDeadline;
  const auto deadline = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.short_deadline));
  if (has_deadline) server.read_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(deadline);
  bool past_deadline = false;
  json body = {{"model", plan.width.bits > 0 ? absl::StrCat(target.model, "@", plan.width.bits) : target.model},
               {"prompt", plan.prompt},
               {"max_tokens", plan.max_new_tokens},
               {"temperature", 0},
               {"ignore_eos", true},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (plan.width.adaptive()) {
    body["min_bits"] = plan.width.min_bits;
    body["max_bits"] = plan.width.max_bits;
  }
  if (plan.speculative) body["speculative"] = {{"draft_bits", options.workload.draft_bits}, {"lookahead", options.workload.lookahead}};
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  const StreamEnd end = StreamOpenAI(server, "/v1/completions", body, [&](const json& event) {
    const Clock::time_point now = Clock::now();
    if (event.contains("usage") && event["usage"].is_object()) {
      const json& usage = event["usage"];
      record.prompt_tokens = usage.value("prompt_tokens", 0);
      if (usage.contains("prompt_tokens_details") && usage["prompt_tokens_details"].is_object()) {
        record.cached_prompt_tokens = usage["prompt_tokens_details"].value("cached_tokens", 0);
      }
      if (usage.contains("completion_tokens_details") && usage["completion_tokens_details"].is_object()) {
        const json& details = usage["completion_tokens_details"];
        record.accepted = details.value("accepted_prediction_tokens", 0);
        record.drafted = record.accepted + details.value("rejected_prediction_tokens", 0);
      }
      if (usage.contains("tokens_by_width") && usage["tokens_by_width"].is_object()) {
        for (const auto& [bits, tokens] : usage["tokens_by_width"].items()) {
          if (tokens.is_number_integer()) record.tokens_by_width[std::atoi(bits.c_str())] = tokens.get<int>();
        }
      }
    }
    if (!event.contains("choices") || !event["choices"].is_array() || event["choices"].empty()) return true;
    const json& choice = event["choices"][0];
    // A completion streams one chunk per token, and a last one with the finish reason (which
    // counts even past the deadline: the server finished the request).
    if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) {
      record.finish = absl::AsciiStrToUpper(choice["finish_reason"].get<std::string>());
      const std::string model = event.value("model", "");
      if (const size_t at = model.rfind('@'); at != std::string::npos) record.served_bits = std::atoi(model.c_str() + at + 1);
      return true;
    }
    if (has_deadline && now - start > deadline) {
      past_deadline = true;
      return false;
    }
    if (record.ttft < 0) {
      record.ttft = std::chrono::duration<double>(now - start).count();
    } else {
      record.itl.push_back(std::chrono::duration<double>(now - last).count());
    }
    last = now;
    ++record.output_tokens;
    return !(plan.fault == Fault::kCancelAfterFirstToken);
  });
  if (past_deadline || end.timed_out) {
    record.status = "DEADLINE_EXCEEDED";
  } else if (end.stopped) {
    record.status = "CANCELLED";
  } else if (end.http_status == 200 && !end.done) {
    record.status = "UNAVAILABLE";  // the stream broke off
  } else {
    record.status = GrpcCodeNameOfHttpStatus(end.http_status);
  }
  record.e2e = Since(start);
  ledger.Finished(plan.index, std::move(record));
}

}  // namespace

std::vector<RequestRecord> RunHttpLoad(const HttpTarget& target, const RunOptions& options, double* seconds) {
  // A thread per request in flight; those that have ended are joined as new ones start.
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> ended;
  };
  std::vector<Worker> workers;
  std::vector<RequestRecord> records = Dispatch(
      options,
      [&](const PlannedRequest& plan, Ledger& ledger) {
        std::erase_if(workers, [](Worker& w) {
          if (!*w.ended) return false;
          w.thread.join();
          return true;
        });
        // Counted as sent before this returns, so that a closed loop never overshoots.
        const RequestRecord record = SentRecord(plan);
        ledger.Sent(plan.index, record);
        auto ended = std::make_shared<std::atomic<bool>>(false);
        workers.push_back({std::thread([&target, &options, &ledger, plan, record, ended] {
                             RunHttpRequest(target, plan, options, record, ledger);
                             *ended = true;
                           }),
                           ended});
      },
      seconds);
  for (Worker& w : workers) w.thread.join();
  return records;
}

}  // namespace anyprec::loadtest
