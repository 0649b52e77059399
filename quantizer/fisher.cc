#include "quantizer/fisher.h"

#include <chrono>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quantizer/grad/gradient_pass.h"
#include "engine/model/float_convert.h"
#include "engine/model/arch.h"
#include "engine/model/safetensors.h"

namespace anyprec::quant {
namespace {

constexpr char kKindKey[] = "anyprec.sensitivity";
constexpr char kProvenanceKey[] = "anyprec.provenance";

std::string TensorName(int layer, int linear) { return arch::LayerTensor(layer, arch::kLinears[linear].name) + ".weight"; }

}  // namespace

std::vector<TokenWindow> DrawCalibrationWindows(std::span<const TokenId> text, TokenId bos, int samples, int seq_len,
                                                      uint64_t seed) {
  const size_t chunk = bos >= 0 ? seq_len : seq_len + 1;
  const size_t chunks = seq_len > 0 ? text.size() / chunk : 0;
  std::vector<size_t> order(chunks);
  for (size_t i = 0; i < chunks; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  const size_t drawn = std::min<size_t>(chunks, std::max(samples, 0));
  for (size_t i = 0; i < drawn; ++i) std::swap(order[i], order[i + rng() % (chunks - i)]);

  std::vector<TokenWindow> windows(drawn);
  for (size_t i = 0; i < drawn; ++i) {
    const std::span<const TokenId> tokens = text.subspan(order[i] * chunk, chunk);
    TokenWindow& w = windows[i];
    if (bos >= 0) {
      w.inputs.push_back(bos);
      w.inputs.insert(w.inputs.end(), tokens.begin(), tokens.end() - 1);
      w.targets.assign(tokens.begin(), tokens.end());
    } else {
      w.inputs.assign(tokens.begin(), tokens.end() - 1);
      w.targets.assign(tokens.begin() + 1, tokens.end());
    }
  }
  return windows;
}

FisherInformation::FisherInformation(const ModelConfig& c, AccumulatorPrecision precision)
    : precision_(precision), matrices_(arch::FlatIndex(c.num_layers, 0)) {
  for (size_t i = 0; i < matrices_.size(); ++i) {
    Matrix& m = matrices_[i];
    std::tie(m.rows, m.cols) = arch::Shape(c, static_cast<int>(i % arch::kLinearsPerLayer));
    const size_t n = static_cast<size_t>(m.rows) * m.cols;
    if (precision == AccumulatorPrecision::kF32) {
      m.f32.assign(n, 0.0f);
    } else {
      m.bf16.assign(n, 0);
    }
  }
}

size_t FisherInformation::AccumulatorBytes(const ModelConfig& c, AccumulatorPrecision precision) {
  return arch::LayerLinearWeights(c) * c.num_layers * (precision == AccumulatorPrecision::kF32 ? 4 : 2);
}

void FisherInformation::AddSquared(int layer, int linear, std::span<const float> gradient) {
  Matrix& m = matrices_[arch::FlatIndex(layer, linear)];
  const long n = static_cast<long>(gradient.size());
  if (precision_ == AccumulatorPrecision::kF32) {
    float* sums = m.f32.data();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (long i = 0; i < n; ++i) sums[i] += gradient[i] * gradient[i];
  } else {
    uint16_t* sums = m.bf16.data();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (long i = 0; i < n; ++i) sums[i] = F32ToBF16(BF16ToF32(sums[i]) + gradient[i] * gradient[i]);
  }
}

std::vector<float> FisherInformation::Sums(int layer, int linear) const {
  const Matrix& m = matrices_[arch::FlatIndex(layer, linear)];
  if (precision_ == AccumulatorPrecision::kF32) return m.f32;
  std::vector<float> out(m.bf16.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = BF16ToF32(m.bf16[i]);
  return out;
}

absl::Status FisherInformation::Save(const std::string& path) const {
  std::vector<TensorToWrite> tensors;
  const int layers = static_cast<int>(matrices_.size()) / arch::kLinearsPerLayer;
  for (int layer = 0; layer < layers; ++layer) {
    for (int linear = 0; linear < arch::kLinearsPerLayer; ++linear) {
      const Matrix& m = matrices_[arch::FlatIndex(layer, linear)];
      const std::span<const std::byte> data = precision_ == AccumulatorPrecision::kF32 ? std::as_bytes(std::span(m.f32))
                                                                                      : std::as_bytes(std::span(m.bf16));
      tensors.push_back({TensorName(layer, linear), precision_ == AccumulatorPrecision::kF32 ? DType::kF32 : DType::kBF16,
                         {m.rows, m.cols}, data});
    }
  }
  return WriteSafetensors(path, tensors, {{kKindKey, "fisher"}, {kProvenanceKey, provenance_.dump()}});
}

absl::StatusOr<FisherInformation> FisherInformation::Load(const std::string& path, const ModelConfig& config,
                                                          const std::string& model_name) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  const auto& metadata = file->metadata();
  if (auto kind = metadata.find(kKindKey); kind == metadata.end() || kind->second != "fisher") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a Fisher sensitivity file (no ", kKindKey, " = fisher)"));
  }
  nlohmann::json provenance = nlohmann::json::object();
  if (auto it = metadata.find(kProvenanceKey); it != metadata.end()) {
    provenance = nlohmann::json::parse(it->second, nullptr, false);
    if (provenance.is_discarded() || !provenance.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": its ", kProvenanceKey, " is not a JSON object"));
    }
  }
  if (const std::string source = provenance.value("source_model", ""); !source.empty() && source != model_name) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds the sensitivity of ", source, ", not of ", model_name));
  }
  const size_t expected = arch::FlatIndex(config.num_layers, 0);
  if (file->tensors().size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds ", file->tensors().size(), " tensors; a model of ",
                                                   config.num_layers, " layers needs ", expected));
  }
  const auto first = file->tensors().find(TensorName(0, 0));
  if (first == file->tensors().end() || (first->second.dtype != DType::kF32 && first->second.dtype != DType::kBF16)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": needs F32 or BF16 tensors named like ", TensorName(0, 0)));
  }
  FisherInformation fisher(config, first->second.dtype == DType::kF32 ? AccumulatorPrecision::kF32 : AccumulatorPrecision::kBF16);
  fisher.provenance_ = std::move(provenance);
  for (size_t i = 0; i < fisher.matrices_.size(); ++i) {
    const std::string name = TensorName(static_cast<int>(i) / arch::kLinearsPerLayer, static_cast<int>(i) % arch::kLinearsPerLayer);
    Matrix& m = fisher.matrices_[i];
    const auto it = file->tensors().find(name);
    if (it == file->tensors().end()) return absl::InvalidArgumentError(absl::StrCat(path, ": has no tensor ", name));
    const TensorView& t = it->second;
    if (t.dtype != first->second.dtype || t.shape != std::vector<int64_t>{m.rows, m.cols}) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", name, " is not ", DTypeName(first->second.dtype), " [", m.rows,
                                                     ", ", m.cols, "] as this model needs"));
    }
    if (fisher.precision_ == AccumulatorPrecision::kF32) {
      std::memcpy(m.f32.data(), t.data.data(), t.data.size());
    } else {
      std::memcpy(m.bf16.data(), t.data.data(), t.data.size());
    }
  }
  return fisher;
}

absl::StatusOr<FisherInformation> CollectFisherInformation(const Model& model, std::span<const TokenWindow> windows,
                                                           AccumulatorPrecision precision,
                                                           const std::function<void(const std::string&)>& progress) {
  if (windows.empty()) return absl::InvalidArgumentError("the Fisher pass needs at least one calibration window");
  FisherInformation fisher(model.config(), precision);
  grad::GradientPass<float> pass(model.config(), model.weights());
  double loss_sum = 0;
  long tokens = 0;
  for (size_t i = 0; i < windows.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    const absl::StatusOr<double> loss =
        pass.LossAndGradients(windows[i].inputs, windows[i].targets, [&](int layer, int linear, std::span<const float> gradient) {
          fisher.AddSquared(layer, linear, gradient);
        });
    if (!loss.ok()) return loss.status();
    loss_sum += *loss;
    tokens += static_cast<long>(windows[i].targets.size());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress(absl::StrFormat("fisher: window %d/%d, loss %.4f, %.2f s", i + 1, windows.size(), *loss, seconds));
  }
  fisher.provenance() = {{"source_model", model.name()},
                         {"samples", windows.size()},
                         {"tokens", tokens},
                         {"seq_len", windows.front().targets.size()},
                         {"mean_loss", loss_sum / windows.size()},
                         {"accumulator", precision == AccumulatorPrecision::kF32 ? "f32" : "bf16"}};
  return fisher;
}

size_t FisherPassBytes(const ModelConfig& config, int seq_len, AccumulatorPrecision precision) {
  return FisherInformation::AccumulatorBytes(config, precision) + grad::GradientPassBytes(config, seq_len);
}

}  // namespace anyprec::quant
