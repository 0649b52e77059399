#include "cli/model_bundle.h"

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/base/status_macros.h"
#include "engine/cpu/kernel_choice.h"

namespace anyprec::cli {

void AddModelOptions(CLI::App& command, ModelOptions& o) {
  command.add_option("--model", o.model_dir, "Hugging Face model folder")->required()->check(CLI::ExistingDirectory);
  command.add_option("--tokenizer", o.tokenizer_path, "tokenizer.json or llama2.c tokenizer.bin (default: the model's tokenizer.json)")
      ->check(CLI::ExistingFile);
  command.add_option("--device", o.device, "auto (the GPU when one works, else the CPU), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  command.add_option("--kv-cache-dtype", o.kv_cache_dtype,
                     "How the KV cache stores keys and values: auto (fp16 on the CPU, fp32 on a GPU), fp32, bf16 or fp16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp16"}))
      ->capture_default_str();
}

namespace {

// The KV dtype for --kv-cache-dtype on the chosen device; the log names it beside the device.
absl::Status ResolveKvDType(const ModelOptions& options, ModelBundle& bundle) {
  const bool on_gpu = bundle.gpu != nullptr;
  if (options.kv_cache_dtype == "auto") {
    bundle.kv_dtype = on_gpu ? cpu::KvDType::kF32 : cpu::KvDType::kF16;
  } else {
    bundle.kv_dtype = *cpu::ParseKvDType(options.kv_cache_dtype);
    if (on_gpu && bundle.kv_dtype != cpu::KvDType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtype ", options.kv_cache_dtype,
                                                     ": the GPU's attention reads fp32 keys and values; pass --device cpu or fp32"));
    }
  }
  absl::StrAppend(&bundle.device_summary, ", KV cache ", std::string(cpu::KvDTypeName(bundle.kv_dtype)));
  return absl::OkStatus();
}

// Runs the bundle on the device --device picks: the GPU when its backend loads and passes a
// self-check against the CPU, else the CPU (with `kernel`), saying which and why.
absl::Status PlaceOnDevice(const ModelOptions& options, const cpu::KernelChoice& kernel, ModelBundle& bundle) {
  if (options.device == "cpu") {
    bundle.device_summary = "cpu (--device cpu), " + kernel.summary;
    return absl::OkStatus();
  }
  std::string why;
  bundle.gpu_backend = cuda::LoadCudaBackend(0, why);
  if (bundle.gpu_backend) {
    absl::StatusOr<std::unique_ptr<CudaForward>> gpu = CudaForward::Create(bundle.model, **bundle.gpu_backend);
    if (gpu.ok()) {
      if (const absl::Status check = (*gpu)->CheckAgainstCpu(bundle.model); !check.ok()) gpu = absl::InternalError(absl::StrCat("self-check: ", check.message()));
    }
    if (gpu.ok()) {
      bundle.gpu = *std::move(gpu);
      const cuda::DeviceInfo& info = (*bundle.gpu_backend)->info();
      bundle.device_summary = absl::StrCat("cuda (", info.name, ", compute ", info.compute_major, ".", info.compute_minor, ")");
      return absl::OkStatus();
    }
    why = std::string(gpu.status().message());
    bundle.gpu_backend.reset();
  }
  if (options.device == "cuda") return absl::UnavailableError(absl::StrCat("--device cuda: ", why));
  bundle.device_summary = absl::StrCat("cpu (no GPU: ", why, "), ", kernel.summary);
  return absl::OkStatus();
}

}  // namespace

void AddExactKernelsFlag(CLI::App& command, bool& exact_kernels) {
  command.add_flag("--exact-kernels", exact_kernels,
                   "Run bitplane layers on the exact fp32 kernel, not the int8 one (about 1% off)");
}

absl::StatusOr<ModelBundle> LoadModelBundle(const ModelOptions& options) {
  const std::string& model_dir = options.model_dir;
  ASSIGN_OR_RETURN(Model model, Model::Load(model_dir));
  std::string path = options.tokenizer_path;
  if (path.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer.bin"}) {
      if (const auto candidate = std::filesystem::path(model_dir) / name; std::filesystem::exists(candidate)) {
        path = candidate.string();
        break;
      }
    }
    if (path.empty()) return absl::NotFoundError(absl::StrCat(model_dir, ": no tokenizer.json or tokenizer.bin; pass --tokenizer FILE"));
  }
  ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::Load(path));
  if (tokenizer.vocab_size() > model.config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer has ", tokenizer.vocab_size(),
                                                   " tokens, more than the model's ", model.config().vocab_size));
  }
  ASSIGN_OR_RETURN(const cpu::KernelChoice kernel, cpu::ChooseKernel());
  ModelBundle bundle{std::move(model), std::move(tokenizer), nullptr, nullptr, cpu::KvDType::kF32, ""};
  RETURN_IF_ERROR(PlaceOnDevice(options, kernel, bundle));
  RETURN_IF_ERROR(ResolveKvDType(options, bundle));
  return bundle;
}

TokenId ModelBundle::bos() const {
  if (model.config().bos_token_id >= 0) return model.config().bos_token_id;
  const std::vector<TokenId> template_ids = tokenizer.EncodeWithSpecialTokens("");
  return template_ids.empty() ? -1 : template_ids.front();
}

absl::StatusOr<std::vector<int>> ParseWidths(const std::string& spec, const ModelConfig& config) {
  const int seed = config.quantization ? config.quantization->seed_bits : 0;
  const int max = config.quantization ? config.quantization->max_bits : 0;
  std::vector<int> widths;
  if (spec == "all") {
    for (int b = seed; b <= max; ++b) widths.push_back(b);
    return widths;
  }
  for (const absl::string_view part : absl::StrSplit(spec, ',')) {
    int b = 0;
    if (!absl::SimpleAtoi(part, &b)) return absl::InvalidArgumentError(absl::StrCat("--bits: '", std::string(part), "' is not a width"));
    if (b != 0 || config.quantization) {
      if (b < seed || b > max) {
        return absl::InvalidArgumentError(absl::StrCat("--bits: ", b, " is outside the model's widths ", seed, "..", max));
      }
    }
    widths.push_back(b);
  }
  return widths;
}

std::vector<TokenId> ModelBundle::EncodePrompt(const std::string& text) const {
  std::vector<TokenId> ids;
  if (const TokenId b = bos(); b >= 0) ids.push_back(b);
  const std::vector<TokenId> body = tokenizer.Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace anyprec::cli
