// anyprec-bench-decode: the in-process timings that tests/bench/vs-llamacpp.sh sets beside
// llama-bench's: for each width of an image, prefill of a prompt, decode at batch 1 and
// decode at a larger batch (tokens/s, the median of several repetitions), and the bytes a
// token reads; plus the machine's plain read bandwidth over a buffer far larger than the
// caches. Token ids are random: speed does not depend on them. The bitplane kernel is the
// process's (ANYPREC_CPU_KERNEL picks one). Prints one JSON object per line.
//
// Usage: anyprec-bench-decode [--image DIR [--bits 3,4,...]] [--read-gib N] [--threads T]
//        anyprec-bench-decode --list-kernels
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/cpu/kernel_choice.h"
#include "engine/cpu/ops.h"
#include "engine/device/cpu_device.h"
#include "engine/model/model.h"
#include "engine/runtime/transformer.h"
#include "nlohmann/json.hpp"

namespace anyprec {
namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  int prompt_tokens = 64;
  int decode_tokens = 32;
  int batch = 16;
  int repetitions = 3;
  cpu::KvDType kv_dtype = cpu::KvDType::kF16;  // the server's default on the CPU
};

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void Print(const nlohmann::json& line) {
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

// GB/s of a sum over `bytes` of memory on all OpenMP threads: the median of 5 passes after
// one that faults the pages in.
double ReadBandwidth(size_t bytes) {
  const std::vector<uint64_t> buffer(bytes / 8, 1);
  const long words = static_cast<long>(buffer.size());
  uint64_t sink = 0;
  std::vector<double> seconds;
  for (int pass = 0; pass < 6; ++pass) {
    const Clock::time_point start = Clock::now();
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (long i = 0; i < words; i += 8) {
      const uint64_t* p = buffer.data() + i;
      sum += p[0] + p[1] + p[2] + p[3] + p[4] + p[5] + p[6] + p[7];
    }
    if (pass > 0) seconds.push_back(SecondsSince(start));
    sink += sum;
  }
  if (sink != static_cast<uint64_t>(words) * 6) std::fprintf(stderr, "read bandwidth: wrong sum\n");
  return bytes / Median(seconds) / 1e9;
}

class Bench {
 public:
  Bench(const Model& model, const Settings& settings)
      : model_(model), settings_(settings), transformer_(model), vocab_(model.config().vocab_size) {}

  // Prefill tok/s of one prompt, then decode tok/s of one sequence continuing it.
  absl::Status Single(int bits, double& prefill, double& decode) {
    const int capacity = settings_.prompt_tokens + settings_.decode_tokens;
    std::vector<float> logits(vocab_);
    ForwardOptions options;
    options.bits = bits;
    std::vector<double> prefills;
    std::vector<double> decodes;
    for (int r = 0; r < settings_.repetitions; ++r) {
      KvCache cache(model_.config(), capacity, settings_.kv_dtype);
      const std::vector<TokenId> prompt = RandomTokens(settings_.prompt_tokens);
      Clock::time_point start = Clock::now();
      if (absl::Status s = transformer_.Forward(prompt, cache, LogitsFor::kLastToken, logits, options); !s.ok()) return s;
      prefills.push_back(settings_.prompt_tokens / SecondsSince(start));
      start = Clock::now();
      for (int t = 0; t < settings_.decode_tokens; ++t) {
        const std::vector<TokenId> next = RandomTokens(1);
        if (absl::Status s = transformer_.Forward(next, cache, LogitsFor::kLastToken, logits, options); !s.ok()) return s;
      }
      decodes.push_back(settings_.decode_tokens / SecondsSince(start));
    }
    prefill = Median(prefills);
    decode = Median(decodes);
    return absl::OkStatus();
  }

  // Summed decode tok/s of settings.batch sequences stepped together, one token each per
  // step. They start from empty caches (as llama-bench's tg does): prefilling them all would
  // cost batch times the prefill, and at these lengths attention is a sliver of the work.
  absl::Status Batched(int bits, double& decode) {
    const int n = settings_.batch;
    std::vector<float> logits(static_cast<size_t>(n) * vocab_);
    std::vector<double> rates;
    for (int r = 0; r < settings_.repetitions; ++r) {
      std::vector<std::unique_ptr<KvCache>> caches;
      for (int i = 0; i < n; ++i) caches.push_back(std::make_unique<KvCache>(model_.config(), settings_.decode_tokens, settings_.kv_dtype));
      const Clock::time_point start = Clock::now();
      for (int t = 0; t < settings_.decode_tokens; ++t) {
        const std::vector<TokenId> tokens = RandomTokens(n);
        std::vector<SequenceStep> steps;
        for (int i = 0; i < n; ++i) steps.push_back({std::span<const TokenId>(&tokens[i], 1), caches[i].get(), bits});
        if (absl::Status s = transformer_.ForwardBatch(steps, logits); !s.ok()) return s;
      }
      rates.push_back(static_cast<double>(n) * settings_.decode_tokens / SecondsSince(start));
    }
    decode = Median(rates);
    return absl::OkStatus();
  }

  // Seconds the head (vocab x hidden, as the image stores it) takes for one token row on the
  // CPU device, median over the repetitions after one untimed call: the part of a decode step
  // no width makes smaller.
  double HeadSeconds() {
    const std::unique_ptr<Device> device = MakeCpuDevice(model_);
    const std::vector<float> normed(model_.config().hidden_size, 0.5f);
    std::vector<float> logits(vocab_);
    std::vector<double> seconds;
    for (int r = 0; r <= settings_.repetitions * 4; ++r) {
      const Clock::time_point start = Clock::now();
      if (!device->Head(normed.data(), 1, logits).ok()) return 0;
      if (r > 0) seconds.push_back(SecondsSince(start));
    }
    return Median(seconds);
  }

  // Two single-token steps, untimed: they fault in every page a token at `bits` reads.
  absl::Status WarmUp(int bits) {
    KvCache cache(model_.config(), 2, settings_.kv_dtype);
    std::vector<float> logits(vocab_);
    ForwardOptions options;
    options.bits = bits;
    for (int t = 0; t < 2; ++t) {
      if (absl::Status s = transformer_.Forward(RandomTokens(1), cache, LogitsFor::kLastToken, logits, options); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<TokenId> RandomTokens(int count) {
    std::uniform_int_distribution<TokenId> id(0, vocab_ - 1);
    std::vector<TokenId> tokens(count);
    for (TokenId& t : tokens) t = id(rng_);
    return tokens;
  }

  const Model& model_;
  const Settings settings_;
  Transformer transformer_;
  const int vocab_;
  std::mt19937 rng_{1};
};

int Run(int argc, char** argv) {
  CLI::App app{"anyprec-bench-decode: prefill and decode tokens/s of an image at each width, and the read bandwidth"};
  std::string image;
  std::vector<int> widths;
  double read_gib = 0;
  int threads = 0;
  bool list_kernels = false;
  Settings settings;
  app.add_option("--image", image, "anyprec image folder")->check(CLI::ExistingDirectory);
  app.add_option("--bits", widths, "Widths to time (default: all the image's)")->delimiter(',');
  app.add_option("--prompt-tokens", settings.prompt_tokens, "Prompt length for prefill")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--decode-tokens", settings.decode_tokens, "Tokens decoded per sequence")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--batch", settings.batch, "Sequences in the batched decode")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--repetitions", settings.repetitions, "Timed repetitions; the median is reported")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--read-gib", read_gib, "Also time a plain read of a buffer this large (GiB); 0: no")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "OpenMP threads (default: OpenMP's)")->check(CLI::PositiveNumber);
  std::string kv_dtype = "fp16";
  app.add_option("--kv-cache-dtype", kv_dtype, "How the KV caches store keys and values (the server's CPU default: fp16)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_flag("--list-kernels", list_kernels, "Print the ANYPREC_CPU_KERNEL values this CPU runs, fastest first, and exit");
  CLI11_PARSE(app, argc, argv);
  settings.kv_dtype = *cpu::ParseKvDType(kv_dtype);

  if (list_kernels) {
    for (const cpu::Int8Kernel k : cpu::SupportedInt8Kernels()) std::printf("%s\n", std::string(cpu::Int8KernelName(k)).c_str());
    std::printf("exact\n");
    return 0;
  }
  if (image.empty() && read_gib == 0) {
    std::fprintf(stderr, "anyprec-bench-decode: nothing to do: give --image and/or --read-gib\n");
    return 2;
  }
  if (threads > 0) omp_set_num_threads(threads);
  // The engine falls back to the exact kernel when ANYPREC_CPU_KERNEL names one this CPU
  // lacks; a benchmark must not time the wrong kernel under the requested name.
  const absl::StatusOr<cpu::KernelChoice> kernel = cpu::ChooseKernel();
  if (!kernel.ok()) {
    std::fprintf(stderr, "anyprec-bench-decode: %s\n", std::string(kernel.status().message()).c_str());
    return 1;
  }
  Print({{"kernel", kernel->summary},
         {"threads", omp_get_max_threads()},
         {"kv_cache_dtype", std::string(cpu::KvDTypeName(settings.kv_dtype))}});

  if (read_gib > 0) {
    const size_t bytes = static_cast<size_t>(read_gib * (size_t{1} << 30)) / 64 * 64;
    Print({{"read_bytes", bytes}, {"read_gb_per_s", ReadBandwidth(bytes)}});
  }
  if (image.empty()) return 0;

  absl::StatusOr<Model> model = Model::Load(image);
  if (!model.ok()) {
    std::fprintf(stderr, "anyprec-bench-decode: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const auto& quantization = model->config().quantization;
  if (!quantization) {
    std::fprintf(stderr, "anyprec-bench-decode: %s is not an anyprec image\n", image.c_str());
    return 1;
  }
  if (widths.empty()) {
    for (int b = quantization->seed_bits; b <= quantization->max_bits; ++b) widths.push_back(b);
  }
  Bench bench(*model, settings);
  const double head_seconds = bench.HeadSeconds();
  Print({{"head", std::to_string(model->weights().head.rows) + " x " + std::to_string(model->weights().head.cols)},
         {"head_bytes", model->weights().head.bytes()},
         {"head_ms_per_token", head_seconds * 1e3}});
  for (const int bits : widths) {
    double prefill = 0;
    double decode = 0;
    double batched = 0;
    absl::Status s = bench.WarmUp(bits);
    if (s.ok()) s = bench.Single(bits, prefill, decode);
    if (s.ok()) s = bench.Batched(bits, batched);
    if (!s.ok()) {
      std::fprintf(stderr, "anyprec-bench-decode: %d bits: %s\n", bits, std::string(s.message()).c_str());
      return 1;
    }
    Print({{"model", model->name()},
           {"bits", bits},
           {"bytes_per_token", model->BytesReadPerToken(bits)},
           {"prompt_tokens", settings.prompt_tokens},
           {"prefill_tok_per_s", prefill},
           {"decode_tokens", settings.decode_tokens},
           {"decode_tok_per_s", decode},
           {"head_share_of_decode", head_seconds * decode},
           {"batch", settings.batch},
           {"batch_decode_tok_per_s", batched}});
  }
  return 0;
}

}  // namespace
}  // namespace anyprec

int main(int argc, char** argv) { return anyprec::Run(argc, argv); }
