#include <algorithm>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "cli/widths.h"
#include "flags/engine_flags.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/transformer.h"
#include "spdlog/spdlog.h"

namespace anyprec::cli {

void AddGenerateCommand(CLI::App& app, GenerateOptions& o) {
  CLI::App* cmd = app.add_subcommand("generate", "Stream a continuation of a prompt to stdout");
  flags::AddEngineOptions(*cmd, o.engine);
  cmd->add_option("--prompt", o.prompt, "Text to continue")->required();
  cmd->add_option("--bits", o.bits, "Width of an anyprec image to run (default: its widest)")->check(CLI::Range(0, 8));
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "Tokens to generate at most")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--temperature", o.sampling.temperature, "Sampling temperature; 0 is greedy")->check(CLI::Range(0.0f, 100.0f))->capture_default_str();
  cmd->add_option("--top-p", o.sampling.top_p, "Nucleus sampling mass")->check(CLI::Range(1e-6f, 1.0f))->capture_default_str();
  cmd->add_option("--top-k", o.sampling.top_k, "Sample among the k most likely tokens; 0 = all")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--repetition-penalty", o.repetition_penalty, "Above 1 discourages repeating tokens")
      ->check(CLI::Range(1e-3f, 10.0f))
      ->capture_default_str();
  cmd->add_option("--seed", o.sampling.seed, "Random seed")->capture_default_str();
}

int RunGenerate(const GenerateOptions& o) {
  auto engine = Engine::Open(o.engine);
  if (!engine.ok()) return ReportError(engine.status(), 1);
  const ModelConfig& config = (*engine)->model().config();
  if (absl::Status s = o.sampling.Validate(); !s.ok()) return ReportError(s, 2);
  ForwardOptions forward;
  forward.bits = o.bits >= 0 ? o.bits : (config.quantization ? config.quantization->max_bits : 0);
  forward.exact_kernels = (*engine)->exact_kernels();
  if (auto widths = ParseWidths(std::to_string(forward.bits), config); !widths.ok()) return ReportError(widths.status(), 2);
  const std::vector<TokenId> prompt = (*engine)->EncodePrompt(o.prompt);
  if (static_cast<int>(prompt.size()) >= config.max_position_embeddings) {
    spdlog::error("prompt of {} tokens fills the model's {} positions", prompt.size(), config.max_position_embeddings);
    return 1;
  }

  spdlog::info("device: {}", (*engine)->device_summary());
  Transformer transformer((*engine)->model(), (*engine)->gpu());
  // Room for what this run can use, not the model's whole context (which may be huge).
  const long wanted = static_cast<long>(prompt.size()) + o.max_new_tokens;
  KvCache cache(config, static_cast<int>(std::min<long>(wanted, config.max_position_embeddings)), (*engine)->kv_dtype());
  Sampler sampler(o.sampling);
  DecodeStream stream((*engine)->tokenizer());
  std::vector<float> logits(config.vocab_size);
  for (TokenId id : prompt) std::fputs(stream.Next(id).c_str(), stdout);

  std::vector<TokenId> history = prompt;
  std::vector<TokenId> step = prompt;
  for (int generated = 0; generated < o.max_new_tokens && cache.length() + step.size() <= static_cast<size_t>(cache.capacity());
       ++generated) {
    if (absl::Status s = transformer.Forward(step, cache, LogitsFor::kLastToken, logits, forward); !s.ok()) return ReportError(s, 1);
    if (o.repetition_penalty != 1.0f) ApplyRepetitionPenalty(logits, history, o.repetition_penalty);
    const TokenId next = sampler.Sample(logits);
    history.push_back(next);
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), next) != config.eos_token_ids.end()) break;
    std::fputs(stream.Next(next).c_str(), stdout);
    std::fflush(stdout);
    step = {next};
  }
  std::fputs(stream.Finish().c_str(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace anyprec::cli
