// anyprec.v1.Generation over gRPC's callback API: requests are validated, handed to the
// Scheduler, and their tokens streamed back as the engine loop produces them.
#pragma once

#include <string>

#include "anyprec/v1/generation.grpc.pb.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/scheduler.h"

namespace anyprec::server {

struct ServiceConfig {
  int default_bits = 0;
  int max_new_tokens_limit = 4096;
};

class GenerationService final : public anyprec::v1::Generation::CallbackService {
 public:
  // `metrics` may be null.
  GenerationService(const Model& model, const Tokenizer& tokenizer, Scheduler& scheduler, ServiceConfig config,
                    ServerMetrics* metrics = nullptr);

  grpc::ServerWriteReactor<anyprec::v1::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                                   const anyprec::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const anyprec::v1::ListModelsRequest* request,
                                       anyprec::v1::ListModelsResponse* response) override;

  // Turns a wire request into a scheduler request, or INVALID_ARGUMENT saying what is wrong.
  absl::StatusOr<GenerationRequest> Validate(const anyprec::v1::GenerateRequest& request) const;

 private:
  const Model& model_;
  const Tokenizer& tokenizer_;
  Scheduler& scheduler_;
  const ServiceConfig config_;
  ServerMetrics* const metrics_;
};

}  // namespace anyprec::server
