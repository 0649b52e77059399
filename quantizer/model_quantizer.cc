#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/mapped_file.h"
#include "engine/base/status_macros.h"
#include "engine/model/arch.h"
#include "engine/model/image_format.h"
#include "engine/runtime/perplexity.h"
#include "engine/runtime/prompt.h"
#include "engine/tokenizer/tokenizer.h"
#include "quantizer/calibration.h"
#include "quantizer/image_writer.h"
#include "quantizer/quantizer.h"

namespace anyprec::quant {
namespace {

namespace fs = std::filesystem;

constexpr float kMaxF16 = 65504.0f;

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kAnyPrecision: return "anyprec";
    case Mode::kIndependent: return "independent";
    case Mode::kRoundToNearest: return "rtn";
  }
  return "?";
}

// The tokenizer files an image carries: the folder's, or only the tokenizer given on the
// command line (the one calibration used), as tokenizer.json or, for llama2.c's format,
// tokenizer.bin.
std::vector<std::pair<std::string, std::string>> TokenizerFiles(const std::string& model_dir, const std::string& tokenizer_path) {
  std::vector<std::pair<std::string, std::string>> files;
  if (!tokenizer_path.empty()) {
    files.emplace_back(tokenizer_path, tokenizer_path.ends_with(".json") ? "tokenizer.json" : "tokenizer.bin");
    return files;
  }
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    if (const fs::path p = fs::path(model_dir) / name; fs::exists(p)) files.emplace_back(p.string(), name);
  }
  return files;
}

const char* SensitivityName(Sensitivity sensitivity) {
  switch (sensitivity) {
    case Sensitivity::kAuto: return "auto";
    case Sensitivity::kFisher: return "fisher";
    case Sensitivity::kActivation: return "activation";
    case Sensitivity::kNone: return "none";
  }
  return "?";
}

// MemAvailable of /proc/meminfo; nullopt where it cannot be read.
std::optional<size_t> AvailableMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

// kFisher with fp32 sums if its pass fits in 90% of the memory available, else with bf16
// sums, else kActivation; says which and why.
Sensitivity ChooseSensitivity(const ModelConfig& c, int seq_len, AccumulatorPrecision& precision,
                              const std::function<void(const std::string&)>& progress) {
  const std::optional<size_t> available = AvailableMemoryBytes();
  const auto gib = [](size_t bytes) { return absl::StrFormat("%.2f GiB", bytes / double(1 << 30)); };
  for (AccumulatorPrecision p : {AccumulatorPrecision::kF32, AccumulatorPrecision::kBF16}) {
    const size_t needed = FisherPassBytes(c, seq_len, p);
    if (!available || needed < *available / 10 * 9) {
      precision = p;
      progress(absl::StrCat("sensitivity: fisher with ", p == AccumulatorPrecision::kF32 ? "fp32" : "bf16", " sums (its pass needs ",
                            gib(needed), " beside the weights; ", available ? gib(*available) + " available" : "memory unknown", ")"));
      return Sensitivity::kFisher;
    }
  }
  progress(absl::StrCat("sensitivity: activation (the Fisher pass needs ", gib(FisherPassBytes(c, seq_len, AccumulatorPrecision::kBF16)),
                        " beside the weights even with bf16 sums; ", gib(*available), " available)"));
  return Sensitivity::kActivation;
}

// The calibration text's tokens, by the tokenizer given or the model folder's, and the BOS
// that opens a window as it opens a served prompt (engine/runtime/prompt.h; -1 for none).
struct CalibrationText {
  std::vector<TokenId> tokens;
  TokenId bos = -1;
};
absl::StatusOr<CalibrationText> ReadCalibrationText(const ModelConfig& config, const std::string& model_dir,
                                                    const ModelQuantizeOptions& options) {
  std::string tokenizer_path = options.tokenizer_path;
  if (tokenizer_path.empty()) {
    ASSIGN_OR_RETURN(tokenizer_path, Tokenizer::FindInFolder(model_dir));
  }
  ASSIGN_OR_RETURN(const Tokenizer tokenizer, Tokenizer::Load(tokenizer_path));
  ASSIGN_OR_RETURN(const std::string text, ReadTextFile(options.calibration_text));
  return CalibrationText{tokenizer.Encode(text), BosToken(config, tokenizer)};
}

// Leaves `model`'s head and embedding in the form the image is to store: as asked, or for
// kAuto int8 when the source model's perplexity on up to four calibration windows stays within
// kDenseInt8Tolerance of fp32's (the linear layers stay fp32, so only this choice moves it).
absl::Status ChooseDenseDType(Model& model, const std::string& model_dir, const ModelQuantizeOptions& options,
                              const std::function<void(const std::string&)>& progress) {
  if (options.dense_dtype != DenseDType::kAuto) {
    RETURN_IF_ERROR(model.SetDenseInt8(options.dense_dtype == DenseDType::kInt8));
    progress(absl::StrCat("dense dtype: ", options.dense_dtype == DenseDType::kInt8 ? "int8" : "fp32", " (--dense-dtype)"));
    return absl::OkStatus();
  }
  const ModelConfig& c = model.config();
  if (options.calibration_text.empty()) {
    progress("dense dtype: fp32 (no calibration text to measure int8 against)");
    return absl::OkStatus();
  }
  const absl::StatusOr<CalibrationText> calibration = ReadCalibrationText(c, model_dir, options);
  if (!calibration.ok()) {
    progress(absl::StrCat("dense dtype: fp32 (no calibration text to measure int8 against: ", calibration.status().message(), ")"));
    return absl::OkStatus();
  }
  const std::vector<TokenId>& tokens = calibration->tokens;
  const int window_len = std::min(options.calibration_window, c.context_length()) - 1;
  const int windows = std::min<int>(4, tokens.size() / (std::max(window_len, 1) + 1));
  if (window_len < 1 || windows < 1) {
    progress(absl::StrCat("dense dtype: fp32 (", tokens.size(), " calibration tokens, too few to measure int8 against)"));
    return absl::OkStatus();
  }
  double perplexity[2];
  for (const bool int8 : {false, true}) {
    RETURN_IF_ERROR(model.SetDenseInt8(int8));
    Transformer transformer(model);
    ASSIGN_OR_RETURN(const PerplexityResult result, EvaluatePerplexity(transformer, tokens, calibration->bos, windows, window_len));
    perplexity[int8] = result.perplexity;
  }
  const bool int8 = perplexity[1] <= perplexity[0] * (1 + kDenseInt8Tolerance);
  RETURN_IF_ERROR(model.SetDenseInt8(int8));
  progress(absl::StrFormat("dense dtype: %s (perplexity on %d calibration windows of %d tokens: %.4f with int8, %.4f with fp32, %+.3f%%)",
                           int8 ? "int8" : "fp32", windows, window_len, perplexity[1], perplexity[0],
                           100 * (perplexity[1] / perplexity[0] - 1)));
  return absl::OkStatus();
}

}  // namespace

absl::Status QuantizeModel(const std::string& model_dir, const std::string& out_dir, const ModelQuantizeOptions& options,
                           const std::function<void(const std::string&)>& progress) {
  const QuantOptions& q = options.quant;
  if (q.max_bits < 1 || q.max_bits > 8 || (q.mode == Mode::kAnyPrecision && (q.seed_bits < 1 || q.seed_bits > q.max_bits))) {
    return absl::InvalidArgumentError(absl::StrCat("bit-widths must satisfy 1 <= seed <= max <= 8 (got seed ", q.seed_bits,
                                                   ", max ", q.max_bits, ")"));
  }
  ASSIGN_OR_RETURN(Model model, Model::Load(model_dir));
  const ModelConfig& c = model.config();
  if (c.quantization) return absl::InvalidArgumentError(absl::StrCat(model_dir, ": is already an anyprec image"));

  Sensitivity sensitivity = q.mode == Mode::kRoundToNearest ? Sensitivity::kNone : options.sensitivity;
  AccumulatorPrecision precision = options.fisher.precision;
  const int seq_len = std::min(options.fisher.seq_len, c.context_length());
  if (sensitivity == Sensitivity::kAuto) {
    sensitivity = ChooseSensitivity(c, seq_len, precision, progress);
  }
  nlohmann::json provenance = {{"source_model", options.model_name.empty() ? model.name() : options.model_name},
                               {"mode", ModeName(q.mode)},
                               {"seed_method", q.seed_method == SeedMethod::kExact ? "exact" : "lloyd"},
                               {"sensitivity", SensitivityName(sensitivity)}};
  std::optional<ActivationStatistics> statistics;
  std::optional<FisherInformation> fisher;
  if (sensitivity == Sensitivity::kFisher && !options.load_sensitivity.empty()) {
    ASSIGN_OR_RETURN(fisher, FisherInformation::Load(options.load_sensitivity, c, model.name()));
    progress(absl::StrCat("sensitivity: loaded from ", options.load_sensitivity));
  } else if (sensitivity == Sensitivity::kFisher) {
    ASSIGN_OR_RETURN(const CalibrationText calibration, ReadCalibrationText(c, model_dir, options));
    const std::vector<TokenId>& tokens = calibration.tokens;
    const std::vector<CalibrationWindow> windows =
        DrawCalibrationWindows(tokens, calibration.bos, options.fisher.samples, seq_len, options.fisher.seed);
    if (windows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(options.calibration_text, ": ", tokens.size(),
                                                     " tokens, too few for one calibration window of ", seq_len));
    }
    if (static_cast<int>(windows.size()) < options.fisher.samples) {
      progress(absl::StrCat("calibration: the text holds only ", windows.size(), " windows of ", seq_len, " tokens, fewer than the ",
                            options.fisher.samples, " asked for; using them all"));
    }
    ASSIGN_OR_RETURN(fisher, CollectFisherInformation(model, windows, precision, progress));
    fisher->provenance()["file"] = fs::path(options.calibration_text).filename().string();
    fisher->provenance()["seed"] = options.fisher.seed;
  } else if (sensitivity == Sensitivity::kActivation) {
    ASSIGN_OR_RETURN(const CalibrationText calibration, ReadCalibrationText(c, model_dir, options));
    ASSIGN_OR_RETURN(statistics, CollectActivationStatistics(model, calibration.tokens, calibration.bos, options.calibration_window,
                                                             options.calibration_tokens));
    progress(absl::StrCat("calibration: ", statistics->tokens(), " tokens (BOS included) from ", options.calibration_text));
    provenance["calibration"] = {{"file", fs::path(options.calibration_text).filename().string()},
                                 {"tokens", statistics->tokens()},
                                 {"window", options.calibration_window}};
  }
  if (fisher) {
    provenance["calibration"] = fisher->provenance();
    if (!options.save_sensitivity.empty()) {
      RETURN_IF_ERROR(fisher->Save(options.save_sensitivity));
      progress(absl::StrCat("sensitivity: wrote ", options.save_sensitivity));
    }
  }

  // Before the layers, which take the time: a failure here costs seconds. After calibration,
  // whose passes run the fp32 head.
  RETURN_IF_ERROR(ChooseDenseDType(model, model_dir, options, progress));
  ImageContents image;
  image.source = &model;
  image.provenance = provenance;
  image.tokenizer_files = TokenizerFiles(model_dir, options.tokenizer_path);
  const auto start = std::chrono::steady_clock::now();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    const auto linears = model.weights().layers[layer].linears();
    for (size_t j = 0; j < linears.size(); ++j) {
      const Linear& linear = *linears[j];
      const std::string name = arch::LayerTensor(layer, arch::kLinears[j].name);
      if (!std::all_of(linear.dense.begin(), linear.dense.end(), [](float v) { return std::isfinite(v); })) {
        return absl::InvalidArgumentError(absl::StrCat(model_dir, ": ", name, ".weight holds a non-finite value"));
      }
      const std::vector<float> sensitivity = fisher       ? fisher->Sums(layer, static_cast<int>(j))
                                             : statistics ? statistics->ColumnSensitivity(layer, arch::kLinears[j].input)
                                                          : std::vector<float>(linear.cols, 1.0f);
      QuantizedMatrix& quantized = image.linears.emplace_back(QuantizeMatrix(linear.dense, linear.rows, linear.cols, sensitivity, q));
      for (const std::vector<float>& lut : quantized.luts) {
        if (std::any_of(lut.begin(), lut.end(), [](float v) { return std::abs(v) > kMaxF16; })) {
          return absl::InvalidArgumentError(absl::StrCat(model_dir, ": ", name, " has centroids beyond the fp16 range of the image's LUTs"));
        }
      }
    }
    // The layers are alike, so the mean so far times the layers left estimates the rest.
    const auto seconds = [](auto since) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count(); };
    const double mean = seconds(start) / (layer + 1);
    progress(absl::StrFormat("layer %d/%d quantized in %.1f s; about %.0f s left", layer + 1, c.num_layers, seconds(layer_start),
                             mean * (c.num_layers - layer - 1)));
  }
  RETURN_IF_ERROR(WriteImage(out_dir, image));
  progress(absl::StrCat("wrote ", out_dir));
  return absl::OkStatus();
}

}  // namespace anyprec::quant
