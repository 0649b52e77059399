// anyprec-bench-speculative: self-speculative decoding against plain decoding at the target
// width, one sequence in process (batch 1): tokens/s and the acceptance rate for each draft
// width and lookahead, the plain baseline measured between them in the same run, and what one
// step costs at each width and length (the verify step of k + 1 tokens against one decode
// token), which decides the speedup. Greedy; the speculative output is checked to equal the
// plain one. Prints markdown tables.
//
// Usage: anyprec-bench-speculative --model DIR [--target 8] [--drafts 3,4] [--lookaheads 2,4,8]
//                                  [--tokens N] [--repetitions R]
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "CLI/CLI.hpp"
#include "engine/runtime/engine.h"
#include "engine/runtime/generate.h"
#include "flags/engine_flags.h"

namespace {

using namespace anyprec;
using Clock = std::chrono::steady_clock;

constexpr const char* kPrompt = "Once upon a time, in a small village by the sea, there lived a girl named Lily.";

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Run {
  double tokens_per_second = 0;
  std::vector<TokenId> tokens;
  SpeculativeCounts counts;
};

Run Generate(const Engine& engine, int bits, int tokens, const std::optional<SpeculativeOptions>& speculative) {
  const ModelConfig& config = engine.model().config();
  DecodingOptions decoding;
  decoding.sampling.temperature = 0;
  decoding.max_new_tokens = tokens;
  decoding.ignore_eos = true;
  Transformer transformer(engine.model(), engine.device());
  Decoder decoder(config, engine.tokenizer(), decoding, engine.EncodePrompt(kPrompt));
  KvCache cache(config, decoder.max_positions(), engine.kv_dtype());
  Run run;
  const Clock::time_point start = Clock::now();
  const auto counts = GenerateAlone(transformer, cache, decoder, bits, speculative, [&](const DecodeStep& step) {
    if (step.token) run.tokens.push_back(*step.token);
  });
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!counts.ok()) {
    std::fprintf(stderr, "anyprec-bench-speculative: %s\n", std::string(counts.status().message()).c_str());
    std::exit(1);
  }
  run.counts = *counts;
  run.tokens_per_second = run.tokens.size() / seconds;
  return run;
}

// Seconds of one step of `length` tokens at `bits` after a context of `context` tokens.
double StepSeconds(const Engine& engine, int bits, int length, int context, int repetitions) {
  const ModelConfig& config = engine.model().config();
  Transformer transformer(engine.model(), engine.device());
  std::vector<TokenId> tokens = engine.EncodePrompt(kPrompt);
  tokens.resize(context + length, tokens.back());
  KvCache cache(config, context + length, engine.kv_dtype());
  std::vector<float> logits(static_cast<size_t>(length) * config.vocab_size);
  ForwardOptions forward;
  forward.bits = bits;
  std::vector<double> times;
  for (int r = 0; r < repetitions; ++r) {
    cache.Truncate(0);
    if (!transformer.Forward(std::span(tokens).first(context), cache, LogitsFor::kLastToken, std::span(logits).first(config.vocab_size), forward).ok()) std::exit(1);
    const Clock::time_point start = Clock::now();
    if (!transformer.Forward(std::span(tokens).subspan(context, length), cache, LogitsFor::kAllTokens, logits, forward).ok()) std::exit(1);
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return Median(times);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"anyprec-bench-speculative: self-speculative decoding against plain decoding, batch 1"};
  EngineOptions engine_options;
  flags::AddEngineOptions(app, engine_options);
  int target = 8;
  std::vector<int> drafts = {3, 4};
  std::vector<int> lookaheads = {2, 4, 8};
  int tokens = 128;
  int repetitions = 3;
  app.add_option("--target", target, "Target width")->capture_default_str();
  app.add_option("--drafts", drafts, "Draft widths")->delimiter(',');
  app.add_option("--lookaheads", lookaheads, "Lookaheads")->delimiter(',');
  app.add_option("--tokens", tokens, "Tokens per generation")->capture_default_str();
  app.add_option("--repetitions", repetitions, "Runs of each configuration; medians are reported")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto opened = Engine::Open(engine_options);
  if (!opened.ok()) {
    std::fprintf(stderr, "anyprec-bench-speculative: %s\n", std::string(opened.status().message()).c_str());
    return 1;
  }
  const Engine& engine = **opened;
  std::printf("device: %s\n\n", engine.device_summary().c_str());

  Generate(engine, target, tokens / 4, std::nullopt);  // warm-up
  std::vector<double> plain_rates;
  const auto plain = [&] {
    const Run run = Generate(engine, target, tokens, std::nullopt);
    plain_rates.push_back(run.tokens_per_second);
    return run;
  };
  const std::vector<TokenId> reference = plain().tokens;
  std::printf("| draft | lookahead | acceptance | tokens per verify step | tok/s | plain tok/s (same run) | speedup | output |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const int draft : drafts) {
    for (const int lookahead : lookaheads) {
      std::vector<double> fast, base;
      Run last;
      for (int r = 0; r < repetitions; ++r) {
        base.push_back(plain().tokens_per_second);
        last = Generate(engine, target, tokens, SpeculativeOptions{draft, lookahead});
        fast.push_back(last.tokens_per_second);
      }
      const double per_step = static_cast<double>(last.tokens.size() - 1) / std::max<long>(1, last.counts.cycles);
      std::printf("| %d | %d | %.2f | %.2f | %.1f | %.1f | %.2f | %s |\n", draft, lookahead, last.counts.acceptance_rate(), per_step,
                  Median(fast), Median(base), Median(fast) / Median(base), last.tokens == reference ? "equal" : "DIFFERS");
      std::fflush(stdout);
    }
  }

  const int context = 64;
  const double one = StepSeconds(engine, target, 1, context, 5 * repetitions);
  std::printf("\nOne step after %d tokens of context; cost relative to one decode token at %d bits (%.3f ms):\n\n", context, target, one * 1e3);
  std::printf("| step | ms | relative |\n|---|---|---|\n");
  for (const int draft : drafts) {
    const double s = StepSeconds(engine, draft, 1, context, 5 * repetitions);
    std::printf("| 1 token at %d bits (draft) | %.3f | %.2f |\n", draft, s * 1e3, s / one);
  }
  std::printf("| 1 token at %d bits | %.3f | 1.00 |\n", target, one * 1e3);
  for (const int lookahead : lookaheads) {
    const double s = StepSeconds(engine, target, lookahead + 1, context, 5 * repetitions);
    std::printf("| %d tokens at %d bits (verify, k = %d) | %.3f | %.2f |\n", lookahead + 1, target, lookahead, s * 1e3, s / one);
  }
  return 0;
}
