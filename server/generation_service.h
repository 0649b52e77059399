// anyprec.v1.Generation over gRPC's callback API: callers are authenticated as a tenant,
// requests validated, handed to the Scheduler, and their tokens streamed back as the engine
// loop produces them; each finished request leaves one access log line.
#pragma once

#include <atomic>
#include <string>

#include "anyprec/v1/generation.grpc.pb.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/scheduler.h"
#include "server/tenants.h"

namespace anyprec::server {

struct ServiceConfig {
  int max_new_tokens_limit = 4096;
  // Requests that name no speculation, of tenants without a default, decode speculatively with
  // this (where the draft is below their width).
  std::optional<SpeculativeOptions> speculative;
  // The objectives of adaptive requests whose tenant sets none.
  Slo slo;
};

class GenerationService final : public anyprec::v1::Generation::CallbackService {
 public:
  // `metrics` may be null.
  GenerationService(const Model& model, const Tokenizer& tokenizer, Scheduler& scheduler, const TenantRegistry& tenants,
                    ServiceConfig config, ServerMetrics* metrics = nullptr);

  grpc::ServerWriteReactor<anyprec::v1::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                                   const anyprec::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const anyprec::v1::ListModelsRequest* request,
                                       anyprec::v1::ListModelsResponse* response) override;

  // Turns a wire request from `tenant` into a scheduler request, or INVALID_ARGUMENT (or
  // PERMISSION_DENIED for a width the tenant may not use) saying what is wrong.
  absl::StatusOr<GenerationRequest> Validate(const anyprec::v1::GenerateRequest& request, const Tenant& tenant) const;

 private:
  const Model& model_;
  const Tokenizer& tokenizer_;
  Scheduler& scheduler_;
  const TenantRegistry& tenants_;
  const ServiceConfig config_;
  ServerMetrics* const metrics_;
  std::atomic<uint64_t> next_request_id_{1};
};

// The access log line of a finished request, from either front (`api`: "grpc" or "http").
void LogFinishedRequest(const std::string& id, const std::string& tenant, int bits, const RequestSummary& summary, std::string_view api,
                        const std::string& peer);

// The value of a call's `authorization` metadata, if it sent one.
std::optional<std::string_view> Authorization(const grpc::CallbackServerContext& context);

}  // namespace anyprec::server
