#include "engine/runtime/engine.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/base/relative_error.h"
#include "engine/base/status_macros.h"
#include "engine/cpu/kernel_choice.h"
#include "engine/device/cpu_device.h"
#include "engine/device/cuda_device.h"
#include "engine/model/width.h"
#include "engine/runtime/prompt.h"
#include "engine/runtime/transformer.h"

namespace anyprec {

std::optional<DeviceChoice> ParseDeviceChoice(std::string_view name) {
  if (name == "auto") return DeviceChoice::kAuto;
  if (name == "cpu") return DeviceChoice::kCpu;
  if (name == "cuda") return DeviceChoice::kCuda;
  return std::nullopt;
}

namespace {

// What of `options` the GPU cannot honour, or empty.
std::string WhatTheGpuLacks(const EngineOptions& options) {
  if (options.exact_kernels) return "the GPU has no exact kernel (--exact-kernels)";
  if (options.kv_dtype && *options.kv_dtype != cpu::KvDType::kF32) {
    return absl::StrCat("the GPU's attention reads fp32 keys and values (--kv-cache-dtype ",
                        std::string(cpu::KvDTypeName(*options.kv_dtype)), ")");
  }
  return "";
}

// Runs a short prompt at the narrowest and the widest width of `model` on `device` and on the
// CPU and compares the logits: an error when the device fails or disagrees, so that a
// start-up can fall back to the CPU rather than serve wrong answers.
absl::Status CheckAgainstCpu(const Model& model, Device& device) {
  // The GPU feeds fp16 activations to the linear layers, the CPU int8 or fp32 ones.
  constexpr double kLogitBound = 3e-2;
  const ModelConfig& c = model.config();
  std::vector<TokenId> prompt = {c.bos_token_id >= 0 ? c.bos_token_id : 0};
  for (int i = 1; i < 8; ++i) prompt.push_back((prompt.back() * 31 + 7) % c.vocab_size);
  const WidthRange widths = ModelWidths(c);
  Transformer cpu(model);
  Transformer other(model, device);
  for (const int bits : {widths.min, widths.max}) {
    KvCache cpu_cache(c, static_cast<int>(prompt.size()));
    KvCache other_cache(c, static_cast<int>(prompt.size()));
    std::vector<float> want(static_cast<size_t>(c.vocab_size) * prompt.size());
    std::vector<float> got(want.size());
    RETURN_IF_ERROR(cpu.Forward(prompt, cpu_cache, LogitsFor::kAllTokens, want, {bits}));
    RETURN_IF_ERROR(other.Forward(prompt, other_cache, LogitsFor::kAllTokens, got, {bits}));
    const double error = MaxRelativeError(got, want);
    if (!(error <= kLogitBound)) {
      return absl::InternalError(
          absl::StrCat("the logits at bits ", bits, " are off the CPU's by ", error, " (relative; more than ", kLogitBound, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Engine::Engine(Model model, std::optional<Tokenizer> tokenizer) : model_(std::move(model)), tokenizer_(std::move(tokenizer)) {}

Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (const std::string lacks = WhatTheGpuLacks(options); options.device == DeviceChoice::kCuda && !lacks.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--device cuda: ", lacks, "; pass --device cpu"));
  }
  ASSIGN_OR_RETURN(Model model, Model::Load(options.model_dir));
  std::string path = options.tokenizer_path;
  if (path.empty()) {
    absl::StatusOr<std::string> found = Tokenizer::FindInFolder(options.model_dir);
    if (!found.ok() && !options.tokenizer_optional) return found.status();
    path = found.value_or("");
  }
  std::optional<Tokenizer> tokenizer;
  if (!path.empty()) {
    ASSIGN_OR_RETURN(tokenizer, Tokenizer::Load(path));
    if (tokenizer->vocab_size() > model.config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer has ", tokenizer->vocab_size(), " tokens, more than the model's ",
                                                     model.config().vocab_size));
    }
  }
  std::unique_ptr<Engine> engine(new Engine(std::move(model), std::move(tokenizer)));
  RETURN_IF_ERROR(engine->PlaceOnDevice(options));
  return engine;
}

// The GPU when --device allows one, its backend loads, it can honour the options and its
// forward pass passes a check against the CPU's; else the CPU, saying which kernel and why.
absl::Status Engine::PlaceOnDevice(const EngineOptions& options) {
  ASSIGN_OR_RETURN(const cpu::KernelChoice kernel, cpu::ChooseKernel());
  std::string why = "--device cpu";
  if (options.device != DeviceChoice::kCpu) {
    gpu_backend_ = cuda::LoadCudaBackend(0, why);
    if (!gpu_backend_) {
      why = "no GPU: " + why;
    } else if (const std::string lacks = WhatTheGpuLacks(options); !lacks.empty()) {
      why = lacks;
      gpu_backend_.reset();
    } else {
      absl::StatusOr<std::unique_ptr<Device>> gpu = MakeCudaDevice(model_, **gpu_backend_);
      if (gpu.ok()) {
        if (const absl::Status check = CheckAgainstCpu(model_, **gpu); !check.ok()) {
          gpu = absl::InternalError(absl::StrCat("self-check: ", check.message()));
        }
      }
      if (gpu.ok()) {
        device_ = *std::move(gpu);
        kv_dtype_ = cpu::KvDType::kF32;
        const cuda::DeviceInfo& info = (*gpu_backend_)->info();
        device_summary_ = absl::StrCat("cuda (", info.name, ", compute ", info.compute_major, ".", info.compute_minor, "), KV cache ",
                                       std::string(cpu::KvDTypeName(kv_dtype_)));
        return absl::OkStatus();
      }
      why = absl::StrCat("no GPU: ", gpu.status().message());
      gpu_backend_.reset();
    }
    if (options.device == DeviceChoice::kCuda) return absl::UnavailableError(absl::StrCat("--device cuda: ", why));
  }
  kv_dtype_ = options.kv_dtype.value_or(cpu::KvDType::kF16);
  device_ = MakeCpuDevice(model_, {options.exact_kernels});
  device_summary_ = absl::StrCat("cpu (", why, "), ", options.exact_kernels ? std::string("exact fp32 (--exact-kernels)") : kernel.summary,
                                 ", KV cache ", std::string(cpu::KvDTypeName(kv_dtype_)));
  return absl::OkStatus();
}

size_t Engine::device_memory_bytes() const { return gpu_backend_ ? (*gpu_backend_)->info().memory_bytes : 0; }

TokenId Engine::bos() const { return BosToken(model_.config(), *tokenizer_); }

std::vector<TokenId> Engine::EncodePrompt(std::string_view text) const { return anyprec::EncodePrompt(model_.config(), *tokenizer_, text); }

}  // namespace anyprec
