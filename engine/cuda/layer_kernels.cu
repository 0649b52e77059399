// CUDA kernels of the transformer layer around the bitplane GEMV: embedding, RMSNorm,
// RoPE, attention over the paged KV cache, the gated activations and residual adds, all in fp32 like the
// CPU engine, each checked against its CPU counterpart by anyprec-test-backend-ops.
#include <algorithm>
#include <cfloat>

#include <cuda_fp16.h>

#include "engine/cuda/kernels.h"

namespace anyprec::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float BlockSum(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += scratch[w];
  __syncthreads();  // scratch is reused by the next call
  return total;
}

__device__ float BlockMax(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float total = -FLT_MAX;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total = fmaxf(total, scratch[w]);
  __syncthreads();
  return total;
}

// One block per row.
__global__ void RmsNormKernel(const float* x, int width, const float* weight, float eps, float* out) {
  __shared__ float scratch[kThreads / 32];
  const float* in = x + static_cast<size_t>(blockIdx.x) * width;
  float* o = out + static_cast<size_t>(blockIdx.x) * width;
  float sum = 0;
  for (int i = threadIdx.x; i < width; i += blockDim.x) sum += in[i] * in[i];
  const float scale = rsqrtf(BlockSum(sum, scratch) / width + eps);
  for (int i = threadIdx.x; i < width; i += blockDim.x) o[i] = in[i] * scale * weight[i];
}

// One thread per (token, head, i < rotary_dim / 2): rotates the pair (i, i + rotary_dim / 2),
// with the angle in double as on the CPU.
__global__ void RopeKernel(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                           double attention_factor) {
  const int half = rotary_dim / 2;
  const size_t item = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (item >= static_cast<size_t>(tokens) * heads * half) return;
  const int i = static_cast<int>(item % half);
  const int h = static_cast<int>(item / half % heads);
  const int t = static_cast<int>(item / half / heads);
  const double angle = positions[t] * inv_freq[i];
  double s;
  double c;
  sincos(angle, &s, &c);
  const auto sin_f = static_cast<float>(s * attention_factor);
  const auto cos_f = static_cast<float>(c * attention_factor);
  float* v = x + (static_cast<size_t>(t) * heads + h) * head_dim;
  const float x0 = v[i];
  const float x1 = v[i + half];
  v[i] = x0 * cos_f - x1 * sin_f;
  v[i + half] = x0 * sin_f + x1 * cos_f;
}

__global__ void GluKernel(MlpActivation act, float* gate, const float* up, size_t count) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += gridDim.x * static_cast<size_t>(blockDim.x)) {
    const float g = gate[i];
    float a = 0;
    switch (act) {
      case MlpActivation::kSilu: a = g / (1.0f + expf(-g)); break;
      case MlpActivation::kGelu: a = 0.5f * g * (1.0f + erff(g * 0.70710678118654752f)); break;
      case MlpActivation::kGeluTanh: a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g))); break;
    }
    gate[i] = a * up[i];
  }
}

__global__ void AddKernel(float* x, const float* delta, size_t count) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += gridDim.x * static_cast<size_t>(blockDim.x)) {
    x[i] += delta[i];
  }
}

__global__ void EmbedKernel(const float* table, int width, const int* ids, float scale, float* out) {
  const float* row = table + static_cast<size_t>(ids[blockIdx.x]) * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) out[static_cast<size_t>(blockIdx.x) * width + i] = row[i] * scale;
}

// One block per (token, head): scores against every cached position in the window up to the
// token's own in shared memory (indexed from the window's first position), softmax, then the weighted sum of values, one thread per
// dimension group. Positions map to cache rows through the sequence's block table.
__global__ void AttentionKernel(const float* q, const int* positions, DeviceKvLayer kv, int heads, int kv_heads, int head_dim, int window,
                                float* out) {
  extern __shared__ float scores[];
  __shared__ float scratch[kThreads / 32];
  const int t = blockIdx.x / heads;
  const int h = blockIdx.x % heads;
  const int kv_head = h / (heads / kv_heads);
  const int length = positions[t] + 1;
  const int first = window > 0 ? max(0, length - window) : 0;
  const float* qv = q + (static_cast<size_t>(t) * heads + h) * head_dim;
  const float scale = rsqrtf(static_cast<float>(head_dim));
  const auto row = [&](const float* base, int p) {
    return base + static_cast<size_t>(kv.blocks[p / kv.block_tokens]) * kv.block_stride +
           static_cast<size_t>(p % kv.block_tokens) * kv.row_width + static_cast<size_t>(kv_head) * head_dim;
  };
  float local_max = -FLT_MAX;
  for (int p = first + threadIdx.x; p < length; p += blockDim.x) {
    const float* k = row(kv.keys, p);
    float dot = 0;
    for (int i = 0; i < head_dim; ++i) dot += qv[i] * k[i];
    scores[p - first] = dot * scale;
    local_max = fmaxf(local_max, scores[p - first]);
  }
  const float max_score = BlockMax(local_max, scratch);
  float local_sum = 0;
  for (int p = first + threadIdx.x; p < length; p += blockDim.x) {
    scores[p - first] = expf(scores[p - first] - max_score);
    local_sum += scores[p - first];
  }
  const float total = BlockSum(local_sum, scratch);  // its barrier also publishes scores
  float* o = out + (static_cast<size_t>(t) * heads + h) * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0;
    for (int p = first; p < length; ++p) acc += scores[p - first] * row(kv.values, p)[i];
    o[i] = acc / total;
  }
}

// One block per row: fp32 [rows][cols] to fp16 [rows][padded_cols], zero past cols.
__global__ void ToHalfKernel(const float* x, int cols, int padded_cols, __half* out) {
  const float* in = x + static_cast<size_t>(blockIdx.x) * cols;
  __half* o = out + static_cast<size_t>(blockIdx.x) * padded_cols;
  for (int i = threadIdx.x; i < padded_cols; i += blockDim.x) o[i] = __float2half(i < cols ? in[i] : 0.0f);
}

__global__ void AddBiasKernel(float* x, const float* bias, int rows, int cols) {
  const size_t count = static_cast<size_t>(rows) * cols;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += gridDim.x * static_cast<size_t>(blockDim.x)) {
    x[i] += bias[i % cols];
  }
}

// One block per token: its key and value rows into the cache rows of its position.
__global__ void KvAppendKernel(const float* k, const float* v, const int* positions, DeviceKvLayer kv) {
  const int p = positions[blockIdx.x];
  const size_t to = static_cast<size_t>(kv.blocks[p / kv.block_tokens]) * kv.block_stride + static_cast<size_t>(p % kv.block_tokens) * kv.row_width;
  float* keys = const_cast<float*>(kv.keys);
  float* values = const_cast<float*>(kv.values);
  for (int i = threadIdx.x; i < kv.row_width; i += blockDim.x) {
    keys[to + i] = k[static_cast<size_t>(blockIdx.x) * kv.row_width + i];
    values[to + i] = v[static_cast<size_t>(blockIdx.x) * kv.row_width + i];
  }
}

unsigned GridFor(size_t count) { return static_cast<unsigned>(std::min<size_t>((count + kThreads - 1) / kThreads, 65535)); }

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, int rows, int width, const float* weight, float eps, float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<rows, kThreads, 0, stream>>>(x, width, weight, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchRope(float* x, int tokens, const int* positions, int heads, int head_dim, const double* inv_freq, int rotary_dim,
                       double attention_factor, cudaStream_t stream) {
  const size_t items = static_cast<size_t>(tokens) * heads * (rotary_dim / 2);
  if (items == 0) return cudaSuccess;
  RopeKernel<<<static_cast<unsigned>((items + kThreads - 1) / kThreads), kThreads, 0, stream>>>(x, tokens, positions, heads, head_dim,
                                                                                               inv_freq, rotary_dim, attention_factor);
  return cudaGetLastError();
}

cudaError_t LaunchGlu(MlpActivation act, float* gate, const float* up, size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  GluKernel<<<GridFor(count), kThreads, 0, stream>>>(act, gate, up, count);
  return cudaGetLastError();
}

cudaError_t LaunchAdd(float* x, const float* delta, size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  AddKernel<<<GridFor(count), kThreads, 0, stream>>>(x, delta, count);
  return cudaGetLastError();
}

cudaError_t LaunchEmbed(const float* table, int width, const int* ids, int tokens, float scale, float* out, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  EmbedKernel<<<tokens, kThreads, 0, stream>>>(table, width, ids, scale, out);
  return cudaGetLastError();
}

cudaError_t LaunchToHalf(const float* x, int rows, int cols, int padded_cols, void* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  ToHalfKernel<<<rows, kThreads, 0, stream>>>(x, cols, padded_cols, static_cast<__half*>(out));
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(float* x, const float* bias, int rows, int cols, cudaStream_t stream) {
  const size_t count = static_cast<size_t>(rows) * cols;
  if (count == 0) return cudaSuccess;
  AddBiasKernel<<<GridFor(count), kThreads, 0, stream>>>(x, bias, rows, cols);
  return cudaGetLastError();
}

cudaError_t LaunchKvAppend(const float* k, const float* v, int tokens, const int* positions, const DeviceKvLayer& kv, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  KvAppendKernel<<<tokens, kThreads, 0, stream>>>(k, v, positions, kv);
  return cudaGetLastError();
}

cudaError_t LaunchAttention(const float* q, int tokens, const int* positions, int max_position, const DeviceKvLayer& kv, int heads,
                            int kv_heads, int head_dim, int window, float* out, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  // A score per position a query sees: up to max_position + 1, or the window. Rounded up, plus
  // a vector's worth: the compiler reads scores in vectors of up to 4, past the last one it
  // uses (compute-sanitizer saw it).
  const size_t seen = window > 0 ? std::min(max_position + 1, window) : max_position + 1;
  const size_t shared = sizeof(float) * ((seen + 3) / 4 * 4 + 4);
  if (shared > 48 * 1024) {
    const cudaError_t raised = cudaFuncSetAttribute(AttentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (raised != cudaSuccess) return raised;
  }
  AttentionKernel<<<static_cast<unsigned>(tokens) * heads, kThreads, shared, stream>>>(q, positions, kv, heads, kv_heads, head_dim, window, out);
  return cudaGetLastError();
}

}  // namespace anyprec::cuda
