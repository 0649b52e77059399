#include <algorithm>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "engine/model/width.h"
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
  DecodingOptions& d = o.decoding;
  cmd->add_option("--max-new-tokens", d.max_new_tokens, "Tokens to generate at most")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--temperature", d.sampling.temperature, "Sampling temperature; 0 is greedy")->check(CLI::Range(0.0f, 100.0f))->capture_default_str();
  cmd->add_option("--top-p", d.sampling.top_p, "Nucleus sampling mass")->check(CLI::Range(1e-6f, 1.0f))->capture_default_str();
  cmd->add_option("--top-k", d.sampling.top_k, "Sample among the k most likely tokens; 0 = all")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--repetition-penalty", d.repetition_penalty, "Above 1 discourages repeating tokens")
      ->check(CLI::Range(1e-3f, 10.0f))
      ->capture_default_str();
  cmd->add_option("--stop", d.stop, "Text that ends the output where it begins (repeat for several)")
      ->check([](const std::string& stop) { return stop.empty() ? std::string("a stop sequence must not be empty") : std::string(); });
  cmd->add_option("--seed", d.sampling.seed, "Random seed")->capture_default_str();
  cmd->add_option("--speculative-draft-bits", o.draft_bits,
                  "Decode speculatively: draft at this width, below --bits, and verify at --bits (the output is --bits')");
  cmd->add_option("--speculative-lookahead", o.lookahead, "Tokens drafted per verify step, with --speculative-draft-bits")
      ->check(CLI::Range(1, kMaxLookahead))
      ->capture_default_str();
}

int RunGenerate(const GenerateOptions& o) {
  auto opened = Engine::Open(o.engine);
  if (!opened.ok()) return ReportError(opened.status(), 1);
  const Engine& engine = **opened;
  const ModelConfig& config = engine.model().config();
  if (absl::Status s = o.decoding.sampling.Validate(); !s.ok()) return ReportError(s, 2);
  ForwardOptions forward;
  forward.bits = o.bits.value_or(ModelWidths(config).max);
  if (absl::Status s = ModelWidths(config).Check(forward.bits, "--bits", "the model's"); !s.ok()) return ReportError(s, 2);
  std::vector<TokenId> prompt = engine.EncodePrompt(o.prompt);
  if (static_cast<int>(prompt.size()) >= config.context_length()) {
    spdlog::error("prompt of {} tokens fills the model's {} positions", prompt.size(), config.context_length());
    return 1;
  }

  spdlog::info("device: {}", engine.device_summary());
  Transformer transformer(engine.model(), engine.device());
  Decoder decoder(config, engine.tokenizer(), o.decoding, std::move(prompt));
  // Room for what this run can use, not the model's whole context (which may be huge).
  KvCache cache(config, decoder.max_positions(), engine.kv_dtype());
  std::optional<SpeculativeOptions> speculative;
  if (o.draft_bits) {
    speculative = SpeculativeOptions{*o.draft_bits, o.lookahead};
    if (absl::Status s = ValidateSpeculation(config, forward.bits, *speculative); !s.ok()) return ReportError(s, 2);
  }
  std::fputs(decoder.prompt_text().c_str(), stdout);
  const absl::StatusOr<SpeculativeCounts> counts =
      GenerateAlone(transformer, cache, decoder, forward.bits, speculative, [](const DecodeStep& decoded) {
        std::fputs(decoded.text.c_str(), stdout);
        std::fflush(stdout);
      });
  if (!counts.ok()) return ReportError(counts.status(), 1);
  std::fputs(decoder.Finish().c_str(), stdout);
  std::fputc('\n', stdout);
  if (speculative) {
    spdlog::info("speculative: draft {} bits, lookahead {}: {} of {} drafted tokens accepted ({:.2f}), {} verify steps", speculative->draft_bits,
                 speculative->lookahead, counts->accepted, counts->drafted, counts->acceptance_rate(), counts->cycles);
  }
  return 0;
}

}  // namespace anyprec::cli
