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
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"}) {
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

// One decoder layer's linear weights in fp32: the Fisher pass holds them all, the other passes
// one layer at a time.
size_t LayerWeightBytes(const ModelConfig& c) { return arch::LayerLinearWeights(c) * sizeof(float); }

// kFisher with fp32 sums if its pass and every layer's fp32 weights fit in 90% of the memory
// available, else with bf16 sums, else kActivation, which holds one layer at a time; says
// which and why.
Sensitivity ChooseSensitivity(const ModelConfig& c, int seq_len, AccumulatorPrecision& precision,
                              const std::function<void(const std::string&)>& progress) {
  const std::optional<size_t> available = AvailableMemoryBytes();
  const auto gib = [](size_t bytes) { return absl::StrFormat("%.2f GiB", bytes / double(1 << 30)); };
  const size_t layers = LayerWeightBytes(c) * c.num_layers;
  for (AccumulatorPrecision p : {AccumulatorPrecision::kF32, AccumulatorPrecision::kBF16}) {
    const size_t needed = layers + FisherPassBytes(c, seq_len, p);
    if (!available || needed < *available / 10 * 9) {
      precision = p;
      progress(absl::StrCat("sensitivity: fisher with ", p == AccumulatorPrecision::kF32 ? "fp32" : "bf16", " sums (its pass needs ",
                            gib(needed), " with every layer's weights; ", available ? gib(*available) + " available" : "memory unknown",
                            ")"));
      return Sensitivity::kFisher;
    }
  }
  progress(absl::StrCat("sensitivity: activation, one layer at a time (the Fisher pass needs ",
                        gib(layers + FisherPassBytes(c, seq_len, AccumulatorPrecision::kBF16)),
                        " with every layer's weights even with bf16 sums, ", gib(*available), " available; a layer takes ",
                        gib(LayerWeightBytes(c)), ")"));
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

// Measures --dense-dtype auto's choice: the model's loss on up to four calibration windows
// with its head and embedding in fp32 and in int8 rows, each form carried through the layers
// by a pass of its own.
class DenseDTypeChoice {
 public:
  // Starts the passes, or says why there is nothing to measure with (nullopt: fp32 then).
  static absl::StatusOr<std::optional<DenseDTypeChoice>> Start(Model& model, const std::optional<CalibrationText>& calibration,
                                                                const ModelQuantizeOptions& options,
                                                                const std::function<void(const std::string&)>& progress) {
    const ModelConfig& c = model.config();
    if (!calibration) return std::nullopt;
    const std::vector<TokenId>& tokens = calibration->tokens;
    const int lead = calibration->bos >= 0 ? 0 : 1;
    const int window_len = std::min(options.calibration_window, c.context_length()) - 1;
    const int windows = std::min<int>(4, tokens.size() / (std::max(window_len, 1) + lead));
    if (window_len < 1 || windows < 1) {
      progress(absl::StrCat("dense dtype: fp32 (", tokens.size(), " calibration tokens, too few to measure int8 against)"));
      return std::nullopt;
    }
    ASSIGN_OR_RETURN(const std::vector<TokenWindow> runs, PerplexityWindows(tokens, calibration->bos, windows, window_len, c.context_length()));
    DenseDTypeChoice choice(windows, window_len);
    for (const bool int8 : {false, true}) {
      RETURN_IF_ERROR(model.SetDenseInt8(int8));
      ASSIGN_OR_RETURN(LayerByLayerPass pass, LayerByLayerPass::Start(model, runs));
      choice.passes_.push_back(std::move(pass));
    }
    return choice;
  }

  absl::Status RunLayer(const Model& model, int layer) {
    for (LayerByLayerPass& pass : passes_) RETURN_IF_ERROR(pass.RunLayer(model, layer));
    return absl::OkStatus();
  }

  // After the last layer: leaves the model's head and embedding in the chosen form.
  absl::Status Choose(Model& model, const std::function<void(const std::string&)>& progress) {
    double perplexity[2];
    for (const bool int8 : {false, true}) {
      RETURN_IF_ERROR(model.SetDenseInt8(int8));
      ASSIGN_OR_RETURN(const double nll, passes_[int8].MeanNll(model));
      perplexity[int8] = std::exp(nll);
    }
    const bool int8 = perplexity[1] <= perplexity[0] * (1 + kDenseInt8Tolerance);
    RETURN_IF_ERROR(model.SetDenseInt8(int8));
    progress(absl::StrFormat("dense dtype: %s (perplexity on %d calibration windows of %d tokens: %.4f with int8, %.4f with fp32, %+.3f%%)",
                             int8 ? "int8" : "fp32", windows_, window_len_, perplexity[1], perplexity[0],
                             100 * (perplexity[1] / perplexity[0] - 1)));
    return absl::OkStatus();
  }

 private:
  DenseDTypeChoice(int windows, int window_len) : windows_(windows), window_len_(window_len) {}

  int windows_;
  int window_len_;
  std::vector<LayerByLayerPass> passes_;  // [0] fp32, [1] int8
};

}  // namespace

absl::Status QuantizeModel(const std::string& model_dir, const std::string& out_dir, const ModelQuantizeOptions& options,
                           const std::function<void(const std::string&)>& progress) {
  const QuantOptions& q = options.quant;
  if (q.max_bits < 1 || q.max_bits > 8 || (q.mode == Mode::kAnyPrecision && (q.seed_bits < 1 || q.seed_bits > q.max_bits))) {
    return absl::InvalidArgumentError(absl::StrCat("bit-widths must satisfy 1 <= seed <= max <= 8 (got seed ", q.seed_bits,
                                                   ", max ", q.max_bits, ")"));
  }
  // The layers are loaded one at a time as they are needed, and released after, so that a
  // checkpoint larger than memory can be quantized; only Fisher's pass holds them all.
  ASSIGN_OR_RETURN(Model model, Model::Load(model_dir, {.layers = false}));
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
  const bool loads_sensitivity = sensitivity == Sensitivity::kFisher && !options.load_sensitivity.empty();
  const bool measures_dense = options.dense_dtype == DenseDType::kAuto;
  // The calibration text, read when a pass needs it: the sensitivity's, or the dense dtype's
  // measurement, which does without (fp32) when there is none.
  std::optional<CalibrationText> calibration;
  if ((sensitivity != Sensitivity::kNone && !loads_sensitivity) || (measures_dense && !options.calibration_text.empty())) {
    absl::StatusOr<CalibrationText> text = ReadCalibrationText(c, model_dir, options);
    if (text.ok()) {
      calibration = *std::move(text);
    } else if (sensitivity != Sensitivity::kNone && !loads_sensitivity) {
      return text.status();
    } else {
      progress(absl::StrCat("dense dtype: fp32 (no calibration text to measure int8 against: ", text.status().message(), ")"));
    }
  } else if (measures_dense) {
    progress("dense dtype: fp32 (no calibration text to measure int8 against)");
  }

  std::optional<FisherInformation> fisher;
  if (loads_sensitivity) {
    ASSIGN_OR_RETURN(fisher, FisherInformation::Load(options.load_sensitivity, c, model.name()));
    progress(absl::StrCat("sensitivity: loaded from ", options.load_sensitivity));
  } else if (sensitivity == Sensitivity::kFisher) {
    const std::vector<TokenWindow> windows =
        DrawCalibrationWindows(calibration->tokens, calibration->bos, options.fisher.samples, seq_len, options.fisher.seed);
    if (windows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(options.calibration_text, ": ", calibration->tokens.size(),
                                                     " tokens, too few for one calibration window of ", seq_len));
    }
    if (static_cast<int>(windows.size()) < options.fisher.samples) {
      progress(absl::StrCat("calibration: the text holds only ", windows.size(), " windows of ", seq_len, " tokens, fewer than the ",
                            options.fisher.samples, " asked for; using them all"));
    }
    for (int layer = 0; layer < c.num_layers; ++layer) RETURN_IF_ERROR(model.LoadLayer(layer));
    ASSIGN_OR_RETURN(fisher, CollectFisherInformation(model, windows, precision, progress));
    fisher->provenance()["file"] = fs::path(options.calibration_text).filename().string();
    fisher->provenance()["seed"] = options.fisher.seed;
  }
  if (fisher) {
    provenance["calibration"] = fisher->provenance();
    if (!options.save_sensitivity.empty()) {
      RETURN_IF_ERROR(fisher->Save(options.save_sensitivity));
      progress(absl::StrCat("sensitivity: wrote ", options.save_sensitivity));
    }
  }

  // The calibration passes, one layer at a time: activation sensitivity and the dense dtype's
  // measurement (after Fisher's, whose pass runs the fp32 head). Before the quantization,
  // which takes the time: a failure here costs less.
  std::optional<ActivationStatistics> statistics;
  std::optional<LayerByLayerPass> activation_pass;
  if (sensitivity == Sensitivity::kActivation) {
    ASSIGN_OR_RETURN(std::vector<TokenWindow> windows, ActivationWindows(calibration->tokens, calibration->bos, options.calibration_window,
                                                                         options.calibration_tokens, c.context_length()));
    ASSIGN_OR_RETURN(activation_pass, LayerByLayerPass::Start(model, std::move(windows)));
    statistics.emplace(c);
  }
  std::optional<DenseDTypeChoice> dense_choice;
  if (options.dense_dtype != DenseDType::kAuto) {
    RETURN_IF_ERROR(model.SetDenseInt8(options.dense_dtype == DenseDType::kInt8));
    progress(absl::StrCat("dense dtype: ", options.dense_dtype == DenseDType::kInt8 ? "int8" : "fp32", " (--dense-dtype)"));
  } else {
    ASSIGN_OR_RETURN(dense_choice, DenseDTypeChoice::Start(model, calibration, options, progress));
  }
  if (activation_pass || dense_choice) {
    for (int layer = 0; layer < c.num_layers; ++layer) {
      const bool held = model.layer_loaded(layer);
      RETURN_IF_ERROR(model.LoadLayer(layer));
      if (activation_pass) RETURN_IF_ERROR(activation_pass->RunLayer(model, layer, &*statistics));
      if (dense_choice) RETURN_IF_ERROR(dense_choice->RunLayer(model, layer));
      if (!held) model.ReleaseLayer(layer);
      progress(absl::StrCat("calibration: layer ", layer + 1, "/", c.num_layers));
    }
    if (dense_choice) RETURN_IF_ERROR(dense_choice->Choose(model, progress));
  }
  if (statistics) {
    progress(absl::StrCat("calibration: ", statistics->tokens(), " tokens (BOS included) from ", options.calibration_text));
    provenance["calibration"] = {{"file", fs::path(options.calibration_text).filename().string()},
                                 {"tokens", statistics->tokens()},
                                 {"window", options.calibration_window}};
  }

  ASSIGN_OR_RETURN(ImageWriter writer, ImageWriter::Create(out_dir, model, q.seed_bits, q.max_bits));
  const auto start = std::chrono::steady_clock::now();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(model.LoadLayer(layer));
    const auto linears = model.weights().layers[layer].linears();
    std::vector<QuantizedMatrix> quantized;
    for (size_t j = 0; j < linears.size(); ++j) {
      const Linear& linear = *linears[j];
      const std::string name = arch::LayerTensor(layer, arch::kLinears[j].name);
      if (!std::all_of(linear.dense.begin(), linear.dense.end(), [](float v) { return std::isfinite(v); })) {
        return absl::InvalidArgumentError(absl::StrCat(model_dir, ": ", name, ".weight holds a non-finite value"));
      }
      const std::vector<float> sensitivity = fisher       ? fisher->Sums(layer, static_cast<int>(j))
                                             : statistics ? statistics->ColumnSensitivity(layer, arch::kLinears[j].input)
                                                          : std::vector<float>(linear.cols, 1.0f);
      const QuantizedMatrix& matrix = quantized.emplace_back(QuantizeMatrix(linear.dense, linear.rows, linear.cols, sensitivity, q));
      for (const std::vector<float>& lut : matrix.luts) {
        if (std::any_of(lut.begin(), lut.end(), [](float v) { return std::abs(v) > kMaxF16; })) {
          return absl::InvalidArgumentError(absl::StrCat(model_dir, ": ", name, " has centroids beyond the fp16 range of the image's LUTs"));
        }
      }
    }
    RETURN_IF_ERROR(writer.AddLayer(layer, quantized));
    model.ReleaseLayer(layer);
    // The layers are alike, so the mean so far times the layers left estimates the rest.
    const auto seconds = [](auto since) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count(); };
    const double mean = seconds(start) / (layer + 1);
    progress(absl::StrFormat("layer %d/%d quantized in %.1f s; about %.0f s left", layer + 1, c.num_layers, seconds(layer_start),
                             mean * (c.num_layers - layer - 1)));
  }
  RETURN_IF_ERROR(writer.Finish(TokenizerFiles(model_dir, options.tokenizer_path), provenance));
  progress(absl::StrCat("wrote ", out_dir));
  return absl::OkStatus();
}

}  // namespace anyprec::quant
