// The subcommands of the `anyprec` command line.
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace anyprec::cli {

struct GenerateOptions {
  std::string model_dir;
  std::string tokenizer_path;
  std::string prompt;
  int max_new_tokens = 256;
  float temperature = 0.8f;
  float top_p = 0.95f;
  int top_k = 0;
  uint64_t seed = 0;
};

struct EvalOptions {
  std::string model_dir;
  std::string tokenizer_path;
  std::string text_path;
  int windows = 8;
  int window_len = 511;
  bool json = false;
};

void AddGenerateCommand(CLI::App& app, GenerateOptions& options);
void AddEvalCommand(CLI::App& app, EvalOptions& options);

// Logs `status` as one line and returns `exit_code`.
int ReportError(const absl::Status& status, int exit_code);

// Each returns the process exit code.
int RunGenerate(const GenerateOptions& options);
int RunEval(const EvalOptions& options);

}  // namespace anyprec::cli
