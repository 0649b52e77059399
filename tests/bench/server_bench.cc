// anyprec-bench-server: decode throughput of the real anyprec-server over gRPC at several
// client concurrencies, for a {3, 4, 8} width mix run (a) through the one-pass
// mixed-precision kernels and (b) grouped by width (--group-by-bits), plus the server's
// overhead against the same decode run in process with nothing in between.
//
// Usage: anyprec-bench-server --image DIR [--tokenizer FILE] [--concurrency 1,4,16]
//                             [--requests N] [--max-new-tokens T]
#include <chrono>
#include <cstdio>
#include <future>
#include <thread>

#include "CLI/CLI.hpp"
#include "flags/engine_flags.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/transformer.h"
#include "grpcpp/grpcpp.h"
#include "tests/server_process.h"

namespace {

namespace pb = anyprec::v1;
using Clock = std::chrono::steady_clock;

constexpr int kMix[] = {3, 4, 8};
constexpr const char* kPrompt = "Once upon a time";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Completion tokens of one greedy request; -1 on an error.
long Generate(pb::Generation::Stub& stub, int bits, int max_new_tokens) {
  grpc::ClientContext context;
  pb::GenerateRequest request;
  request.set_text(kPrompt);
  request.set_bits(bits);
  request.set_max_new_tokens(max_new_tokens);
  request.set_ignore_eos(true);
  auto reader = stub.Generate(&context, request);
  pb::GenerateResponse response;
  long tokens = 0;
  while (reader->Read(&response)) tokens += response.tokens_size();
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::fprintf(stderr, "request failed: %s\n", status.error_message().c_str());
    return -1;
  }
  return tokens;
}

// Generated tokens per second with `concurrency` clients, each sending `requests` requests
// one after another, their widths cycling through the mix.
double Throughput(const anyprec::testing::ServerProcess& server, int concurrency, int requests, int max_new_tokens) {
  const Clock::time_point start = Clock::now();
  std::vector<std::future<long>> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.push_back(std::async(std::launch::async, [&, c] {
      const auto stub = server.Stub();
      long tokens = 0;
      for (int r = 0; r < requests; ++r) tokens += Generate(*stub, kMix[(c + r) % 3], max_new_tokens);
      return tokens;
    }));
  }
  long tokens = 0;
  for (auto& client : clients) tokens += client.get();
  return tokens / Seconds(Clock::now() - start);
}

// The same greedy decode in process: one sequence, one Forward per token, no server.
double InProcessTokensPerSecond(const anyprec::Engine& engine, int bits, int max_new_tokens) {
  const anyprec::Model& model = engine.model();
  anyprec::Transformer transformer(model);
  std::vector<anyprec::TokenId> input = engine.EncodePrompt(kPrompt);
  anyprec::KvCache cache(model.config(), static_cast<int>(input.size()) + max_new_tokens);
  std::vector<float> logits(model.config().vocab_size);
  anyprec::ForwardOptions options;
  options.bits = bits;
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < max_new_tokens; ++i) {
    if (!transformer.Forward(input, cache, anyprec::LogitsFor::kLastToken, logits, options).ok()) return 0;
    input = {anyprec::ArgMax(logits)};
  }
  return max_new_tokens / Seconds(Clock::now() - start);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"anyprec-bench-server: anyprec-server decode throughput, mixed vs grouped widths"};
  anyprec::EngineOptions model_options;
  std::vector<int> concurrencies = {1, 4, 16};
  int requests = 3;
  int max_new_tokens = 64;
  anyprec::flags::AddEngineOptions(app, model_options);
  app.add_option("--concurrency", concurrencies, "Client counts to run")->delimiter(',');
  app.add_option("--requests", requests, "Requests each client sends")->capture_default_str();
  app.add_option("--max-new-tokens", max_new_tokens, "Tokens each request generates")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto engine = anyprec::Engine::Open(model_options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  double in_process = 0;
  for (const int bits : kMix) in_process += InProcessTokensPerSecond(**engine, bits, max_new_tokens) / 3;

  std::vector<std::string> args = {"--model", model_options.model_dir, "--max-running", "16", "--max-queued", "256"};
  if (!model_options.tokenizer_path.empty()) args.insert(args.end(), {"--tokenizer", model_options.tokenizer_path});
  std::vector<double> mixed;
  std::vector<double> grouped;
  for (const bool group : {false, true}) {
    std::vector<std::string> server_args = args;
    if (group) server_args.push_back("--group-by-bits");
    anyprec::testing::ServerProcess server(ANYPREC_SERVER, server_args, "/dev/null");
    if (!server.started()) {
      std::fprintf(stderr, "anyprec-server did not start\n");
      return 1;
    }
    Throughput(server, 1, 1, 8);  // warm-up
    for (const int c : concurrencies) (group ? grouped : mixed).push_back(Throughput(server, c, requests, max_new_tokens));
  }

  std::printf("%s: %d tokens per request, %d requests per client, widths cycling 3,4,8\n\n", (*engine)->model().name().c_str(),
              max_new_tokens, requests);
  std::printf("| clients | mixed one-pass (tok/s) | grouped by width (tok/s) | mixed / grouped |\n|---|---|---|---|\n");
  for (size_t i = 0; i < concurrencies.size(); ++i) {
    std::printf("| %d | %.0f | %.0f | %.2f |\n", concurrencies[i], mixed[i], grouped[i], mixed[i] / grouped[i]);
  }
  std::printf("\nin process, one sequence, same widths: %.0f tok/s; the server at 1 client: %.0f tok/s (%.1f%% overhead)\n",
              in_process, mixed[0], 100.0 * (1.0 - mixed[0] / in_process));
  return 0;
}
