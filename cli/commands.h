// The subcommands of the `anyprec` command line.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "cli/model_bundle.h"
#include "engine/runtime/sampler.h"

namespace anyprec::cli {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  int max_new_tokens = 256;
  SamplingParams sampling;
};

struct EvalOptions {
  ModelOptions model;
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
