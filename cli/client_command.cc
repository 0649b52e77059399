#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "anyprec/v1/admin.grpc.pb.h"
#include "anyprec/v1/generation.grpc.pb.h"
#include "cli/commands.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "proto/client_channel.h"

namespace anyprec::cli {
namespace {

namespace pb = anyprec::v1;

int Fail(const grpc::Status& status) {
  std::fprintf(stderr, "anyprec client: %s: %s\n", absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(),
               status.error_message().c_str());
  return 1;
}

// Exit 0 when the server reports SERVING, 1 otherwise (for container health checks).
int CheckHealth(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext& context) {
  const auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckResponse response;
  if (const grpc::Status status = stub->Check(&context, {}, &response); !status.ok()) return Fail(status);
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

void PrintTenant(const pb::TenantInfo& t) {
  std::printf("%s\tdefault %u\twidths %u..%u\tmax_running %u\tmax_queued %u\tweight %g\t%u keys\n", t.name().c_str(), t.default_bits(),
              t.min_bits(), t.max_bits(), t.max_running(), t.max_queued(), t.weight(), t.api_keys());
}

int RunAdmin(const ClientOptions& o, const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext& context) {
  const auto stub = pb::Admin::NewStub(channel);
  if (o.list_tenants) {
    pb::ListTenantsResponse response;
    if (const grpc::Status status = stub->ListTenants(&context, {}, &response); !status.ok()) return Fail(status);
    for (const pb::TenantInfo& t : response.tenants()) PrintTenant(t);
    if (!response.anonymous_tenant().empty()) std::printf("anonymous requests run as %s\n", response.anonymous_tenant().c_str());
    return 0;
  }
  pb::UpdateTenantRequest request;
  request.set_name(o.set_tenant);
  if (o.tenant_default_bits) request.set_default_bits(*o.tenant_default_bits);
  if (o.tenant_min_bits) request.set_min_bits(*o.tenant_min_bits);
  if (o.tenant_max_bits) request.set_max_bits(*o.tenant_max_bits);
  pb::TenantInfo updated;
  if (const grpc::Status status = stub->UpdateTenant(&context, request, &updated); !status.ok()) return Fail(status);
  PrintTenant(updated);
  return 0;
}

}  // namespace

void AddClientCommand(CLI::App& app, ClientOptions& o) {
  CLI::App* cmd = app.add_subcommand("client", "Talk to a running anyprec-server");
  cmd->add_option("--addr", o.address, "Server address")->capture_default_str();
  cmd->add_option("--api-key", o.api_key, "Sent as 'authorization: Bearer KEY'");
  cmd->add_option("--tls-ca", o.tls_ca, "PEM root certificates: connect over TLS, trusting these")->check(CLI::ExistingFile);
  cmd->add_option("--prompt", o.prompt, "Text to continue");
  cmd->add_option("--bits", o.bits, "Width to run; 0 takes the tenant's default")->check(CLI::Range(0, 64))->capture_default_str();
  cmd->add_option("--min-bits", o.min_bits, "Adaptive width: the narrowest the server may choose under load (with --bits 0)")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--max-bits", o.max_bits, "Adaptive width: the widest")->check(CLI::Range(0, 64));
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "Tokens to generate at most")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--temperature", o.sampling.temperature, "Sampling temperature; 0 is greedy")->capture_default_str();
  cmd->add_option("--top-p", o.sampling.top_p, "Nucleus sampling mass")->capture_default_str();
  cmd->add_option("--top-k", o.sampling.top_k, "Sample among the k most likely tokens; 0 = all")->capture_default_str();
  cmd->add_option("--repetition-penalty", o.repetition_penalty, "Above 1 discourages repeating tokens")->capture_default_str();
  cmd->add_option("--seed", o.sampling.seed, "Random seed")->capture_default_str();
  cmd->add_option("--stop", o.stop, "Stop sequence (repeatable)");
  cmd->add_option("--timeout", o.timeout_seconds, "Deadline in seconds; 0 for none")->capture_default_str();
  cmd->add_flag("--list-models", o.list_models, "List the logical models instead of generating");
  cmd->add_flag("--health", o.health, "Print the server's health; exit 0 only when SERVING");
  cmd->add_flag("--list-tenants", o.list_tenants, "Admin: list the tenants (needs an admin --api-key)");
  cmd->add_option("--set-tenant", o.set_tenant, "Admin: change this tenant's widths (with --tenant-*-bits)");
  cmd->add_option("--tenant-default-bits", o.tenant_default_bits, "Admin: the tenant's new default width");
  cmd->add_option("--tenant-min-bits", o.tenant_min_bits, "Admin: the tenant's new narrowest allowed width");
  cmd->add_option("--tenant-max-bits", o.tenant_max_bits, "Admin: the tenant's new widest allowed width");
}

int RunClient(const ClientOptions& o) {
  const std::shared_ptr<grpc::Channel> channel = ConnectToServer(o.address, o.tls_ca);
  grpc::ClientContext context;
  if (!o.api_key.empty()) context.AddMetadata("authorization", "Bearer " + o.api_key);
  if (o.timeout_seconds > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<long>(o.timeout_seconds * 1000)));
  }
  if (o.health) return CheckHealth(channel, context);
  if (o.list_tenants || !o.set_tenant.empty()) return RunAdmin(o, channel, context);
  const auto stub = pb::Generation::NewStub(channel);
  if (o.list_models) {
    pb::ListModelsResponse response;
    if (const grpc::Status status = stub->ListModels(&context, {}, &response); !status.ok()) return Fail(status);
    for (const auto& m : response.models()) {
      const bool allowed = m.bits() >= response.min_bits() && m.bits() <= response.max_bits();
      std::printf("%s\tbits %u\t%llu bytes/token%s%s\n", m.name().c_str(), m.bits(), static_cast<unsigned long long>(m.bytes_per_token()),
                  m.bits() == response.default_bits() ? "\t(default)" : "", allowed ? "" : "\t(not allowed for this tenant)");
    }
    return 0;
  }
  if (o.prompt.empty()) {
    std::fprintf(stderr, "anyprec client: --prompt is required (or --list-models, --health, --list-tenants, --set-tenant)\n");
    return 2;
  }
  pb::GenerateRequest request;
  request.set_text(o.prompt);
  request.set_bits(o.bits);
  if (o.min_bits) request.set_min_bits(*o.min_bits);
  if (o.max_bits) request.set_max_bits(*o.max_bits);
  request.set_max_new_tokens(o.max_new_tokens);
  request.mutable_sampling()->set_temperature(o.sampling.temperature);
  request.mutable_sampling()->set_top_p(o.sampling.top_p);
  request.mutable_sampling()->set_top_k(o.sampling.top_k);
  request.mutable_sampling()->set_repetition_penalty(o.repetition_penalty);
  request.mutable_sampling()->set_seed(o.sampling.seed);
  for (const std::string& stop : o.stop) request.add_stop(stop);
  auto reader = stub->Generate(&context, request);
  pb::GenerateResponse response;
  pb::GenerateResponse last;
  std::fputs(o.prompt.c_str(), stdout);
  while (reader->Read(&response)) {
    for (const auto& token : response.tokens()) std::fputs(token.text().c_str(), stdout);
    std::fputs(response.text().c_str(), stdout);
    std::fflush(stdout);
    if (response.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) last = response;
  }
  std::fputc('\n', stdout);
  if (const grpc::Status status = reader->Finish(); !status.ok()) return Fail(status);
  // The widths the tokens came from: one, unless the request was adaptive.
  std::vector<std::string> widths;
  for (const pb::WidthTokens& w : last.usage().tokens_by_width()) widths.push_back(absl::StrCat(w.tokens(), " at ", w.bits(), " bits"));
  std::fprintf(stderr, "%s: %s, %u prompt + %u completion tokens%s\n", last.model().c_str(), pb::FinishReason_Name(last.finish_reason()).c_str(),
               last.usage().prompt_tokens(), last.usage().completion_tokens(),
               widths.empty() ? "" : absl::StrCat(" (", absl::StrJoin(widths, ", "), ")").c_str());
  return 0;
}

}  // namespace anyprec::cli
