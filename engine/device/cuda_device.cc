#include "engine/device/cuda_device.h"

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/cuda/gpu_layout.h"
#include "engine/model/rope.h"

namespace anyprec {
namespace {

absl::Status Cuda(const std::string& error) {
  if (error.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA: ", error));
}

// A pool's keys and values on the device: [layer][block][position in block][kv_dim].
struct DeviceKv final : KvMirror {
  explicit DeviceKv(cuda::Backend& backend) : backend(backend) {}
  ~DeviceKv() override {
    if (keys != nullptr) backend.Free(keys);
    if (values != nullptr) backend.Free(values);
  }
  cuda::Backend& backend;
  float* keys = nullptr;
  float* values = nullptr;
  size_t layer_floats = 0;
};

class CudaDevice final : public Device {
 public:
  CudaDevice(const ModelConfig& config, cuda::Backend& backend) : config_(config), backend_(backend) {}
  ~CudaDevice() override {
    for (void* p : owned_) backend_.Free(p);
    for (auto& [name, buffer] : scratch_) backend_.Free(buffer.first);
  }

  absl::Status Upload(const Model& model);

  WeightBytes weight_bytes() const override { return bytes_; }
  bool host_visible() const override { return false; }

  absl::StatusOr<float*> Buffer(Activations which, size_t floats) override {
    ASSIGN_OR_RETURN(void* p, Scratch(absl::StrCat("activations ", static_cast<int>(which)), floats * sizeof(float)));
    return static_cast<float*>(p);
  }

  absl::Status BeginStep(const StepRows& rows) override;

  absl::Status Embed(float* x) override {
    return Cuda(backend_.Embed(embedding_, config_.hidden_size, ids_, rows_->rows(), config_.embedding_scale, x));
  }
  absl::Status RmsNorm(Norm norm, int layer, const float* x, int rows, float* out) override {
    const NormWeight& w = norm == Norm::kFinal ? final_norm_ : layers_[layer].norms[static_cast<int>(norm)];
    return Cuda(backend_.RmsNorm(x, rows, w.width, w.weight, config_.rms_norm_eps, out));
  }
  absl::Status Linear(int layer, arch::LinearId id, const float* x, float* y) override;
  absl::Status Rope(float* x, int heads) override;
  // Puts rope_'s current frequencies (`f`) on the device unless they are there already.
  absl::Status UploadRope(const RopeFrequencies& f);
  absl::Status AppendKv(int layer, int sequence, const float* k, const float* v) override {
    const StepRows::Sequence& s = rows_->sequences[sequence];
    const size_t at = static_cast<size_t>(s.first) * config_.kv_dim();
    return Cuda(backend_.KvAppend(k + at, v + at, s.count, positions_ + s.first, KvLayer(layer, sequence)));
  }
  absl::Status Attention(int layer, int sequence, const float* q, float* out) override {
    const StepRows::Sequence& s = rows_->sequences[sequence];
    const size_t at = static_cast<size_t>(s.first) * config_.q_dim();
    return Cuda(backend_.Attention(q + at, s.count, positions_ + s.first, rows_->positions[s.first + s.count - 1], KvLayer(layer, sequence),
                                   config_.num_heads, config_.num_kv_heads, config_.head_dim, config_.WindowOf(layer), out + at));
  }
  absl::Status Glu(float* gate, const float* up, size_t count) override {
    return Cuda(backend_.Glu(config_.mlp_activation, gate, up, count));
  }
  absl::Status Add(float* x, const float* delta, size_t count) override { return Cuda(backend_.Add(x, delta, count)); }
  absl::Status Head(const float* normed, int rows, std::span<float> logits) override {
    ASSIGN_OR_RETURN(void* device_logits, Scratch("logits", logits.size_bytes()));
    RETURN_IF_ERROR(Cuda(backend_.GemmF32(normed, rows, head_, config_.vocab_size, config_.hidden_size, static_cast<float*>(device_logits))));
    return Cuda(backend_.Download(logits.data(), device_logits, logits.size_bytes()));
  }

 private:
  struct DeviceLinear {
    int rows = 0;
    int cols = 0;
    cuda::DeviceBitplaneMatrix quantized;  // planes == nullptr when dense
    const float* dense = nullptr;
    const float* bias = nullptr;
  };
  struct NormWeight {
    const float* weight = nullptr;
    int width = 0;
  };
  struct DeviceLayer {
    std::array<NormWeight, 5> norms;  // by arch::Norm; kFinal unused
    std::array<DeviceLinear, arch::kLinearsPerLayer> linears;
  };

  // Rows of one width from which a linear layer runs as a dequantized GEMM, not the GEMV.
  static constexpr int kGemmRows = 32;

  absl::StatusOr<void*> Allocate(size_t bytes, size_t& tally);
  absl::StatusOr<const float*> UploadFloats(std::span<const float> host, size_t& tally);
  absl::StatusOr<DeviceLinear> UploadLinear(const anyprec::Linear& linear);
  absl::StatusOr<void*> Scratch(const std::string& name, size_t bytes);
  absl::StatusOr<int*> UploadInts(const std::string& name, std::span<const int> host);
  absl::StatusOr<DeviceKv*> MirrorOf(KvBlockPool& pool);
  cuda::DeviceKvLayer KvLayer(int layer, int sequence) const {
    const KvBlockPool& pool = rows_->sequences[sequence].cache->pool();
    const auto* kv = static_cast<const DeviceKv*>(pool.mirror());
    return {kv->keys + layer * kv->layer_floats, kv->values + layer * kv->layer_floats, pool.block_stride(), pool.block_tokens(),
            pool.row_width(), blocks_ + block_offset_[sequence]};
  }

  const ModelConfig config_;
  cuda::Backend& backend_;
  std::vector<void*> owned_;  // every weight allocation, freed with the device
  WeightBytes bytes_;
  const float* embedding_ = nullptr;
  NormWeight final_norm_;
  const float* head_ = nullptr;
  std::vector<DeviceLayer> layers_;
  std::map<std::string, std::pair<void*, size_t>> scratch_;
  // The step: its rows, and their ids, positions and block tables on the device.
  const StepRows* rows_ = nullptr;
  int* ids_ = nullptr;
  int* positions_ = nullptr;
  int* blocks_ = nullptr;
  std::vector<size_t> block_offset_;  // each sequence's table in blocks_
  RopeTable rope_{config_};
  const double* inv_freq_ = nullptr;  // rope_'s frequencies on the device, its computation `uploaded_rope_`
  int uploaded_rope_ = -1;
};

absl::StatusOr<void*> CudaDevice::Allocate(size_t bytes, size_t& tally) {
  std::string error;
  void* device = backend_.Allocate(bytes, error);
  RETURN_IF_ERROR(Cuda(error));
  owned_.push_back(device);
  tally += bytes;
  return device;
}

absl::StatusOr<const float*> CudaDevice::UploadFloats(std::span<const float> host, size_t& tally) {
  if (host.empty()) return nullptr;
  ASSIGN_OR_RETURN(void* device, Allocate(host.size_bytes(), tally));
  RETURN_IF_ERROR(Cuda(backend_.Upload(device, host.data(), host.size_bytes())));
  return static_cast<const float*>(device);
}

absl::StatusOr<CudaDevice::DeviceLinear> CudaDevice::UploadLinear(const anyprec::Linear& linear) {
  DeviceLinear d;
  d.rows = linear.rows;
  d.cols = linear.cols;
  ASSIGN_OR_RETURN(d.bias, UploadFloats(linear.bias, bytes_.dense));
  if (!linear.is_quantized()) {
    ASSIGN_OR_RETURN(d.dense, UploadFloats(linear.dense, bytes_.dense));
    return d;
  }
  const QuantizedMatrix& q = linear.quantized;
  const cuda::GpuBitplaneMatrix m = cuda::RetileForGpu(q.planes.data(), linear.rows, linear.cols, q.seed_bits, q.max_bits, q.luts.data());
  ASSIGN_OR_RETURN(void* planes, Allocate(m.planes.size() * sizeof(uint32_t), bytes_.planes));
  RETURN_IF_ERROR(Cuda(backend_.Upload(planes, m.planes.data(), m.planes.size() * sizeof(uint32_t))));
  ASSIGN_OR_RETURN(const float* luts, UploadFloats(m.luts, bytes_.luts));
  // `m` dies on return: its copies must be done, not merely queued.
  RETURN_IF_ERROR(Cuda(backend_.Synchronize()));
  d.quantized = {m.rows, m.cols, m.padded_cols, m.seed_bits, m.max_bits, static_cast<const uint32_t*>(planes), luts, {}};
  std::copy(std::begin(m.lut_offset), std::end(m.lut_offset), std::begin(d.quantized.lut_offset));
  return d;
}

absl::Status CudaDevice::Upload(const Model& model) {
  const ModelWeights& w = model.weights();
  // The GPU operators take fp32 embeddings and heads; an int8 one is widened for the upload.
  const auto upload_matrix = [this](const Matrix& m) -> absl::StatusOr<const float*> {
    if (!m.is_int8()) return UploadFloats(m.values, bytes_.dense);
    return UploadFloats(m.ToF32(), bytes_.dense);
  };
  ASSIGN_OR_RETURN(embedding_, upload_matrix(w.embedding));
  const auto upload_norm = [this](std::span<const float> weight) -> absl::StatusOr<NormWeight> {
    ASSIGN_OR_RETURN(const float* device, UploadFloats(weight, bytes_.dense));
    return NormWeight{device, static_cast<int>(weight.size())};
  };
  ASSIGN_OR_RETURN(final_norm_, upload_norm(w.final_norm));
  if (w.head.SameAs(w.embedding)) {
    head_ = embedding_;
  } else {
    ASSIGN_OR_RETURN(head_, upload_matrix(w.head));
  }
  for (const LayerWeights& l : w.layers) {
    DeviceLayer& d = layers_.emplace_back();
    for (const Norm norm : {Norm::kAttention, Norm::kMlp, Norm::kQuery, Norm::kKey}) {
      ASSIGN_OR_RETURN(d.norms[static_cast<int>(norm)], upload_norm(w.NormWeight(norm, static_cast<int>(layers_.size()) - 1)));
    }
    for (int j = 0; j < arch::kLinearsPerLayer; ++j) {
      ASSIGN_OR_RETURN(d.linears[j], UploadLinear(*l.linears()[j]));
    }
  }
  return Cuda(backend_.Synchronize());
}

absl::StatusOr<void*> CudaDevice::Scratch(const std::string& name, size_t bytes) {
  auto& [buffer, size] = scratch_[name];
  if (size >= bytes) return buffer;
  if (buffer != nullptr) backend_.Free(buffer);
  buffer = nullptr;
  size = 0;
  std::string error;
  buffer = backend_.Allocate(std::max<size_t>(bytes, 256), error);
  if (!error.empty()) return Cuda(absl::StrCat("scratch '", name, "': ", error));
  size = std::max<size_t>(bytes, 256);
  return buffer;
}

absl::StatusOr<int*> CudaDevice::UploadInts(const std::string& name, std::span<const int> host) {
  ASSIGN_OR_RETURN(void* p, Scratch(name, host.size_bytes()));
  RETURN_IF_ERROR(Cuda(backend_.Upload(p, host.data(), host.size_bytes())));
  return static_cast<int*>(p);
}

absl::StatusOr<DeviceKv*> CudaDevice::MirrorOf(KvBlockPool& pool) {
  if (pool.dtype() != cpu::KvDType::kF32) {
    return absl::FailedPreconditionError(absl::StrCat("the GPU's attention reads fp32 keys and values, not ",
                                                      std::string(cpu::KvDTypeName(pool.dtype()))));
  }
  if (pool.mirror() != nullptr) {
    auto* kv = dynamic_cast<DeviceKv*>(pool.mirror());
    if (kv == nullptr || &kv->backend != &backend_) return absl::FailedPreconditionError("a KV pool is mirrored by another device");
    return kv;
  }
  auto kv = std::make_unique<DeviceKv>(backend_);
  kv->layer_floats = static_cast<size_t>(pool.num_blocks()) * pool.block_stride();
  const size_t bytes = kv->layer_floats * config_.num_layers * sizeof(float);
  std::string error;
  kv->keys = static_cast<float*>(backend_.Allocate(bytes, error));
  if (error.empty()) kv->values = static_cast<float*>(backend_.Allocate(bytes, error));
  if (!error.empty()) return Cuda(absl::StrCat("KV mirror of ", pool.num_blocks(), " blocks: ", error));
  DeviceKv* mirror = kv.get();
  pool.set_mirror(std::move(kv));
  return mirror;
}

absl::Status CudaDevice::BeginStep(const StepRows& rows) {
  rows_ = &rows;
  // Every sequence's block table, one after another.
  std::vector<int> blocks;
  block_offset_.clear();
  for (const StepRows::Sequence& s : rows.sequences) {
    RETURN_IF_ERROR(MirrorOf(s.cache->pool()).status());
    block_offset_.push_back(blocks.size());
    blocks.insert(blocks.end(), s.cache->blocks().begin(), s.cache->blocks().end());
  }
  ASSIGN_OR_RETURN(ids_, UploadInts("ids", rows.ids));
  ASSIGN_OR_RETURN(positions_, UploadInts("positions", rows.positions));
  ASSIGN_OR_RETURN(blocks_, UploadInts("blocks", blocks));
  return absl::OkStatus();
}

absl::Status CudaDevice::UploadRope(const RopeFrequencies& f) {
  if (inv_freq_ != nullptr && uploaded_rope_ == rope_.computed()) return absl::OkStatus();
  ASSIGN_OR_RETURN(void* table, Scratch("rope", f.inv_freq.size() * sizeof(double)));
  RETURN_IF_ERROR(Cuda(backend_.Upload(table, f.inv_freq.data(), f.inv_freq.size() * sizeof(double))));
  inv_freq_ = static_cast<const double*>(table);
  uploaded_rope_ = rope_.computed();
  return absl::OkStatus();
}

absl::Status CudaDevice::Rope(float* x, int heads) {
  if (!rope_.dynamic()) {  // one table for every row of the step: one launch
    const RopeFrequencies& f = rope_.For(0);
    RETURN_IF_ERROR(UploadRope(f));
    return Cuda(backend_.Rope(x, rows_->rows(), positions_, heads, config_.head_dim, inv_freq_, config_.rotary_dim, f.attention_factor));
  }
  // Dynamic scaling: each sequence's table from its length, uploaded when it changes.
  const size_t width = static_cast<size_t>(heads) * config_.head_dim;
  for (const StepRows::Sequence& s : rows_->sequences) {
    const RopeFrequencies& f = rope_.For(rows_->positions[s.first + s.count - 1] + 1);
    RETURN_IF_ERROR(UploadRope(f));
    RETURN_IF_ERROR(Cuda(backend_.Rope(x + s.first * width, s.count, positions_ + s.first, heads, config_.head_dim, inv_freq_,
                                       config_.rotary_dim, f.attention_factor)));
  }
  return absl::OkStatus();
}

absl::Status CudaDevice::Linear(int layer, arch::LinearId id, const float* x, float* y) {
  const DeviceLinear& w = layers_[layer].linears[arch::Index(id)];
  const int n = rows_->rows();
  const std::span<const int> bits = rows_->bits;
  if (w.dense != nullptr) {
    RETURN_IF_ERROR(Cuda(backend_.GemmF32(x, n, w.dense, w.rows, w.cols, y)));
  } else {
    // Rows come in runs of one width (a sequence's tokens). A long run (a prompt) is one
    // GEMM on the tensor cores over the weights dequantized at its width; short ones (decode
    // tokens) go through the bitplane GEMV, up to kMaxGemvBatch rows of mixed widths a call.
    const int padded = w.quantized.padded_cols;
    int gemv_first = 0;
    const auto flush_gemv = [&](int end) -> absl::Status {
      if (end <= gemv_first) return absl::OkStatus();
      const int rows = end - gemv_first;
      ASSIGN_OR_RETURN(void* half, Scratch("half", static_cast<size_t>(rows) * padded * 2));
      RETURN_IF_ERROR(Cuda(backend_.ToHalf(x + static_cast<size_t>(gemv_first) * w.cols, rows, w.cols, padded, half)));
      for (int first = 0; first < rows; first += cuda::kMaxGemvBatch) {
        const int count = std::min(cuda::kMaxGemvBatch, rows - first);
        RETURN_IF_ERROR(Cuda(backend_.BitplaneGemv(w.quantized, static_cast<const uint16_t*>(half) + static_cast<size_t>(first) * padded,
                                                   cuda::Activation::kF16, bits.subspan(gemv_first + first, count),
                                                   y + static_cast<size_t>(gemv_first + first) * w.rows)));
      }
      return absl::OkStatus();
    };
    for (int run = 0; run < n;) {
      int end = run + 1;
      while (end < n && bits[end] == bits[run]) ++end;
      if (end - run >= kGemmRows) {
        RETURN_IF_ERROR(flush_gemv(run));
        const int rows = end - run;
        ASSIGN_OR_RETURN(void* weights, Scratch("dequantized", static_cast<size_t>(w.rows) * w.cols * 2));
        ASSIGN_OR_RETURN(void* half, Scratch("half_dense", static_cast<size_t>(rows) * w.cols * 2));
        RETURN_IF_ERROR(Cuda(backend_.Dequantize(w.quantized, bits[run], weights)));
        RETURN_IF_ERROR(Cuda(backend_.ToHalf(x + static_cast<size_t>(run) * w.cols, rows, w.cols, w.cols, half)));
        RETURN_IF_ERROR(Cuda(backend_.GemmF16(half, rows, weights, w.rows, w.cols, y + static_cast<size_t>(run) * w.rows)));
        gemv_first = end;
      }
      run = end;
    }
    RETURN_IF_ERROR(flush_gemv(n));
  }
  if (w.bias != nullptr) RETURN_IF_ERROR(Cuda(backend_.AddBias(y, w.bias, n, w.rows)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Device>> MakeCudaDevice(const Model& model, cuda::Backend& backend) {
  auto device = std::make_unique<CudaDevice>(model.config(), backend);
  RETURN_IF_ERROR(device->Upload(model));
  return device;
}

}  // namespace anyprec
