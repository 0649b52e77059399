#include "engine/runtime/cuda_forward.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/cuda/gpu_layout.h"
#include "engine/runtime/transformer.h"

namespace anyprec {
namespace {

absl::Status Cuda(const std::string& error) {
  if (error.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA: ", error));
}

}  // namespace

CudaForward::~CudaForward() {
  for (void* p : owned_) backend_.Free(p);
  for (auto& [name, buffer] : scratch_) backend_.Free(buffer.first);
}

absl::StatusOr<const float*> CudaForward::UploadFloats(std::span<const float> host) {
  if (host.empty()) return nullptr;
  std::string error;
  void* device = backend_.Allocate(host.size_bytes(), error);
  RETURN_IF_ERROR(Cuda(error));
  owned_.push_back(device);
  RETURN_IF_ERROR(Cuda(backend_.Upload(device, host.data(), host.size_bytes())));
  return static_cast<const float*>(device);
}

absl::StatusOr<CudaForward::DeviceLinear> CudaForward::UploadLinear(const anyprec::Linear& linear) {
  DeviceLinear d;
  d.rows = linear.rows;
  d.cols = linear.cols;
  ASSIGN_OR_RETURN(d.bias, UploadFloats(linear.bias));
  if (!linear.is_quantized()) {
    ASSIGN_OR_RETURN(d.dense, UploadFloats(linear.dense));
    return d;
  }
  const cuda::GpuBitplaneMatrix m = cuda::RetileForGpu(linear.quantized);
  std::string error;
  void* planes = backend_.Allocate(m.planes.size() * sizeof(uint32_t), error);
  RETURN_IF_ERROR(Cuda(error));
  owned_.push_back(planes);
  RETURN_IF_ERROR(Cuda(backend_.Upload(planes, m.planes.data(), m.planes.size() * sizeof(uint32_t))));
  ASSIGN_OR_RETURN(const float* luts, UploadFloats(m.luts));
  // `m` dies on return: its copies must be done, not merely queued.
  RETURN_IF_ERROR(Cuda(backend_.Synchronize()));
  d.quantized = {m.rows, m.cols, m.padded_cols, m.seed_bits, m.max_bits, static_cast<const uint32_t*>(planes), luts, {}};
  std::copy(std::begin(m.lut_offset), std::end(m.lut_offset), std::begin(d.quantized.lut_offset));
  return d;
}

absl::StatusOr<std::unique_ptr<CudaForward>> CudaForward::Create(const Model& model, cuda::Backend& backend) {
  std::unique_ptr<CudaForward> f(new CudaForward(model.config(), backend));
  const ModelWeights& w = model.weights();
  // The GPU operators take fp32 embeddings and heads; an int8 one is widened for the upload.
  const auto upload_matrix = [&f](const Matrix& m) -> absl::StatusOr<const float*> {
    if (!m.is_int8()) return f->UploadFloats(m.values);
    const std::vector<float> widened = m.ToF32();
    return f->UploadFloats(widened);
  };
  ASSIGN_OR_RETURN(f->embedding_, upload_matrix(w.embedding));
  ASSIGN_OR_RETURN(f->final_norm_, f->UploadFloats(w.final_norm));
  if (w.head.SameAs(w.embedding)) {
    f->head_ = f->embedding_;
  } else {
    ASSIGN_OR_RETURN(f->head_, upload_matrix(w.head));
  }
  for (const LayerWeights& l : w.layers) {
    DeviceLayer d;
    ASSIGN_OR_RETURN(d.attn_norm, f->UploadFloats(l.attn_norm));
    ASSIGN_OR_RETURN(d.ffn_norm, f->UploadFloats(l.ffn_norm));
    ASSIGN_OR_RETURN(d.wq, f->UploadLinear(l.wq));
    ASSIGN_OR_RETURN(d.wk, f->UploadLinear(l.wk));
    ASSIGN_OR_RETURN(d.wv, f->UploadLinear(l.wv));
    ASSIGN_OR_RETURN(d.wo, f->UploadLinear(l.wo));
    ASSIGN_OR_RETURN(d.w_gate, f->UploadLinear(l.w_gate));
    ASSIGN_OR_RETURN(d.w_up, f->UploadLinear(l.w_up));
    ASSIGN_OR_RETURN(d.w_down, f->UploadLinear(l.w_down));
    f->layers_.push_back(d);
  }
  RETURN_IF_ERROR(Cuda(backend.Synchronize()));
  return f;
}

absl::StatusOr<void*> CudaForward::Scratch(const std::string& name, size_t bytes) {
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

absl::StatusOr<CudaForward::DeviceKv*> CudaForward::KvFor(const KvBlockPool& pool) {
  const ModelConfig& c = config_;
  const size_t layer_floats = static_cast<size_t>(pool.num_blocks()) * pool.block_stride();
  DeviceKv& kv = kv_[&pool];
  if (kv.keys != nullptr && kv.layer_floats == layer_floats) return &kv;
  // A new pool (or a new one at a freed one's address): its mirror, sized like it.
  if (kv.keys != nullptr) {
    backend_.Free(kv.keys);
    backend_.Free(kv.values);
  }
  std::string error;
  kv.keys = static_cast<float*>(backend_.Allocate(layer_floats * c.num_layers * sizeof(float), error));
  if (!error.empty()) return Cuda(absl::StrCat("KV mirror of ", pool.num_blocks(), " blocks: ", error));
  kv.values = static_cast<float*>(backend_.Allocate(layer_floats * c.num_layers * sizeof(float), error));
  if (!error.empty()) {
    backend_.Free(kv.keys);
    kv.keys = nullptr;
    return Cuda(error);
  }
  kv.layer_floats = layer_floats;
  return &kv;
}

absl::Status CudaForward::Linear(const DeviceLinear& w, const float* x, int n, std::span<const int> bits, float* y) {
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

absl::Status CudaForward::CheckAgainstCpu(const Model& model) {
  // The GPU feeds fp16 activations to the linear layers, the CPU int8 or fp32 ones.
  constexpr double kLogitBound = 3e-2;
  const ModelConfig& c = model.config();
  std::vector<TokenId> prompt = {c.bos_token_id >= 0 ? c.bos_token_id : 0};
  for (int i = 1; i < 8; ++i) prompt.push_back((prompt.back() * 31 + 7) % c.vocab_size);
  std::vector<int> widths = {0};
  if (c.quantization) widths = {c.quantization->seed_bits, c.quantization->max_bits};
  Transformer cpu(model);
  Transformer gpu(model, this);
  for (const int bits : widths) {
    ForwardOptions options;
    options.bits = bits;
    KvCache cpu_cache(c, static_cast<int>(prompt.size()));
    KvCache gpu_cache(c, static_cast<int>(prompt.size()));
    std::vector<float> want(static_cast<size_t>(c.vocab_size) * prompt.size());
    std::vector<float> got(want.size());
    RETURN_IF_ERROR(cpu.Forward(prompt, cpu_cache, LogitsFor::kAllTokens, want, options));
    RETURN_IF_ERROR(gpu.Forward(prompt, gpu_cache, LogitsFor::kAllTokens, got, options));
    double scale = 0;
    double error = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, std::abs(static_cast<double>(want[i])));
      const double e = std::abs(static_cast<double>(got[i]) - want[i]);
      error = std::isnan(e) ? INFINITY : std::max(error, e);
    }
    if (!(error <= kLogitBound * scale)) {
      return absl::InternalError(absl::StrCat("the GPU's logits at bits ", bits, " are off the CPU's by ", error / std::max(scale, 1e-30),
                                              " (relative; more than ", kLogitBound, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaForward::Forward(std::span<const SequenceStep> steps, std::span<float> logits) {
  const ModelConfig& c = config_;
  int n = 0;
  for (const SequenceStep& step : steps) n += static_cast<int>(step.tokens.size());
  std::vector<int> ids;
  std::vector<int> positions;
  std::vector<int> bits;
  std::vector<int> logit_rows;
  for (const SequenceStep& step : steps) {
    for (size_t i = 0; i < step.tokens.size(); ++i) {
      if (step.which == LogitsFor::kAllTokens || i + 1 == step.tokens.size()) logit_rows.push_back(static_cast<int>(ids.size()));
      ids.push_back(step.tokens[i]);
      positions.push_back(step.cache->length() + static_cast<int>(i));
      bits.push_back(step.bits);
    }
  }
  // Every sequence's block table, one after another.
  std::vector<int> blocks;
  std::vector<size_t> block_offset;
  for (const SequenceStep& step : steps) {
    block_offset.push_back(blocks.size());
    blocks.insert(blocks.end(), step.cache->blocks().begin(), step.cache->blocks().end());
  }

  const size_t h = c.hidden_size;
  const auto floats = [&](const std::string& name, size_t count) -> absl::StatusOr<float*> {
    ASSIGN_OR_RETURN(void* p, Scratch(name, count * sizeof(float)));
    return static_cast<float*>(p);
  };
  const auto ints = [&](const std::string& name, const std::vector<int>& host) -> absl::StatusOr<int*> {
    ASSIGN_OR_RETURN(void* p, Scratch(name, host.size() * sizeof(int)));
    RETURN_IF_ERROR(Cuda(backend_.Upload(p, host.data(), host.size() * sizeof(int))));
    return static_cast<int*>(p);
  };
  ASSIGN_OR_RETURN(float* x, floats("x", n * h));
  ASSIGN_OR_RETURN(float* normed, floats("normed", std::max(n, 1) * h));
  ASSIGN_OR_RETURN(float* q, floats("q", static_cast<size_t>(n) * c.q_dim()));
  ASSIGN_OR_RETURN(float* k, floats("k", static_cast<size_t>(n) * c.kv_dim()));
  ASSIGN_OR_RETURN(float* v, floats("v", static_cast<size_t>(n) * c.kv_dim()));
  ASSIGN_OR_RETURN(float* attention, floats("attention", static_cast<size_t>(n) * c.q_dim()));
  ASSIGN_OR_RETURN(float* gate, floats("gate", static_cast<size_t>(n) * c.intermediate_size));
  ASSIGN_OR_RETURN(float* up, floats("up", static_cast<size_t>(n) * c.intermediate_size));
  ASSIGN_OR_RETURN(float* projected, floats("projected", n * h));
  ASSIGN_OR_RETURN(int* device_ids, ints("ids", ids));
  ASSIGN_OR_RETURN(int* device_positions, ints("positions", positions));
  ASSIGN_OR_RETURN(int* device_blocks, ints("blocks", blocks));

  RETURN_IF_ERROR(Cuda(backend_.Embed(embedding_, static_cast<int>(h), device_ids, n, x)));
  for (size_t layer = 0; layer < layers_.size(); ++layer) {
    const DeviceLayer& l = layers_[layer];
    RETURN_IF_ERROR(Cuda(backend_.RmsNorm(x, n, static_cast<int>(h), l.attn_norm, c.rms_norm_eps, normed)));
    RETURN_IF_ERROR(Linear(l.wq, normed, n, bits, q));
    RETURN_IF_ERROR(Linear(l.wk, normed, n, bits, k));
    RETURN_IF_ERROR(Linear(l.wv, normed, n, bits, v));
    RETURN_IF_ERROR(Cuda(backend_.Rope(q, n, device_positions, c.num_heads, c.head_dim, c.rope_theta)));
    RETURN_IF_ERROR(Cuda(backend_.Rope(k, n, device_positions, c.num_kv_heads, c.head_dim, c.rope_theta)));
    for (int first = 0, s = 0; const SequenceStep& step : steps) {
      const int count = static_cast<int>(step.tokens.size());
      ASSIGN_OR_RETURN(DeviceKv * kv, KvFor(step.cache->pool()));
      const KvBlockPool& pool = step.cache->pool();
      const cuda::DeviceKvLayer view{kv->keys + layer * kv->layer_floats, kv->values + layer * kv->layer_floats, pool.block_stride(),
                                     pool.block_tokens(), pool.row_width(), device_blocks + block_offset[s]};
      const size_t kv_at = static_cast<size_t>(first) * c.kv_dim();
      RETURN_IF_ERROR(Cuda(backend_.KvAppend(k + kv_at, v + kv_at, count, device_positions + first, view)));
      RETURN_IF_ERROR(Cuda(backend_.Attention(q + static_cast<size_t>(first) * c.q_dim(), count, device_positions + first,
                                              positions[first + count - 1], view, c.num_heads, c.num_kv_heads, c.head_dim,
                                              attention + static_cast<size_t>(first) * c.q_dim())));
      first += count;
      ++s;
    }
    RETURN_IF_ERROR(Linear(l.wo, attention, n, bits, projected));
    RETURN_IF_ERROR(Cuda(backend_.Add(x, projected, n * h)));
    RETURN_IF_ERROR(Cuda(backend_.RmsNorm(x, n, static_cast<int>(h), l.ffn_norm, c.rms_norm_eps, normed)));
    RETURN_IF_ERROR(Linear(l.w_gate, normed, n, bits, gate));
    RETURN_IF_ERROR(Linear(l.w_up, normed, n, bits, up));
    RETURN_IF_ERROR(Cuda(backend_.SwiGlu(gate, up, static_cast<size_t>(n) * c.intermediate_size)));
    RETURN_IF_ERROR(Linear(l.w_down, gate, n, bits, projected));
    RETURN_IF_ERROR(Cuda(backend_.Add(x, projected, n * h)));
  }
  for (const SequenceStep& step : steps) step.cache->Advance(static_cast<int>(step.tokens.size()));

  // The final norm and the head, only for the rows whose logits are wanted.
  const int rows = static_cast<int>(logit_rows.size());
  for (int i = 0; i < rows; ++i) {
    RETURN_IF_ERROR(Cuda(backend_.RmsNorm(x + logit_rows[i] * h, 1, static_cast<int>(h), final_norm_, c.rms_norm_eps, normed + i * h)));
  }
  ASSIGN_OR_RETURN(float* device_logits, floats("logits", static_cast<size_t>(rows) * c.vocab_size));
  RETURN_IF_ERROR(Cuda(backend_.GemmF32(normed, rows, head_, c.vocab_size, static_cast<int>(h), device_logits)));
  return Cuda(backend_.Download(logits.data(), device_logits, logits.size_bytes()));
}

}  // namespace anyprec
