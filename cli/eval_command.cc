#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "spdlog/spdlog.h"
#include "cli/widths.h"
#include "engine/base/mapped_file.h"
#include "engine/runtime/perplexity.h"
#include "flags/engine_flags.h"
#include "nlohmann/json.hpp"

namespace anyprec::cli {

void AddEvalCommand(CLI::App& app, EvalOptions& o) {
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity of a model on a text file");
  flags::AddEngineOptions(*cmd, o.engine);
  cmd->add_option("--bits", o.bits, "Widths to evaluate: comma-separated (e.g. 3,4,8) or all; 0 is an unquantized model")
      ->capture_default_str();
  cmd->add_option("--text", o.text_path, "UTF-8 text, tokenized whole without BOS")->required()->check(CLI::ExistingFile);
  cmd->add_option("--windows", o.windows, "Windows to evaluate (K)")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--window-len", o.window_len, "Tokens per window; each runs as [BOS] + window")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_flag("--json", o.json, "One JSON line per evaluated precision: {\"bits\", \"ppl\", \"tokens\"}");
}

int RunEval(const EvalOptions& o) {
  auto opened = Engine::Open(o.engine);
  if (!opened.ok()) return ReportError(opened.status(), 1);
  const Engine& engine = **opened;
  auto text = ReadTextFile(o.text_path);
  if (!text.ok()) return ReportError(text.status(), 1);
  const std::vector<TokenId> tokens = engine.tokenizer().Encode(*text);
  spdlog::info("device: {}", engine.device_summary());
  Transformer transformer(engine.model(), engine.device());
  const bool show_progress = ::isatty(STDERR_FILENO);
  const auto progress = [show_progress](int done, int total) {
    if (show_progress) std::fprintf(stderr, "\rwindow %d/%d%s", done, total, done == total ? "\n" : "");
  };
  auto widths = ParseWidths(o.bits, engine.model().config());
  if (!widths.ok()) return ReportError(widths.status(), 2);
  for (const int bits : *widths) {
    auto result = EvaluatePerplexity(transformer, tokens, engine.bos(), o.windows, o.window_len, {bits}, engine.kv_dtype(), progress);
    if (!result.ok()) return ReportError(result.status(), 1);
    if (o.json) {
      const nlohmann::json line = {{"bits", bits}, {"ppl", result->perplexity}, {"tokens", result->tokens}};
      std::printf("%s\n", line.dump().c_str());
    } else {
      std::printf("%s: perplexity %.4f over %ld tokens (%d windows of %d)\n", engine.model().LogicalName(bits).c_str(),
                  result->perplexity, result->tokens, o.windows, o.window_len);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace anyprec::cli
