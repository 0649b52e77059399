// anyprec-loadtest: load for anyprec-server, in the spirit of vLLM's serving benchmark, over
// gRPC or the OpenAI HTTP front. Open-loop arrivals (Poisson or Gamma) or a closed loop, a mix
// of widths and tenants, client-side faults, and latency/throughput/goodput per width; a rate
// sweep can be plotted.
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "engine/base/mapped_file.h"
#include "flags/parse.h"
#include "grpcpp/grpcpp.h"
#include "loadtest/load_runner.h"
#include "loadtest/plot.h"
#include "proto/client_channel.h"
#include "proto/openai_client.h"

namespace {

using namespace anyprec::loadtest;

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "anyprec-loadtest: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"anyprec-loadtest: load anyprec-server and report latency, throughput and every outcome per bit-width"};
  std::string address = "127.0.0.1:50051";
  std::string tls_ca;
  std::string http_address;
  RunOptions run;
  std::string prompts_path;
  std::string split = "paragraphs";
  std::string prompt_words = "0";
  std::string output_tokens = "64";
  std::string mix = "0";
  std::vector<double> sweep;
  double deadline_ms = 50;
  Slo slo;
  double slo_ttft_ms = 0, slo_tpot_ms = 0;
  std::string json_path, plot_path;
  std::vector<std::string> prefix_paths;
  app.add_option("--server", address, "anyprec-server's gRPC address")->capture_default_str();
  app.add_option("--tls-ca", tls_ca, "CA certificate (PEM) of a TLS server")->check(CLI::ExistingFile);
  app.add_option("--http", http_address, "Load the OpenAI HTTP front at this host:port (streamed /v1/completions) instead of gRPC")
      ->excludes("--server")
      ->excludes("--tls-ca");
  app.add_option("--rate", run.workload.rate, "Open loop: requests per second")->check(CLI::PositiveNumber);
  app.add_option("--burstiness", run.workload.burstiness, "Gamma shape of the arrivals: 1 Poisson, < 1 burstier")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--concurrency", run.concurrency, "Closed loop: requests in flight")->check(CLI::PositiveNumber);
  app.add_option("--sweep", sweep, "Open loop at each of these rates in turn (e.g. 1,2,4,8)")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--duration", run.duration, "Seconds to send for (per rate)")->check(CLI::PositiveNumber);
  app.add_option("--requests", run.requests, "Requests to send (per rate)")->check(CLI::PositiveNumber);
  app.add_option("--prompts", prompts_path, "Text file to draw prompts from")->required()->check(CLI::ExistingFile);
  app.add_option("--prompt-split", split, "paragraphs (blank-line separated) or lines")
      ->check(CLI::IsMember({"paragraphs", "lines"}))
      ->capture_default_str();
  app.add_option("--prompt-words", prompt_words, "Cut prompts to N or MIN-MAX words (0: whole)")->capture_default_str();
  app.add_option("--prefix-file", prefix_paths,
                 "A text that prompts start with (a shared system prompt); repeat for several, one drawn per request")
      ->check(CLI::ExistingFile);
  app.add_option("--output-tokens", output_tokens, "Tokens to generate: N or MIN-MAX (EOS ignored)")->capture_default_str();
  app.add_option("--mix", mix, "Widths with weights, e.g. 3:0.5,4:0.3,8:0.2 (0: the tenant's default; MIN-MAX, e.g. 3-8: adaptive within)")->capture_default_str();
  app.add_option("--api-key", run.api_keys, "A tenant's API key; repeat for several tenants (chosen with equal weight)");
  app.add_option("--cancel-fraction", run.workload.cancel_fraction, "Fraction of requests cancelled after their first token")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--deadline-fraction", run.workload.deadline_fraction, "Fraction of requests sent with a short deadline")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--deadline-ms", deadline_ms, "That short deadline")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--speculative-fraction", run.workload.speculative_fraction,
                 "Fraction of requests (of widths above the draft's) decoded self-speculatively")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--speculative-draft-bits", run.workload.draft_bits, "Their draft width")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--speculative-lookahead", run.workload.lookahead, "Their tokens drafted per verify step")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--slo-ttft-ms", slo_ttft_ms, "Goodput counts requests with TTFT at most this")->check(CLI::PositiveNumber);
  app.add_option("--slo-tpot-ms", slo_tpot_ms, "... and time per output token at most this")->check(CLI::PositiveNumber);
  app.add_option("--seed", run.workload.seed, "Seed of the workload")->capture_default_str();
  app.add_option("--json", json_path, "Write the reports as JSON here");
  app.add_option("--plot", plot_path, "Draw the --sweep's latency and throughput curves into this PNG (gnuplot)");
  if (const auto exit_code = anyprec::flags::ParseOrExitCode(app, argc, argv)) return *exit_code;

  const int modes = (run.workload.rate > 0) + (run.concurrency > 0) + !sweep.empty();
  if (modes != 1) return Fail("choose one of --rate, --concurrency or --sweep", 2);
  if (run.duration <= 0 && run.requests <= 0) return Fail("bound the run with --duration or --requests", 2);
  if (!plot_path.empty() && sweep.empty()) return Fail("--plot draws a --sweep", 2);
  if (run.workload.cancel_fraction + run.workload.deadline_fraction > 1) return Fail("the fault fractions add up to more than 1", 2);
  auto prompts = ReadPrompts(prompts_path, split == "lines" ? PromptSplit::kLines : PromptSplit::kParagraphs);
  auto words = ParseRange(prompt_words);
  auto outputs = ParseRange(output_tokens);
  auto bits = ParseWidthMix(mix);
  for (const absl::Status& s : {prompts.status(), words.status(), outputs.status(), bits.status()}) {
    if (!s.ok()) return Fail(std::string(s.message()), 2);
  }
  run.workload.prompts = *std::move(prompts);
  for (const std::string& path : prefix_paths) {
    absl::StatusOr<std::string> text = anyprec::ReadTextFile(path);
    if (!text.ok()) return Fail(std::string(text.status().message()), 2);
    const absl::string_view prefix = absl::StripTrailingAsciiWhitespace(*text);
    if (prefix.empty()) return Fail(path + ": holds no text", 2);
    run.workload.prefixes.emplace_back(std::string(prefix));
  }
  run.workload.prompt_words = *words;
  run.workload.output_tokens = *outputs;
  run.workload.width_mix = *bits;
  run.workload.tenant_mix.clear();
  for (size_t t = 0; t < std::max<size_t>(1, run.api_keys.size()); ++t) run.workload.tenant_mix.push_back({static_cast<int>(t), 1.0});
  run.short_deadline = deadline_ms / 1e3;
  slo = {slo_ttft_ms / 1e3, slo_tpot_ms / 1e3};

  std::shared_ptr<grpc::Channel> channel;
  HttpTarget http{http_address, ""};
  if (http_address.empty()) {
    channel = anyprec::ConnectToServer(address, tls_ca);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      return Fail("cannot reach " + address, 1);
    }
  } else {
    // The plain name comes first in the list: the width then comes from the request or the tenant.
    anyprec::OpenAIServer server;
    server.address = http_address;
    if (!run.api_keys.empty()) server.api_key = run.api_keys.front();
    const auto models = anyprec::ListModels(server);
    if (!models.ok()) return Fail(std::string(models.status().message()), 1);
    if (models->empty()) return Fail(http_address + " serves no model", 1);
    http.model = models->front();
  }
  if (isatty(STDERR_FILENO)) {
    run.on_progress = [](const Progress& p) {
      std::fprintf(stderr, "\r%6.1f s  sent %ld  finished %ld  in flight %ld  failed %ld   ", p.elapsed, p.sent, p.finished,
                   p.sent - p.finished, p.failed);
    };
  }

  std::vector<Report> reports;
  const std::vector<double> rates = sweep.empty() ? std::vector<double>{run.workload.rate} : sweep;
  for (const double rate : rates) {
    if (run.concurrency == 0) run.workload.rate = rate;
    double seconds = 0;
    const std::vector<RequestRecord> records = channel ? RunLoad(channel, run, &seconds) : RunHttpLoad(http, run, &seconds);
    if (run.on_progress) std::fprintf(stderr, "\n");
    reports.push_back(Summarize(records, seconds, run.concurrency > 0 ? 0 : rate, slo));
    std::printf("%s\n", reports.back().Table().c_str());
    std::fflush(stdout);
  }

  if (!json_path.empty()) {
    nlohmann::json json = nlohmann::json::array();
    for (const Report& r : reports) json.push_back(r.ToJson());
    std::ofstream(json_path) << json.dump(2) << "\n";
  }
  if (!plot_path.empty()) {
    if (const absl::Status s = PlotSweep(reports, plot_path); !s.ok()) return Fail(std::string(s.message()), 1);
  }
  return 0;
}
