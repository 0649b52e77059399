#include <cstdio>

#include "anyprec/v1/generation.grpc.pb.h"
#include "cli/commands.h"
#include "grpcpp/grpcpp.h"

namespace anyprec::cli {

void AddClientCommand(CLI::App& app, ClientOptions& o) {
  CLI::App* cmd = app.add_subcommand("client", "Talk to a running anyprec-server");
  cmd->add_option("--addr", o.address, "Server address")->capture_default_str();
  cmd->add_option("--api-key", o.api_key, "Sent as 'authorization: Bearer KEY'");
  cmd->add_option("--prompt", o.prompt, "Text to continue");
  cmd->add_option("--bits", o.bits, "Width to run; 0 takes the server's default")->check(CLI::Range(0, 64))->capture_default_str();
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "Tokens to generate at most")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--temperature", o.sampling.temperature, "Sampling temperature; 0 is greedy")->capture_default_str();
  cmd->add_option("--top-p", o.sampling.top_p, "Nucleus sampling mass")->capture_default_str();
  cmd->add_option("--top-k", o.sampling.top_k, "Sample among the k most likely tokens; 0 = all")->capture_default_str();
  cmd->add_option("--seed", o.sampling.seed, "Random seed")->capture_default_str();
  cmd->add_option("--stop", o.stop, "Stop sequence (repeatable)");
  cmd->add_option("--timeout", o.timeout_seconds, "Deadline in seconds; 0 for none")->capture_default_str();
  cmd->add_flag("--list-models", o.list_models, "List the logical models instead of generating");
}

int RunClient(const ClientOptions& o) {
  const auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
  const auto stub = anyprec::v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  if (!o.api_key.empty()) context.AddMetadata("authorization", "Bearer " + o.api_key);
  if (o.timeout_seconds > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<long>(o.timeout_seconds * 1000)));
  }
  const auto fail = [](const grpc::Status& status) {
    std::fprintf(stderr, "anyprec client: %s: %s\n", absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(),
                 status.error_message().c_str());
    return 1;
  };
  if (o.list_models) {
    anyprec::v1::ListModelsResponse response;
    if (const grpc::Status status = stub->ListModels(&context, {}, &response); !status.ok()) return fail(status);
    for (const auto& m : response.models()) {
      std::printf("%s\tbits %u\t%llu bytes/token%s\n", m.name().c_str(), m.bits(), static_cast<unsigned long long>(m.bytes_per_token()),
                  m.bits() == response.default_bits() ? "\t(default)" : "");
    }
    return 0;
  }
  if (o.prompt.empty()) {
    std::fprintf(stderr, "anyprec client: --prompt is required (or --list-models)\n");
    return 2;
  }
  anyprec::v1::GenerateRequest request;
  request.set_text(o.prompt);
  request.set_bits(o.bits);
  request.set_max_new_tokens(o.max_new_tokens);
  request.mutable_sampling()->set_temperature(o.sampling.temperature);
  request.mutable_sampling()->set_top_p(o.sampling.top_p);
  request.mutable_sampling()->set_top_k(o.sampling.top_k);
  request.mutable_sampling()->set_seed(o.sampling.seed);
  for (const std::string& stop : o.stop) request.add_stop(stop);
  auto reader = stub->Generate(&context, request);
  anyprec::v1::GenerateResponse response;
  anyprec::v1::GenerateResponse last;
  std::fputs(o.prompt.c_str(), stdout);
  while (reader->Read(&response)) {
    for (const auto& token : response.tokens()) std::fputs(token.text().c_str(), stdout);
    std::fflush(stdout);
    if (response.finish_reason() != anyprec::v1::FINISH_REASON_UNSPECIFIED) last = response;
  }
  std::fputc('\n', stdout);
  if (const grpc::Status status = reader->Finish(); !status.ok()) return fail(status);
  std::fprintf(stderr, "%s: %s, %u prompt + %u completion tokens\n", last.model().c_str(),
               anyprec::v1::FinishReason_Name(last.finish_reason()).c_str(), last.usage().prompt_tokens(),
               last.usage().completion_tokens());
  return 0;
}

}  // namespace anyprec::cli
