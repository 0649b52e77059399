#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "spdlog/spdlog.h"
#include "cli/model_bundle.h"
#include "engine/base/mapped_file.h"
#include "engine/runtime/perplexity.h"
#include "nlohmann/json.hpp"

namespace anyprec::cli {

void AddEvalCommand(CLI::App& app, EvalOptions& o) {
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity of a model on a text file");
  AddModelOptions(*cmd, o.model);
  cmd->add_option("--bits", o.bits, "Widths to evaluate: comma-separated (e.g. 3,4,8) or all; 0 is an unquantized model")
      ->capture_default_str();
  cmd->add_option("--text", o.text_path, "UTF-8 text, tokenized whole without BOS")->required()->check(CLI::ExistingFile);
  cmd->add_option("--windows", o.windows, "Windows to evaluate (K)")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--window-len", o.window_len, "Tokens per window; each runs as [BOS] + window")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  AddExactKernelsFlag(*cmd, o.exact_kernels);
  cmd->add_flag("--json", o.json, "One JSON line per evaluated precision: {\"bits\", \"ppl\", \"tokens\"}");
}

int RunEval(const EvalOptions& o) {
  auto bundle = LoadModelBundle(o.model);
  if (!bundle.ok()) return ReportError(bundle.status(), 1);
  auto text = ReadTextFile(o.text_path);
  if (!text.ok()) return ReportError(text.status(), 1);
  const std::vector<TokenId> tokens = bundle->tokenizer.Encode(*text);
  spdlog::info("device: {}", bundle->device_summary);
  Transformer transformer(bundle->model, bundle->gpu.get());
  const bool show_progress = ::isatty(STDERR_FILENO);
  const auto progress = [show_progress](int done, int total) {
    if (show_progress) std::fprintf(stderr, "\rwindow %d/%d%s", done, total, done == total ? "\n" : "");
  };
  auto widths = ParseWidths(o.bits, bundle->model.config());
  if (!widths.ok()) return ReportError(widths.status(), 2);
  for (const int bits : *widths) {
    auto result = EvaluatePerplexity(transformer, tokens, bundle->bos(), o.windows, o.window_len, {bits, o.exact_kernels}, bundle->kv_dtype, progress);
    if (!result.ok()) return ReportError(result.status(), 1);
    if (o.json) {
      const nlohmann::json line = {{"bits", bits}, {"ppl", result->perplexity}, {"tokens", result->tokens}};
      std::printf("%s\n", line.dump().c_str());
    } else {
      std::printf("%s: perplexity %.4f over %ld tokens (%d windows of %d)\n", bundle->model.LogicalName(bits).c_str(),
                  result->perplexity, result->tokens, o.windows, o.window_len);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace anyprec::cli
