// The CPU operators of the forward pass. Each fast operator has a plain scalar reference
// beside it (namespace reference) that the tests hold it to.
#pragma once

#include <algorithm>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/cpu/bitplane_view.h"
#include "engine/cpu/kv_layer_view.h"
#include "engine/model/activation.h"

namespace anyprec::cpu {

// out[t, n] = sum_k x[t, k] * w[n, k] for t < tokens, n < rows: a batch of token rows times
// a PyTorch-layout weight [rows, cols]. SIMD (Highway, dispatched at run time) and spread
// over all cores.
void MatMul(std::span<const float> x, int tokens, std::span<const float> w, int rows, int cols, std::span<float> out);

// MatMul with an int8 weight, one scale per row: w[n, k] = scales[n] * q[n * cols + k]. The
// activations stay fp32, so the result is the exact product with the stored weight.
void Int8MatMul(std::span<const float> x, int tokens, std::span<const int8_t> q, std::span<const float> scales, int rows, int cols,
                std::span<float> out);

// out[t, n] = sum_k LUT_b[n][index_b(n, k)] * x[t, k] with b = bits[t]: a batch whose token
// rows may each ask for a different width. Planes up to the largest b are read once; each
// row looks up its own LUT. Every bits[t] must lie in [w.seed_bits, w.max_bits].
void BitplaneMatMul(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out);

// BitplaneMatMul with integer arithmetic: activations quantized to int8 per block of
// kInt8Block columns, LUTs to int8 per row (BitplaneView::luts_u8), products summed in int32.
// About 1% relative error against the exact kernel, and several times faster. One kernel per
// instruction set; the view's int8 tables must be prepared.
constexpr int kInt8Block = 128;
enum class Int8Kernel {
  kAvx512Vbmi,   // 64 columns per byte permute (vpermb) and vpdpbusd: AVX-512 F/BW/VBMI/VNNI
  kAvx2Vnni,     // kAvx2 with 256-bit vpdpbusd: AVX-512 VL and VNNI without VBMI (Cascade Lake)
  kAvx2,         // 16-entry vpshufb tables and vpmaddubsw: AVX2 and FMA (Haswell, Zen 1-3)
  kNeonDotprod,  // 64-entry tbl tables and sdot: ARMv8.2 NEON with the dot product (aarch64)
};
std::string_view Int8KernelName(Int8Kernel kernel);
// The int8 kernels this CPU can run, fastest first.
std::vector<Int8Kernel> SupportedInt8Kernels();

// The int8 kernel chosen for this process (engine/cpu/kernel_choice.h), if any; none also
// when ChooseKernel() fails, which programs call at start-up to refuse a bad choice.
std::optional<Int8Kernel> ChosenInt8Kernel();
bool HasInt8BitplaneKernel();

// How BitplaneMatMulInt8 spends a batch. Per token: each weight tile is decoded in registers
// once per pass of a few token rows (the kernel's pass length) and met by each of them: no
// memory traffic beyond the planes, the fastest for a few rows. Batched: a few weight rows
// at a time are decoded to int8 once per width in the batch, into a buffer that stays in
// cache, and an int8 GEMM micro-kernel meets them with every token row of that width, a
// tile of rows by tokens per register block: prefill and large decode batches. kAuto takes
// the batched schedule from the kernel's crossover on (measured on x86, docs/BENCHMARKS.md;
// the NEON kernel's is unmeasured). The AVX-512 and NEON kernels have both; the AVX2 ones,
// batched at every size, ignore kPerToken.
enum class Int8Schedule { kAuto, kPerToken, kBatched };

// BitplaneMatMulInt8 on the chosen kernel (HasInt8BitplaneKernel() must hold), or on `kernel`,
// which must be in SupportedInt8Kernels().
void BitplaneMatMulInt8(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out);
void BitplaneMatMulInt8(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out,
                        Int8Kernel kernel, Int8Schedule schedule = Int8Schedule::kAuto);

// x[t] = x[t] / rms(x[t]) * weight, for each row of width weight.size().
void RmsNorm(std::span<const float> x, std::span<const float> weight, float eps, std::span<float> out);

// Rotary embedding in Hugging Face's half-split layout: within each head, element i <
// inv_freq.size() pairs with i + inv_freq.size() and turns by positions[t] * inv_freq[i] (the
// absolute position of row t); the pair is then multiplied by attention_factor (YaRN). Dims
// from 2 * inv_freq.size() to head_dim pass through (partial rotary).
void Rope(std::span<float> x, std::span<const int> positions, int num_heads, int head_dim, std::span<const double> inv_freq,
          double attention_factor);

// Causal grouped-query attention for rows at `positions`, against a cache that holds keys
// and values for positions [0, positions.back()], rows of kv_heads*head_dim. With a sliding
// window W > 0, the query at position p sees positions p - W + 1 .. p only.
// q: [tokens, heads*head_dim]; out: like q.
struct AttentionShape {
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int window = 0;
  // The first position a query at `position` sees.
  int FirstSeen(int position) const { return window > 0 ? std::max(0, position + 1 - window) : 0; }
};
void Attention(std::span<const float> q, std::span<const int> positions, const KvLayerView& cache, const AttentionShape& shape,
               std::span<float> out);

// x[i] = exp(x[i] - shift); returns the sum of the new x.
float ExpShiftedAndSum(std::span<float> x, float shift);

// gate = act(gate) * up, element-wise.
void Glu(MlpActivation act, std::span<float> gate, std::span<const float> up);

namespace reference {

void MatMul(std::span<const float> x, int tokens, std::span<const float> w, int rows, int cols, std::span<float> out);
void Attention(std::span<const float> q, std::span<const int> positions, const KvLayerView& cache, const AttentionShape& shape,
               std::span<float> out);
void BitplaneMatMul(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out);
void BitplaneMatMulInt8(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out);

}  // namespace reference

// The order in which Int8Activations holds each token row's columns.
enum class ActivationOrder {
  kNatural,
  // Per 256 columns, position 32 j + i holds column 8 i + j: bit j of byte i of a plane's 32
  // bytes meets its activation in lane i of vector j (the AVX2 and NEON kernels). The tile's
  // first block of kInt8Block columns lands in lanes 0-15 of every vector, its second in
  // lanes 16-31. Needs padded_cols to be a multiple of 256.
  kBitSliced,
};

// Activations as the int8 kernels read them: rows padded to `padded_cols` (zeros), one scale
// per kInt8Block columns, and per token the term 128 * sum(scale * sum(q)) that the +128
// offset of the u8 LUT entries adds.
struct Int8Activations {
  size_t padded_cols = 0;
  std::vector<int8_t> values;  // [tokens][padded_cols]
  std::vector<float> scales;   // [tokens][padded_cols / kInt8Block]
  std::vector<double> offset;  // [tokens]

  // Token row `token`'s values and its per-block scales.
  const int8_t* Row(int token) const { return values.data() + static_cast<size_t>(token) * padded_cols; }
  const float* Scales(int token) const { return scales.data() + static_cast<size_t>(token) * (padded_cols / kInt8Block); }
};
Int8Activations QuantizeActivations(std::span<const float> x, int tokens, int cols, size_t padded_cols,
                                    ActivationOrder order = ActivationOrder::kNatural);
}  // namespace anyprec::cpu
