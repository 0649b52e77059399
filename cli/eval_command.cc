#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <limits>
#include <sstream>

#include "cli/commands.h"
#include "spdlog/spdlog.h"
#include "cli/widths.h"
#include "absl/strings/str_cat.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/runtime/perplexity.h"
#include "flags/engine_flags.h"
#include "nlohmann/json.hpp"

namespace anyprec::cli {

void AddEvalCommand(CLI::App& app, EvalOptions& o) {
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity of a model on a text file, or its NLL on token ids");
  flags::AddEngineOptions(*cmd, o.engine);
  cmd->add_option("--bits", o.bits, "Widths to evaluate: comma-separated (e.g. 3,4,8) or all; 0 is an unquantized model")
      ->capture_default_str();
  CLI::Option_group* input = cmd->add_option_group("input", "What to evaluate: one of");
  input->add_option("--text", o.text_path, "UTF-8 text, tokenized whole without BOS")->check(CLI::ExistingFile);
  input->add_option("--token-ids", o.token_ids_path,
                    "Token ids (a JSON array, or whitespace-separated) run exactly as given: one causal pass from position 0, no BOS "
                    "added; for models without a tokenizer")
      ->check(CLI::ExistingFile);
  input->require_option(1);
  cmd->add_option("--windows", o.windows, "Windows to evaluate (K)")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--window-len", o.window_len, "Tokens per window; each runs as [BOS] + window")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_flag("--json", o.json,
                "One JSON line per evaluated precision: {\"bits\", \"ppl\", \"tokens\"}; with --token-ids {\"bits\", \"mean_nll\", "
                "\"tokens\", \"top1\": [the most likely id after each position]}");
}

namespace {

// A JSON array of ids, or ids separated by white space.
absl::StatusOr<std::vector<TokenId>> ReadTokenIds(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path));
  std::vector<TokenId> ids;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    const nlohmann::json array = nlohmann::json::parse(text, nullptr, false);
    if (!array.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON array of token ids"));
    for (const nlohmann::json& id : array) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<TokenId>::max()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": '", id.dump(), "' is not a token id"));
      }
      ids.push_back(id.get<TokenId>());
    }
    return ids;
  }
  std::istringstream words(text);
  for (std::string word; words >> word;) {
    TokenId id = 0;
    const auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), id);
    if (error != std::errc() || end != word.data() + word.size() || id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", word, "' is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

int RunEvalTokenIds(const EvalOptions& o, const Engine& engine, std::span<const int> widths) {
  auto ids = ReadTokenIds(o.token_ids_path);
  if (!ids.ok()) return ReportError(ids.status(), 1);
  const int vocab = engine.model().config().vocab_size;
  for (size_t i = 0; i < ids->size(); ++i) {
    if ((*ids)[i] >= vocab) {
      return ReportError(absl::InvalidArgumentError(absl::StrCat(o.token_ids_path, ": id ", (*ids)[i], " at index ", i,
                                                                 " is outside the model's vocabulary of ", vocab)),
                         1);
    }
  }
  Transformer transformer(engine.model(), engine.device());
  for (const int bits : widths) {
    auto result = EvaluateTokenIds(transformer, *ids, {bits}, engine.kv_dtype());
    if (!result.ok()) return ReportError(result.status(), 1);
    if (o.json) {
      const nlohmann::json line = {{"bits", bits}, {"mean_nll", result->mean_nll}, {"tokens", result->tokens}, {"top1", result->top1}};
      std::printf("%s\n", line.dump().c_str());
    } else {
      std::printf("%s: mean NLL %.6f over %ld tokens\n", engine.model().LogicalName(bits).c_str(), result->mean_nll, result->tokens);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int RunEval(const EvalOptions& o) {
  EngineOptions engine_options = o.engine;
  engine_options.tokenizer_optional = !o.token_ids_path.empty();
  auto opened = Engine::Open(engine_options);
  if (!opened.ok()) return ReportError(opened.status(), 1);
  const Engine& engine = **opened;
  spdlog::info("device: {}", engine.device_summary());
  auto widths = ParseWidths(o.bits, engine.model().config());
  if (!widths.ok()) return ReportError(widths.status(), 2);
  if (!o.token_ids_path.empty()) return RunEvalTokenIds(o, engine, *widths);
  auto text = ReadTextFile(o.text_path);
  if (!text.ok()) return ReportError(text.status(), 1);
  const std::vector<TokenId> tokens = engine.tokenizer().Encode(*text);
  Transformer transformer(engine.model(), engine.device());
  const bool show_progress = ::isatty(STDERR_FILENO);
  const auto progress = [show_progress](int done, int total) {
    if (show_progress) std::fprintf(stderr, "\rwindow %d/%d%s", done, total, done == total ? "\n" : "");
  };
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
