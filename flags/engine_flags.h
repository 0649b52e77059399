// The flags that open an Engine (engine/runtime/engine.h), shared by every executable that
// runs a model.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "engine/runtime/engine.h"

namespace anyprec::flags {

// --model, --tokenizer, --device, --kv-cache-dtype and --exact-kernels, into `options`.
inline void AddEngineOptions(CLI::App& command, EngineOptions& options) {
  command.add_option("--model", options.model_dir, "Hugging Face model folder or anyprec image")
      ->required()
      ->check(CLI::ExistingDirectory);
  command
      .add_option("--tokenizer", options.tokenizer_path, "tokenizer.json or llama2.c tokenizer.bin (default: the model's tokenizer.json)")
      ->check(CLI::ExistingFile);
  command
      .add_option_function<std::string>(
          "--device", [&options](const std::string& name) { options.device = *ParseDeviceChoice(name); },
          "auto (the GPU when one works, else the CPU), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->default_str("auto");
  command
      .add_option_function<std::string>(
          "--kv-cache-dtype",
          [&options](const std::string& name) { options.kv_dtype = name == "auto" ? std::nullopt : cpu::ParseKvDType(name); },
          "How the KV cache stores keys and values: auto (fp16 on the CPU, fp32 on a GPU), fp32, bf16 or fp16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp16"}))
      ->default_str("auto");
  command.add_flag("--exact-kernels", options.exact_kernels,
                   "Run bitplane layers on the exact fp32 kernel, not the int8 one (about 1% off; CPU only)");
}

}  // namespace anyprec::flags
