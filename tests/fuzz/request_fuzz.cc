// Request validation on GenerateRequest messages parsed from arbitrary bytes, against a real
// anyprec image of TinyStories-656K made at start-up: a request is refused with
// INVALID_ARGUMENT or PERMISSION_DENIED, or becomes one the scheduler can run (an adaptive one
// within the tenant's widths).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "anyprec/v1/generation.pb.h"
#include "engine/device/cpu_device.h"
#include "engine/device/kv_cache.h"
#include "engine/runtime/logprobs.h"
#include "engine/runtime/speculative.h"
#include "quantizer/quantizer.h"
#include "server/generation_service.h"
#include "server/scheduler.h"
#include "server/tenants.h"

namespace {

namespace fs = std::filesystem;

struct Service {
  std::unique_ptr<anyprec::Model> model;
  std::unique_ptr<anyprec::Tokenizer> tokenizer;
  std::unique_ptr<anyprec::Device> device;
  std::unique_ptr<anyprec::server::Scheduler> scheduler;
  std::unique_ptr<anyprec::server::TenantRegistry> tenants;
  std::unique_ptr<anyprec::server::GenerationService> service;
  anyprec::server::Tenant tenant;
};

Service& TheService() {
  static Service service;
  return service;
}

void Exit(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "request_fuzz: %s: %s (set ANYPREC_SHARED to the shared folder)\n", what.c_str(), std::string(status.message()).c_str());
  std::exit(1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* shared = std::getenv("ANYPREC_SHARED");
  const std::string model_dir = std::string(shared != nullptr ? shared : ANYPREC_DEFAULT_SHARED_DIR) + "/models/TinyStories-656K";
  const fs::path image = fs::temp_directory_path() / ("anyprec-request-fuzz-" + std::to_string(::getpid()));
  anyprec::quant::ModelQuantizeOptions options;
  options.sensitivity = anyprec::quant::Sensitivity::kNone;
  options.quant.seed_method = anyprec::quant::SeedMethod::kLloyd;
  if (absl::Status s = anyprec::quant::QuantizeModel(model_dir, image.string(), options, [](const std::string&) {}); !s.ok()) Exit(model_dir, s);
  Service& s = TheService();
  auto model = anyprec::Model::Load(image.string());
  if (!model.ok()) Exit(image.string(), model.status());
  s.model = std::make_unique<anyprec::Model>(*std::move(model));
  auto tokenizer = anyprec::Tokenizer::Load((image / "tokenizer.json").string());
  if (!tokenizer.ok()) Exit("tokenizer", tokenizer.status());
  s.tokenizer = std::make_unique<anyprec::Tokenizer>(*std::move(tokenizer));
  fs::remove_all(image);  // the model keeps its mapping
  s.device = anyprec::MakeCpuDevice(*s.model);
  s.scheduler = std::make_unique<anyprec::server::Scheduler>(*s.model, *s.device, *s.tokenizer, anyprec::server::SchedulerOptions{});
  s.tenants = anyprec::server::TenantRegistry::Open({3, 8}, 4);
  s.service = std::make_unique<anyprec::server::GenerationService>(*s.model, *s.tokenizer, *s.scheduler, *s.tenants,
                                                                   anyprec::server::ServiceConfig{});
  s.tenant = s.tenants->policy()->tenants.begin()->second;
  s.tenant.min_bits = 3;
  s.tenant.max_bits = 6;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  anyprec::v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const Service& s = TheService();
  const auto validated = s.service->Validate(request, s.tenant);
  if (!validated.ok()) {
    const absl::StatusCode code = validated.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kPermissionDenied) __builtin_trap();
    return 0;
  }
  if (validated->bits < s.tenant.min_bits || validated->bits > s.tenant.max_bits || validated->prompt.empty()) __builtin_trap();
  for (anyprec::TokenId id : validated->prompt) {
    if (id < 0 || id >= s.model->config().vocab_size) __builtin_trap();
  }
  if (validated->top_logprobs < 0 || validated->top_logprobs > anyprec::kMaxTopLogprobs) __builtin_trap();
  // An adaptive request's range lies within the tenant's widths, its top the request's width.
  if (const auto& adaptive = validated->adaptive) {
    if (adaptive->widths.min < s.tenant.min_bits || adaptive->widths.max > s.tenant.max_bits) __builtin_trap();
    if (adaptive->widths.min > adaptive->widths.max || adaptive->widths.max != validated->bits) __builtin_trap();
    if (!(adaptive->slo.ttft_seconds > 0 && adaptive->slo.tpot_seconds > 0)) __builtin_trap();
  }
  if (const auto& speculative = validated->speculative) {
    if (speculative->draft_bits < 3 || speculative->draft_bits >= validated->bits) __builtin_trap();
    if (speculative->lookahead < 1 || speculative->lookahead > anyprec::kMaxLookahead) __builtin_trap();
  }
  return 0;
}
