#include "tests/host_backend.h"

#include <cstring>
#include <span>

#include "engine/cpu/ops.h"
#include "engine/model/half_float.h"

namespace anyprec::testing {
namespace {

float Weight(const cuda::DeviceBitplaneMatrix& w, int row, int col, int bits) {
  return w.luts[w.lut_offset[bits] + (static_cast<size_t>(row) << bits) + cuda::ReadGpuIndex(w.planes, w.rows, w.padded_cols, row, col, bits)];
}

float Activation(const void* x, cuda::Activation type, size_t i) {
  const uint16_t h = static_cast<const uint16_t*>(x)[i];
  return type == cuda::Activation::kF16 ? F16ToF32(h) : BF16ToF32(h);
}

}  // namespace

HostBackend::HostBackend(size_t max_bytes) : max_bytes_(max_bytes) { info_.name = "host emulation"; }

void* HostBackend::Allocate(size_t bytes, std::string& error) {
  largest_ = std::max(largest_, bytes);
  if (bytes > max_bytes_) {
    error = "cudaMalloc: cudaErrorMemoryAllocation (out of memory): " + std::to_string(bytes) + " bytes";
    return nullptr;
  }
  error.clear();
  auto block = std::make_unique<std::byte[]>(bytes);
  void* p = block.get();
  blocks_.emplace(p, std::move(block));
  return p;
}

void HostBackend::Free(void* device) { blocks_.erase(device); }

std::string HostBackend::Upload(void* device, const void* host, size_t bytes) {
  std::memcpy(device, host, bytes);
  return {};
}

std::string HostBackend::Download(void* host, const void* device, size_t bytes) {
  std::memcpy(host, device, bytes);
  return {};
}

std::string HostBackend::Fill(void* device, uint8_t byte, size_t bytes) {
  std::memset(device, byte, bytes);
  return {};
}

std::string HostBackend::CopyOnDevice(void* to, const void* from, size_t bytes) {
  std::memcpy(to, from, bytes);
  return {};
}

std::string HostBackend::BitplaneGemv(const cuda::DeviceBitplaneMatrix& w, const void* x, cuda::Activation type, std::span<const int> bits,
                                      float* y) {
  if (bits.empty() || bits.size() > static_cast<size_t>(cuda::kMaxGemvBatch)) return "bitplane GEMV: bad batch";
  for (size_t m = 0; m < bits.size(); ++m) {
    if (bits[m] < w.seed_bits || bits[m] > w.max_bits) return "bitplane GEMV: cudaErrorInvalidValue";
    for (int n = 0; n < w.rows; ++n) {
      double sum = 0;
      for (int k = 0; k < w.cols; ++k) sum += static_cast<double>(Weight(w, n, k, bits[m])) * Activation(x, type, m * w.padded_cols + k);
      y[m * w.rows + n] = static_cast<float>(sum);
    }
  }
  return {};
}

std::string HostBackend::Dequantize(const cuda::DeviceBitplaneMatrix& w, int bits, void* out_f16) {
  auto* out = static_cast<uint16_t*>(out_f16);
  for (int n = 0; n < w.rows; ++n) {
    for (int k = 0; k < w.cols; ++k) out[static_cast<size_t>(n) * w.cols + k] = F32ToF16(Weight(w, n, k, bits));
  }
  return {};
}

std::string HostBackend::GemmF16(const void* x, int tokens, const void* w, int rows, int k, float* y) {
  for (int t = 0; t < tokens; ++t) {
    for (int n = 0; n < rows; ++n) {
      double sum = 0;
      for (int i = 0; i < k; ++i) {
        sum += static_cast<double>(F16ToF32(static_cast<const uint16_t*>(x)[static_cast<size_t>(t) * k + i])) *
               F16ToF32(static_cast<const uint16_t*>(w)[static_cast<size_t>(n) * k + i]);
      }
      y[static_cast<size_t>(t) * rows + n] = static_cast<float>(sum);
    }
  }
  return {};
}

std::string HostBackend::RmsNorm(const float* x, int rows, int width, const float* weight, float eps, float* out) {
  const size_t count = static_cast<size_t>(rows) * width;
  cpu::RmsNorm(std::span<const float>(x, count), std::span<const float>(weight, width), eps, std::span<float>(out, count));
  return {};
}

std::string HostBackend::Rope(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                              double attention_factor) {
  cpu::Rope(std::span<float>(x, static_cast<size_t>(tokens) * heads * head_dim), std::span<const int>(positions, tokens), heads, head_dim,
            std::span<const double>(inv_freq, rotary_dim / 2), attention_factor);
  return {};
}

std::string HostBackend::Glu(MlpActivation act, float* gate, const float* up, size_t count) {
  cpu::Glu(act, std::span<float>(gate, count), std::span<const float>(up, count));
  return {};
}

std::string HostBackend::Add(float* x, const float* delta, size_t count) {
  for (size_t i = 0; i < count; ++i) x[i] += delta[i];
  return {};
}

std::string HostBackend::Embed(const float* table, int width, const int* ids, int tokens, float scale, float* out) {
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < width; ++i) out[static_cast<size_t>(t) * width + i] = table[static_cast<size_t>(ids[t]) * width + i] * scale;
  }
  return {};
}

std::string HostBackend::Attention(const float* q, int tokens, const int* positions, int max_position, const cuda::DeviceKvLayer& kv,
                                   int heads, int kv_heads, int head_dim, int window, float* out) {
  const int blocks = max_position / kv.block_tokens + 1;
  const cpu::KvLayerView view{kv.keys, kv.values, kv.block_stride, kv.block_tokens, kv.row_width, std::span<const int>(kv.blocks, blocks)};
  const size_t width = static_cast<size_t>(heads) * head_dim;
  cpu::reference::Attention(std::span<const float>(q, tokens * width), std::span<const int>(positions, tokens), view,
                            {heads, kv_heads, head_dim, window}, std::span<float>(out, tokens * width));
  return {};
}

std::string HostBackend::ToHalf(const float* x, int rows, int cols, int padded_cols, void* out) {
  auto* o = static_cast<uint16_t*>(out);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < padded_cols; ++c) o[static_cast<size_t>(r) * padded_cols + c] = F32ToF16(c < cols ? x[static_cast<size_t>(r) * cols + c] : 0.0f);
  }
  return {};
}

std::string HostBackend::AddBias(float* x, const float* bias, int rows, int cols) {
  for (size_t i = 0; i < static_cast<size_t>(rows) * cols; ++i) x[i] += bias[i % cols];
  return {};
}

std::string HostBackend::KvAppend(const float* k, const float* v, int tokens, const int* positions, const cuda::DeviceKvLayer& kv) {
  for (int t = 0; t < tokens; ++t) {
    const int p = positions[t];
    const size_t to = static_cast<size_t>(kv.blocks[p / kv.block_tokens]) * kv.block_stride + static_cast<size_t>(p % kv.block_tokens) * kv.row_width;
    std::memcpy(const_cast<float*>(kv.keys) + to, k + static_cast<size_t>(t) * kv.row_width, kv.row_width * 4);
    std::memcpy(const_cast<float*>(kv.values) + to, v + static_cast<size_t>(t) * kv.row_width, kv.row_width * 4);
  }
  return {};
}

std::string HostBackend::GemmF32(const float* x, int tokens, const float* w, int rows, int k, float* y) {
  for (int t = 0; t < tokens; ++t) {
    for (int n = 0; n < rows; ++n) {
      double sum = 0;
      for (int i = 0; i < k; ++i) sum += static_cast<double>(x[static_cast<size_t>(t) * k + i]) * w[static_cast<size_t>(n) * k + i];
      y[static_cast<size_t>(t) * rows + n] = static_cast<float>(sum);
    }
  }
  return {};
}

}  // namespace anyprec::testing
