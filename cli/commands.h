// The subcommands of the `anyprec` command line.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/decoder.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/generate.h"

namespace anyprec::cli {

struct GenerateOptions {
  EngineOptions engine;
  std::optional<int> bits;  // none: the widest the model serves (ModelWidths)
  std::string prompt;
  DecodingOptions decoding;
  std::optional<int> draft_bits;  // set: decode speculatively, drafting at this width
  int lookahead = kDefaultLookahead;
};

struct EvalOptions {
  EngineOptions engine;
  std::string bits = "all";  // comma-separated widths, or "all"
  std::string text_path;
  std::string token_ids_path;
  int windows = 8;
  int window_len = 511;
  bool json = false;
};

struct InspectOptions {
  std::string image_dir;
  bool json = false;
};

struct TokenizeOptions {
  std::string model_dir;       // its tokenizer, unless tokenizer_path is given
  std::string tokenizer_path;
  std::string text;
  std::string text_path;       // read instead of `text` when set
  bool no_special = false;
  bool json = false;
};

struct RenderChatOptions {
  std::string model_dir;      // its chat template and special tokens, unless template_path is given
  std::string template_path;
  std::string messages_path;  // a JSON array of messages
  bool add_generation_prompt = false;
  std::optional<std::string> bos_token;  // unset: the model's, else undefined
  std::optional<std::string> eos_token;
  std::vector<std::string> variables;  // NAME=JSON
};

struct ClientOptions {
  std::string address = "127.0.0.1:50051";
  std::string api_key;
  std::string tls_ca;  // PEM roots: talk TLS, trusting these
  float repetition_penalty = 1.0f;
  std::string prompt;
  int bits = 0;
  std::optional<int> min_bits;  // set: an adaptive width's range (bits 0)
  std::optional<int> max_bits;
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;
  double timeout_seconds = 0;
  bool list_models = false;
  bool health = false;
  bool list_tenants = false;
  std::string set_tenant;  // Admin: change this tenant's widths
  std::optional<int> tenant_default_bits;
  std::optional<int> tenant_min_bits;
  std::optional<int> tenant_max_bits;
};

struct ChatOptions {
  std::string address = "127.0.0.1:8000";
  std::string api_key;
  std::string model;  // empty: the server's first (its plain name)
  int bits = 0;
  std::string system;
  int max_tokens = 512;
  double temperature = 0.7;
  double top_p = 1.0;
  std::optional<uint64_t> seed;
};

void AddGenerateCommand(CLI::App& app, GenerateOptions& options);
void AddClientCommand(CLI::App& app, ClientOptions& options);
void AddEvalCommand(CLI::App& app, EvalOptions& options);
void AddInspectCommand(CLI::App& app, InspectOptions& options);
void AddTokenizeCommand(CLI::App& app, TokenizeOptions& options);
void AddRenderChatCommand(CLI::App& app, RenderChatOptions& options);
void AddChatCommand(CLI::App& app, ChatOptions& options);

// Logs `status` as one line and returns `exit_code`.
int ReportError(const absl::Status& status, int exit_code);

// Each returns the process exit code.
int RunGenerate(const GenerateOptions& options);
int RunEval(const EvalOptions& options);
int RunInspect(const InspectOptions& options);
int RunTokenize(const TokenizeOptions& options);
int RunRenderChat(const RenderChatOptions& options);
int RunClient(const ClientOptions& options);
int RunChat(const ChatOptions& options);

}  // namespace anyprec::cli
