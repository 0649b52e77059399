#include "engine/device/cpu_device.h"

#include <array>

#include "engine/cpu/ops.h"
#include "engine/model/rope.h"

namespace anyprec {
namespace {

class CpuDevice final : public Device {
 public:
  CpuDevice(const Model& model, const CpuDeviceOptions& options)
      : config_(model.config()), weights_(model.weights()), int8_(!options.exact_kernels && cpu::HasInt8BitplaneKernel()) {
    for (const LayerWeights& layer : weights_.layers) {
      for (const anyprec::Linear* linear : layer.linears()) {
        const QuantizedMatrix& q = linear->quantized;
        bytes_.dense += sizeof(float) * (linear->dense.size() + linear->bias.size());
        if (!linear->is_quantized()) {
          prepared_.emplace_back();
          continue;
        }
        prepared_.push_back(cpu::PrepareBitplanes(q.planes, q.luts, linear->rows, linear->cols, q.seed_bits, q.max_bits, int8_));
        bytes_.planes += prepared_.back().planes.size();
        bytes_.luts += prepared_.back().int8_lut_bytes();
        for (int b = q.seed_bits; b <= q.max_bits; ++b) bytes_.luts += sizeof(float) * (static_cast<size_t>(linear->rows) << b);
      }
      bytes_.dense += sizeof(float) * (layer.attn_norm.size() + layer.ffn_norm.size() + layer.q_norm.size() + layer.k_norm.size());
    }
    bytes_.dense += weights_.embedding.bytes() + sizeof(float) * weights_.final_norm.size();
    if (!weights_.head.SameAs(weights_.embedding)) bytes_.dense += weights_.head.bytes();
  }

  WeightBytes weight_bytes() const override { return bytes_; }

  bool host_visible() const override { return true; }

  absl::StatusOr<float*> Buffer(Activations which, size_t floats) override {
    std::vector<float>& buffer = buffers_[static_cast<int>(which)];
    if (buffer.size() < floats) buffer.resize(floats);
    return buffer.data();
  }

  absl::Status BeginStep(const StepRows& rows) override {
    rows_ = &rows;
    return absl::OkStatus();
  }

  absl::Status Embed(float* x) override {
    const int h = config_.hidden_size;
    for (int t = 0; t < rows_->rows(); ++t) weights_.embedding.CopyRow(rows_->ids[t], {x + static_cast<size_t>(t) * h, static_cast<size_t>(h)});
    if (config_.embedding_scale != 1) {
      for (size_t i = 0; i < static_cast<size_t>(rows_->rows()) * h; ++i) x[i] *= config_.embedding_scale;
    }
    return absl::OkStatus();
  }

  absl::Status RmsNorm(Norm norm, int layer, const float* x, int rows, float* out) override {
    const std::span<const float> weight = weights_.NormWeight(norm, layer);
    const size_t count = static_cast<size_t>(rows) * weight.size();
    cpu::RmsNorm({x, count}, weight, config_.rms_norm_eps, {out, count});
    return absl::OkStatus();
  }

  absl::Status Linear(int layer, arch::LinearId id, const float* x, float* y) override {
    const anyprec::Linear& w = *weights_.layers[layer].linears()[arch::Index(id)];
    const int tokens = rows_->rows();
    const std::span<const float> in(x, static_cast<size_t>(tokens) * w.cols);
    const std::span<float> out(y, static_cast<size_t>(tokens) * w.rows);
    if (w.is_quantized()) {
      const cpu::BitplaneView& view = prepared_[arch::FlatIndex(layer, arch::Index(id))].view;
      if (int8_) {
        cpu::BitplaneMatMulInt8(in, rows_->bits, view, out);
      } else {
        cpu::BitplaneMatMul(in, rows_->bits, view, out);
      }
    } else {
      cpu::MatMul(in, tokens, w.dense, w.rows, w.cols, out);
    }
    for (size_t i = 0; !w.bias.empty() && i < out.size(); ++i) out[i] += w.bias[i % w.bias.size()];
    return absl::OkStatus();
  }

  absl::Status Rope(float* x, int heads) override {
    const size_t width = static_cast<size_t>(heads) * config_.head_dim;
    for (const StepRows::Sequence& s : rows_->sequences) {
      const RopeFrequencies& f = rope_.For(rows_->positions[s.first + s.count - 1] + 1);
      cpu::Rope({x + s.first * width, s.count * width}, std::span<const int>(rows_->positions).subspan(s.first, s.count), heads,
                config_.head_dim, f.inv_freq, f.attention_factor);
    }
    return absl::OkStatus();
  }

  absl::Status AppendKv(int layer, int sequence, const float* k, const float* v) override {
    const StepRows::Sequence& s = rows_->sequences[sequence];
    const size_t kv = config_.kv_dim();
    for (int i = 0; i < s.count; ++i) {
      const size_t at = static_cast<size_t>(s.first + i) * kv;
      s.cache->Store(layer, s.cache->length() + i, {k + at, kv}, {v + at, kv});
    }
    return absl::OkStatus();
  }

  absl::Status Attention(int layer, int sequence, const float* q, float* out) override {
    const StepRows::Sequence& s = rows_->sequences[sequence];
    const size_t q_dim = config_.q_dim();
    const size_t at = static_cast<size_t>(s.first) * q_dim;
    cpu::Attention({q + at, s.count * q_dim}, std::span<const int>(rows_->positions).subspan(s.first, s.count), s.cache->layer(layer),
                   {config_.num_heads, config_.num_kv_heads, config_.head_dim, config_.WindowOf(layer)}, {out + at, s.count * q_dim});
    return absl::OkStatus();
  }

  absl::Status Glu(float* gate, const float* up, size_t count) override {
    cpu::Glu(config_.mlp_activation, {gate, count}, {up, count});
    return absl::OkStatus();
  }

  absl::Status Add(float* x, const float* delta, size_t count) override {
    for (size_t i = 0; i < count; ++i) x[i] += delta[i];
    return absl::OkStatus();
  }

  absl::Status Head(const float* normed, int rows, std::span<float> logits) override {
    const Matrix& head = weights_.head;
    const std::span<const float> in(normed, static_cast<size_t>(rows) * head.cols);
    if (head.is_int8()) {
      cpu::Int8MatMul(in, rows, head.q, head.scales, head.rows, head.cols, logits);
    } else {
      cpu::MatMul(in, rows, head.values, head.rows, head.cols, logits);
    }
    return absl::OkStatus();
  }

 private:
  const ModelConfig config_;
  const ModelWeights weights_;  // a copy of the views, so that the model may move
  const bool int8_;
  std::vector<cpu::PreparedBitplanes> prepared_;  // arch::FlatIndex order; empty for dense layers
  WeightBytes bytes_;
  std::array<std::vector<float>, kActivationBuffers> buffers_;
  const StepRows* rows_ = nullptr;
  RopeTable rope_{config_};
};

}  // namespace

std::unique_ptr<Device> MakeCpuDevice(const Model& model, const CpuDeviceOptions& options) {
  return std::make_unique<CpuDevice>(model, options);
}

}  // namespace anyprec
