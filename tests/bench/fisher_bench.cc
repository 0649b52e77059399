// anyprec-bench-fisher: seconds per calibration window and peak memory of the Fisher pass
// (forward, backward, squared-gradient sums) on a model folder, with windows of random
// token ids, so that synthetic models without a tokenizer can be measured too.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "CLI/CLI.hpp"
#include "quantizer/fisher.h"

int main(int argc, char** argv) {
  CLI::App app{"anyprec-bench-fisher: time the Fisher pass per calibration window"};
  std::string model_dir;
  int samples = 4;
  int seq_len = 512;
  std::string accumulator = "fp32";
  app.add_option("--model", model_dir, "Hugging Face model folder")->required()->check(CLI::ExistingDirectory);
  app.add_option("--samples", samples, "Windows to time (the first is a warm-up)")->check(CLI::Range(2, 10000))->capture_default_str();
  app.add_option("--seq-len", seq_len, "Tokens per window")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  app.add_option("--accumulator", accumulator, "fp32 or bf16 sums")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto model = anyprec::Model::Load(model_dir);
  if (!model.ok()) {
    std::fprintf(stderr, "anyprec-bench-fisher: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const anyprec::ModelConfig& c = model->config();
  std::mt19937_64 rng(1);
  std::vector<anyprec::TokenId> text(static_cast<size_t>(samples) * seq_len);
  for (anyprec::TokenId& id : text) id = static_cast<anyprec::TokenId>(rng() % c.vocab_size);
  const auto windows = anyprec::quant::DrawCalibrationWindows(text, std::max(c.bos_token_id, 0), samples, seq_len, 0);
  const auto precision = accumulator == "bf16" ? anyprec::quant::AccumulatorPrecision::kBF16 : anyprec::quant::AccumulatorPrecision::kF32;

  std::vector<double> seconds;
  auto last = std::chrono::steady_clock::now();
  const auto fisher = anyprec::quant::CollectFisherInformation(*model, windows, precision, [&](const std::string&) {
    const auto now = std::chrono::steady_clock::now();
    seconds.push_back(std::chrono::duration<double>(now - last).count());
    last = now;
  });
  if (!fisher.ok()) {
    std::fprintf(stderr, "anyprec-bench-fisher: %s\n", std::string(fisher.status().message()).c_str());
    return 1;
  }
  seconds.erase(seconds.begin());  // the warm-up window allocates everything
  std::sort(seconds.begin(), seconds.end());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  long parameters = 0;
  for (const auto& layer : model->weights().layers) {
    for (const anyprec::Linear* linear : layer.linears()) parameters += static_cast<long>(linear->dense.size());
  }
  std::printf("| %s | %.1fM | %d | %s | %.3f | %.1f | %.1f |\n", model->name().c_str(), parameters / 1e6, seq_len, accumulator.c_str(),
              seconds[seconds.size() / 2], anyprec::quant::FisherPassBytes(c, seq_len, precision) / 1048576.0,
              usage.ru_maxrss / 1024.0);
  return 0;
}
