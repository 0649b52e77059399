// An Engine is a model opened for serving or evaluation: its weights, its tokenizer, the
// device that runs it and the KV cache dtype that device reads. Opening one chooses the
// device (a GPU only when its plugin loads and its forward pass matches the CPU's on a
// check), falls back to the CPU with the reason, and refuses options the device cannot
// honour, so that nothing runs silently elsewhere than the start-up line says.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cpu/kv_layer_view.h"
#include "engine/cuda/cuda_loader.h"
#include "engine/model/model.h"
#include "engine/device/device.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

enum class DeviceChoice { kAuto, kCpu, kCuda };
// "auto", "cpu" or "cuda".
std::optional<DeviceChoice> ParseDeviceChoice(std::string_view name);

struct EngineOptions {
  std::string model_dir;
  std::string tokenizer_path;  // empty: the folder's tokenizer.json, else its tokenizer.bin
  // Open a folder that has no tokenizer (and no tokenizer_path) without one, for work on token
  // ids alone (eval --token-ids); tokenizer(), bos() and EncodePrompt() then must not be called.
  bool tokenizer_optional = false;
  DeviceChoice device = DeviceChoice::kAuto;
  // How KV caches store keys and values; none: fp16 on the CPU (half the memory and reads of
  // fp32, measured within 0.005% of its perplexity), fp32 on a GPU, whose kernels read fp32.
  std::optional<cpu::KvDType> kv_dtype;
  // The exact fp32 bitplane kernel instead of the int8 one. The GPU has none: with it, auto
  // runs on the CPU and cuda is refused.
  bool exact_kernels = false;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const EngineOptions& options);

  // The device refers to the GPU backend the engine holds: an Engine stays where it was opened.
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();

  const Model& model() const { return model_; }
  bool has_tokenizer() const { return tokenizer_.has_value(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The device that runs the model, with its weights prepared: Transformer(model(), device()).
  Device& device() const { return *device_; }
  // The GPU's memory, or 0 on the CPU.
  size_t device_memory_bytes() const;
  cpu::KvDType kv_dtype() const { return kv_dtype_; }
  // Which device runs the model and why, its kernel and the KV dtype, for the start-up line.
  const std::string& device_summary() const { return device_summary_; }

  // BosToken and EncodePrompt (engine/runtime/prompt.h) for this model and tokenizer.
  TokenId bos() const;
  std::vector<TokenId> EncodePrompt(std::string_view text) const;

 private:
  Engine(Model model, std::optional<Tokenizer> tokenizer);
  absl::Status PlaceOnDevice(const EngineOptions& options);

  Model model_;
  std::optional<Tokenizer> tokenizer_;
  // The device ends before the backend it runs on.
  std::unique_ptr<cuda::LoadedBackend> gpu_backend_;
  std::unique_ptr<Device> device_;
  cpu::KvDType kv_dtype_ = cpu::KvDType::kF32;
  std::string device_summary_;
};

}  // namespace anyprec
