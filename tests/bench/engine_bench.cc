// anyprec-bench: throughput of the fp32 CPU engine and the tokenizers on the shared models.
// Run from the repository root; results are recorded in docs/BENCHMARKS.md.
#include <omp.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/base/mapped_file.h"
#include "engine/cpu/ops.h"
#include "engine/runtime/transformer.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {
namespace {

std::string Shared(const std::string& relative) {
  const char* env = std::getenv("ANYPREC_SHARED");
  return std::string(env != nullptr ? env : ANYPREC_DEFAULT_SHARED_DIR) + "/" + relative;
}

template <typename T>
T OrDie(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "anyprec-bench: %s\n", std::string(value.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*value);
}

const Model& TinyStories() {
  static const Model model = OrDie(Model::Load(Shared("models/TinyStories-656K")));
  return model;
}

// One window of the perplexity protocol: 512 tokens at once, logits for all of them.
void BM_Prefill(benchmark::State& state) {
  const Model& model = TinyStories();
  const int tokens = static_cast<int>(state.range(0));
  Transformer transformer(model);
  KvCache cache(model.config(), tokens);
  std::vector<TokenId> input(tokens, 100);
  std::vector<float> logits(static_cast<size_t>(tokens) * model.config().vocab_size);
  for (auto _ : state) {
    cache.Clear();
    benchmark::DoNotOptimize(transformer.Forward(input, cache, LogitsFor::kAllTokens, logits));
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Prefill)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// Decode steps at positions 16..511, one token at a time after a 16-token prompt.
void BM_Decode(benchmark::State& state) {
  const Model& model = TinyStories();
  Transformer transformer(model);
  KvCache cache(model.config(), model.config().max_position_embeddings);
  const std::vector<TokenId> prompt(16, 100);
  std::vector<float> logits(model.config().vocab_size);
  const TokenId next = 200;
  for (auto _ : state) {
    if (cache.length() == cache.capacity() || cache.length() == 0) {
      state.PauseTiming();
      cache.Clear();
      benchmark::DoNotOptimize(transformer.Forward(prompt, cache, LogitsFor::kLastToken, logits));
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(transformer.Forward({&next, 1}, cache, LogitsFor::kLastToken, logits));
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Encoding of WikiText-2 test (1.29 MB) as one string, on one core.
void BM_Tokenize(benchmark::State& state, const std::string& tokenizer_path) {
  const Tokenizer tokenizer = OrDie(Tokenizer::Load(Shared(tokenizer_path)));
  const std::string text = OrDie(ReadTextFile(Shared("data/wikitext-2-raw/wiki.test.raw")));
  for (auto _ : state) benchmark::DoNotOptimize(tokenizer.Encode(text));
  state.SetBytesProcessed(static_cast<int64_t>(text.size()) * state.iterations());
}
BENCHMARK_CAPTURE(BM_Tokenize, tinystories_656k_spm_bpe, std::string("models/TinyStories-656K/tokenizer.json"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, llama2c_tok512, std::string("models/stories260K/tok512.bin"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, gpt2_byte_level, std::string("tokenizers/gpt2/tokenizer.json"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, mistral_metaspace, std::string("tokenizers/mistral-7b-v0.1/tokenizer.json"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, llama3_split_byte_level, std::string("tokenizers/llama-3.1/tokenizer.json"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, qwen3_nfc_split_byte_level, std::string("tokenizers/qwen3/tokenizer.json"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, gemma3_spm_bpe, std::string("tokenizers/gemma3/tokenizer.json"))->Unit(benchmark::kMillisecond);

// fp32 GEMV, 4096x4096, batch 1: the bandwidth baseline that quantized kernels are held
// against. Streamed: rotates over 20 distinct matrices (1.25 GiB), as a decode step meets
// its weights; cache-hot: one 1024x1024 matrix again and again.
void BM_GemvF32(benchmark::State& state) {
  const bool streamed = state.range(0) != 0;
  const int rows = streamed ? 4096 : 1024;
  const int cols = rows;
  const int matrices = streamed ? 20 : 1;
  std::vector<std::vector<float>> weights(matrices, std::vector<float>(static_cast<size_t>(rows) * cols));
  std::mt19937 rng(1);
  for (auto& w : weights) {
    for (float& v : w) v = static_cast<float>(rng() % 1000) * 1e-3f;
  }
  std::vector<float> x(cols, 1.0f);
  std::vector<float> y(rows);
  int next = 0;
  for (auto _ : state) {
    cpu::MatMul(x, 1, weights[next], rows, cols, y);
    benchmark::ClobberMemory();
    next = (next + 1) % matrices;
  }
  state.SetBytesProcessed(static_cast<int64_t>(rows) * cols * sizeof(float) * state.iterations());
  state.SetLabel(streamed ? "4096x4096 streamed from DRAM" : "1024x1024 cache-hot");
}
BENCHMARK(BM_GemvF32)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace anyprec

BENCHMARK_MAIN();
