// anyprec-quantize: turn a Hugging Face Llama-family folder into one overlaid anyprec image.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "CLI/CLI.hpp"
#include "flags/parse.h"
#include "quantizer/quantizer.h"

namespace {

// The default calibration text, beside the repository in ../shared.
std::string DefaultCalibrationText() {
  const std::filesystem::path candidate = std::filesystem::path(ANYPREC_DEFAULT_SHARED_DIR) / "data/wikitext-2-raw/wiki.valid.raw";
  return std::filesystem::exists(candidate) ? candidate.string() : "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"anyprec-quantize: quantize a Hugging Face model into one any-precision image"};
  std::string model_dir;
  std::string out_dir;
  anyprec::quant::ModelQuantizeOptions options;
  std::string mode = "anyprec";
  std::string sensitivity = "auto";
  std::string accumulator = "fp32";
  std::string seed_method = "exact";
  int bits = 0;
  int threads = 0;
  app.add_option("--model", model_dir, "Hugging Face model folder")->required()->check(CLI::ExistingDirectory);
  app.add_option("--out", out_dir, "Image folder to write")->required();
  app.add_option("--model-name", options.model_name,
                 "What the image's models are called (NAME@3 ... in the server; default: the model folder's name)")
      ->check([](const std::string& name) {
        const bool good = !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) { return c > ' ' && c < 127 && c != '@'; });
        return good ? std::string() : std::string("a model name is printable ASCII without spaces or '@'");
      });
  app.add_option("--seed-bits", options.quant.seed_bits, "Width of the k-means seed (anyprec mode)")->check(CLI::Range(1, 8))->capture_default_str();
  app.add_option("--max-bits", options.quant.max_bits, "Widest model in the image (anyprec mode)")->check(CLI::Range(1, 8))->capture_default_str();
  app.add_option("--mode", mode, "anyprec: overlaid seed..max image; independent: k-means at --bits alone; rtn: round-to-nearest at --bits")
      ->check(CLI::IsMember({"anyprec", "independent", "rtn"}))
      ->capture_default_str();
  app.add_option("--bits", bits, "The one width of independent and rtn images")->check(CLI::Range(1, 8));
  app.add_option("--calib", options.calibration_text, "Calibration text (default: ../shared/data/wikitext-2-raw/wiki.valid.raw)")
      ->check(CLI::ExistingFile);
  app.add_option("--calib-tokens", options.calibration_tokens, "Calibration tokens at most (activation sensitivity)")
      ->check(CLI::Range(1l, 1l << 30))
      ->capture_default_str();
  std::string dense_dtype = "auto";
  app.add_option("--dense-dtype", dense_dtype,
                 "How the head and the embedding are stored: fp32; int8 with one scale per row (a quarter of the bytes); or "
                 "auto: int8 when the model's perplexity on the calibration text stays within 0.1% of fp32's")
      ->check(CLI::IsMember({"auto", "fp32", "int8"}))
      ->capture_default_str();
  app.add_option("--sensitivity", sensitivity,
                 "Per-weight sample weights: fisher (squared loss gradients, SqueezeLLM), activation (sum of squared "
                 "inputs), none, or auto (fisher when its pass fits in memory, else activation)")
      ->check(CLI::IsMember({"auto", "fisher", "activation", "none"}))
      ->capture_default_str();
  app.add_option("--calib-samples", options.fisher.samples, "Fisher: calibration windows (fewer if the text is shorter)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--calib-seq-len", options.fisher.seq_len, "Fisher: tokens per window, BOS included")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  app.add_option("--calib-seed", options.fisher.seed, "Fisher: seed of the draw of windows from the text")->capture_default_str();
  app.add_option("--fisher-accumulator", accumulator, "Fisher: precision of the sums; bf16 halves their memory, at a cost in accuracy")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--save-sensitivity", options.save_sensitivity, "Fisher: write the sums to this file (safetensors)");
  app.add_option("--load-sensitivity", options.load_sensitivity, "Fisher: read the sums from a --save-sensitivity file instead of running the pass")
      ->check(CLI::ExistingFile);
  app.add_option("--seed-method", seed_method, "exact: optimal k-means by dynamic programming; lloyd: k-means++ and Lloyd steps")
      ->check(CLI::IsMember({"exact", "lloyd"}))
      ->capture_default_str();
  app.add_option("--tokenizer", options.tokenizer_path, "Tokenizer for calibration when the folder has no tokenizer.json")
      ->check(CLI::ExistingFile);
  app.add_option("--threads", threads, "Worker threads (default: all cores)")->check(CLI::PositiveNumber);
  if (const auto exit_code = anyprec::flags::ParseOrExitCode(app, argc, argv)) return *exit_code;

  using anyprec::quant::Mode;
  options.quant.mode = mode == "anyprec" ? Mode::kAnyPrecision : mode == "independent" ? Mode::kIndependent : Mode::kRoundToNearest;
  const auto usage_error = [](const std::string& message) {
    std::fprintf(stderr, "anyprec-quantize: %s\n", message.c_str());
    return 2;
  };
  if (options.quant.mode != Mode::kAnyPrecision) {
    if (bits == 0) return usage_error("--mode " + mode + " needs --bits B");
    if (app.count("--seed-bits") + app.count("--max-bits") > 0) return usage_error("--seed-bits and --max-bits are for --mode anyprec");
    options.quant.seed_bits = options.quant.max_bits = bits;
  } else if (bits != 0) {
    return usage_error("--bits is for --mode independent and rtn; anyprec images take --seed-bits and --max-bits");
  } else if (options.quant.seed_bits > options.quant.max_bits) {
    return usage_error("--seed-bits must not exceed --max-bits");
  }
  options.quant.seed_method = seed_method == "exact" ? anyprec::quant::SeedMethod::kExact : anyprec::quant::SeedMethod::kLloyd;
  using anyprec::quant::Sensitivity;
  options.dense_dtype = dense_dtype == "int8"   ? anyprec::quant::DenseDType::kInt8
                        : dense_dtype == "fp32" ? anyprec::quant::DenseDType::kF32
                                                : anyprec::quant::DenseDType::kAuto;
  options.sensitivity = sensitivity == "none"         ? Sensitivity::kNone
                        : sensitivity == "activation" ? Sensitivity::kActivation
                        : sensitivity == "fisher"     ? Sensitivity::kFisher
                                                      : Sensitivity::kAuto;
  options.fisher.precision = accumulator == "bf16" ? anyprec::quant::AccumulatorPrecision::kBF16 : anyprec::quant::AccumulatorPrecision::kF32;
  const bool fisher_options = app.count("--save-sensitivity") + app.count("--load-sensitivity") + app.count("--fisher-accumulator") > 0;
  if (fisher_options && (options.sensitivity == Sensitivity::kActivation || options.sensitivity == Sensitivity::kNone)) {
    return usage_error("--save-sensitivity, --load-sensitivity and --fisher-accumulator are for --sensitivity fisher");
  }
  if (fisher_options) options.sensitivity = Sensitivity::kFisher;
  if (options.quant.mode == Mode::kRoundToNearest) options.sensitivity = Sensitivity::kNone;
  // The text also measures --dense-dtype auto's choice, which does without one (fp32).
  const bool needs_text = options.sensitivity != Sensitivity::kNone && options.load_sensitivity.empty();
  if (options.calibration_text.empty()) options.calibration_text = DefaultCalibrationText();
  if (needs_text) {
    if (options.calibration_text.empty()) {
      std::fprintf(stderr,
                   "anyprec-quantize: no calibration text: pass --calib FILE (the default, "
                   "../shared/data/wikitext-2-raw/wiki.valid.raw, is not there), or --sensitivity none\n");
      return 2;
    }
  }
  if (threads > 0) omp_set_num_threads(threads);

  const absl::Status status = anyprec::quant::QuantizeModel(model_dir, out_dir, options, [](const std::string& line) {
    std::fprintf(stderr, "anyprec-quantize: %s\n", line.c_str());
  });
  if (!status.ok()) {
    std::fprintf(stderr, "anyprec-quantize: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::fprintf(stderr, "anyprec-quantize: peak resident memory %.1f MiB\n", usage.ru_maxrss / 1024.0);
  return 0;
}
