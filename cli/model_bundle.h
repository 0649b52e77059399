// A model folder loaded for the command line: weights, config and its tokenizer.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "engine/cuda/cuda_loader.h"
#include "engine/model/model.h"
#include "engine/runtime/cuda_forward.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec::cli {

struct ModelBundle {
  Model model;
  Tokenizer tokenizer;
  // Set when the model runs on a GPU (--device); the forward pass before its backend ends.
  std::unique_ptr<cuda::LoadedBackend> gpu_backend;
  std::unique_ptr<CudaForward> gpu;
  // How KV caches store keys and values (--kv-cache-dtype, resolved for the device).
  cpu::KvDType kv_dtype = cpu::KvDType::kF32;
  // Which device runs the model and why, and the KV dtype, for the start-up log.
  std::string device_summary;

  // [BOS] + ids of `text`; BOS comes from config.json, else from the tokenizer's template.
  std::vector<TokenId> EncodePrompt(const std::string& text) const;
  TokenId bos() const;
};

// The widths `spec` names for `config`: "all" (every width an image offers, or 0 for an
// unquantized model) or a comma-separated list; each checked against the model.
absl::StatusOr<std::vector<int>> ParseWidths(const std::string& spec, const ModelConfig& config);

// Where a command finds its model: --model DIR [--tokenizer FILE].
struct ModelOptions {
  std::string model_dir;
  std::string tokenizer_path;  // empty: the folder's tokenizer.json
  std::string device = "auto";  // auto: the GPU when one works, else the CPU; cpu; cuda
  // auto: fp16 on the CPU (half the memory and attention's reads of fp32, measured within
  // 0.005% of its perplexity), fp32 on a GPU, whose kernels read fp32; or fp32, bf16, fp16.
  std::string kv_cache_dtype = "auto";
};

// --model, --tokenizer, --device and --kv-cache-dtype.
void AddModelOptions(CLI::App& command, ModelOptions& options);
// --exact-kernels: the exact fp32 bitplane kernel even where the int8 one is available.
void AddExactKernelsFlag(CLI::App& command, bool& exact_kernels);

absl::StatusOr<ModelBundle> LoadModelBundle(const ModelOptions& options);

}  // namespace anyprec::cli
