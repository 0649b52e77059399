// anyprec-check-forward-gpu: the whole forward pass on the GPU against the CPU's exact fp32
// one on a real image: prefill logits at every width, a mixed-width batch through prefill
// and decode steps, greedy tokens; then decode tokens/s per width on the GPU against the
// CPU. Exit status: 0 all within bounds, 1 a failure, 77 no GPU (skipped).
//
// Usage: anyprec-check-forward-gpu --model IMAGE [--speed-only] [--decode-tokens N]
#include <chrono>
#include <cstdio>

#include "CLI/CLI.hpp"
#include "engine/base/relative_error.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/transformer.h"
#include "flags/engine_flags.h"

namespace anyprec {
namespace {

// The GPU runs the linear layers on fp16 activations where the CPU keeps fp32, so logits
// differ by about fp16's precision: bounded relative to the largest logit.
constexpr double kLogitBound = 2e-2;

int g_failures = 0;


void Report(const std::string& what, double error) {
  const bool pass = error <= kLogitBound;
  if (!pass) ++g_failures;
  std::printf("  %-52s max rel err %.3g (bound %.0e)  %s\n", what.c_str(), error, kLogitBound, pass ? "OK" : "FAIL");
}

void CheckPrefill(const Model& model, Transformer& cpu, Transformer& gpu, const std::vector<TokenId>& prompt, int bits) {
  const ModelConfig& c = model.config();
  std::vector<float> want(prompt.size() * c.vocab_size);
  std::vector<float> got(want.size());
  KvCache cpu_cache(c, static_cast<int>(prompt.size()));
  KvCache gpu_cache(c, static_cast<int>(prompt.size()));
  const absl::Status on_cpu = cpu.Forward(prompt, cpu_cache, LogitsFor::kAllTokens, want, ForwardOptions{bits});
  const absl::Status on_gpu = gpu.Forward(prompt, gpu_cache, LogitsFor::kAllTokens, got, ForwardOptions{bits});
  if (!on_cpu.ok() || !on_gpu.ok()) {
    Report("prefill failed: " + std::string(on_cpu.message()) + std::string(on_gpu.message()), NAN);
    return;
  }
  Report("prefill of " + std::to_string(prompt.size()) + " tokens, all logits, bits " + std::to_string(bits), MaxRelativeError(got, want));
}

// Three sequences at widths 3, 4 and the widest, in one batch sharing a block pool: a
// prefill step, then decode steps, each step's logits against the CPU's.
void CheckMixedBatch(const Model& model, Transformer& cpu, Transformer& gpu, const std::vector<TokenId>& prompt) {
  const ModelConfig& c = model.config();
  const std::vector<int> widths = {c.quantization->seed_bits, std::min(c.quantization->seed_bits + 1, c.quantization->max_bits),
                                   c.quantization->max_bits};
  KvBlockPool cpu_pool(c, 16, 64);
  KvBlockPool gpu_pool(c, 16, 64);
  std::vector<std::unique_ptr<KvCache>> cpu_caches;
  std::vector<std::unique_ptr<KvCache>> gpu_caches;
  std::vector<std::vector<TokenId>> inputs;
  for (size_t s = 0; s < widths.size(); ++s) {
    cpu_caches.push_back(std::make_unique<KvCache>(cpu_pool));
    gpu_caches.push_back(std::make_unique<KvCache>(gpu_pool));
    inputs.emplace_back(prompt.begin(), prompt.end() - static_cast<long>(s));  // different lengths
  }
  for (int step = 0; step < 6; ++step) {
    std::vector<SequenceStep> cpu_steps;
    std::vector<SequenceStep> gpu_steps;
    for (size_t s = 0; s < widths.size(); ++s) {
      const int need = cpu_caches[s]->length() + static_cast<int>(inputs[s].size());
      cpu_caches[s]->Reserve(need);
      gpu_caches[s]->Reserve(need);
      cpu_steps.push_back({inputs[s], cpu_caches[s].get(), widths[s], LogitsFor::kLastToken});
      gpu_steps.push_back({inputs[s], gpu_caches[s].get(), widths[s], LogitsFor::kLastToken});
    }
    std::vector<float> want(widths.size() * c.vocab_size);
    std::vector<float> got(want.size());
    const absl::Status on_cpu = cpu.ForwardBatch(cpu_steps, want, ForwardOptions{0});
    const absl::Status on_gpu = gpu.ForwardBatch(gpu_steps, got, ForwardOptions{0});
    if (!on_cpu.ok() || !on_gpu.ok()) {
      Report("mixed batch failed: " + std::string(on_cpu.message()) + std::string(on_gpu.message()), NAN);
      return;
    }
    Report("mixed batch {" + std::to_string(widths[0]) + "," + std::to_string(widths[1]) + "," + std::to_string(widths[2]) + "}, step " +
               std::to_string(step),
           MaxRelativeError(got, want));
    for (size_t s = 0; s < widths.size(); ++s) {
      inputs[s] = {ArgMax(std::span<const float>(want).subspan(s * c.vocab_size, c.vocab_size))};
    }
  }
}

// Greedy tokens from the GPU and the CPU; how many agree before the first difference.
int AgreeingTokens(const Model& model, Transformer& cpu, Transformer& gpu, const std::vector<TokenId>& prompt, int bits, int steps) {
  const ModelConfig& c = model.config();
  const auto greedy = [&](Transformer& t) {
    KvCache cache(c, static_cast<int>(prompt.size()) + steps);
    std::vector<float> logits(c.vocab_size);
    std::vector<TokenId> out;
    std::vector<TokenId> input = prompt;
    for (int i = 0; i < steps; ++i) {
      if (!t.Forward(input, cache, LogitsFor::kLastToken, logits, ForwardOptions{bits}).ok()) break;
      out.push_back(ArgMax(logits));
      input = {out.back()};
    }
    return out;
  };
  const std::vector<TokenId> a = greedy(cpu);
  const std::vector<TokenId> b = greedy(gpu);
  int same = 0;
  while (same < static_cast<int>(std::min(a.size(), b.size())) && a[same] == b[same]) ++same;
  return same;
}

double DecodeTokensPerSecond(const Model& model, Transformer& t, int bits, int tokens) {
  const ModelConfig& c = model.config();
  KvCache cache(c, tokens + 1);
  std::vector<float> logits(c.vocab_size);
  std::vector<TokenId> input = {c.bos_token_id >= 0 ? c.bos_token_id : 0};
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < tokens; ++i) {
    if (!t.Forward(input, cache, LogitsFor::kLastToken, logits, ForwardOptions{bits}).ok()) return 0;
    input = {ArgMax(logits)};
  }
  return tokens / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Run(int argc, char** argv) {
  CLI::App app{"anyprec-check-forward-gpu: the GPU forward pass against the CPU's"};
  EngineOptions options;
  options.device = DeviceChoice::kCuda;
  bool speed_only = false;
  int decode_tokens = 128;
  flags::AddEngineOptions(app, options);
  app.add_flag("--speed-only", speed_only, "Only decode tokens/s");
  app.add_option("--decode-tokens", decode_tokens, "Tokens per decode timing")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  if (!engine.ok()) {
    std::printf("anyprec-check-forward-gpu: SKIPPED: %s\n", std::string(engine.status().message()).c_str());
    return 77;
  }
  const Model& model = (*engine)->model();
  const ModelConfig& c = model.config();
  if (!c.quantization) {
    std::printf("anyprec-check-forward-gpu: %s is not an anyprec image\n", options.model_dir.c_str());
    return 2;
  }
  std::printf("%s on %s\n", model.name().c_str(), (*engine)->device_summary().c_str());
  Transformer cpu(model);
  Transformer cpu_exact(model, {.exact_kernels = true});
  Transformer gpu(model, (*engine)->device());
  if (!speed_only) {
    std::vector<TokenId> prompt = (*engine)->EncodePrompt("Once upon a time, there was a little dog named Max. He liked to run in the park");
    for (int b = c.quantization->seed_bits; b <= c.quantization->max_bits; ++b) CheckPrefill(model, cpu_exact, gpu, prompt, b);
    CheckMixedBatch(model, cpu_exact, gpu, prompt);
    for (const int b : {c.quantization->seed_bits, c.quantization->max_bits}) {
      std::printf("  greedy at bits %d: %d of 64 tokens agree with the CPU before the first difference\n", b,
                  AgreeingTokens(model, cpu_exact, gpu, prompt, b, 64));
    }
  }
  std::printf("\n| bits | GPU decode tok/s | CPU decode tok/s |\n|---|---|---|\n");
  for (int b = c.quantization->seed_bits; b <= c.quantization->max_bits; ++b) {
    DecodeTokensPerSecond(model, gpu, b, 8);  // warm-up
    const double on_gpu = DecodeTokensPerSecond(model, gpu, b, decode_tokens);
    const double on_cpu = DecodeTokensPerSecond(model, cpu, b, std::max(4, decode_tokens / 16));
    std::printf("| %d | %.1f | %.1f |\n", b, on_gpu, on_cpu);
  }
  std::printf("%s\n", g_failures == 0 ? "all checks passed" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace anyprec

int main(int argc, char** argv) { return anyprec::Run(argc, argv); }
