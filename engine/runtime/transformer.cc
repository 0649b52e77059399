#include "engine/runtime/transformer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/cpu/ops.h"

namespace anyprec {

void Transformer::Scratch::Resize(const ModelConfig& c, int tokens) {
  const size_t t = tokens;
  x.resize(t * c.hidden_size);
  normed.resize(t * c.hidden_size);
  q.resize(t * c.q_dim());
  k.resize(t * c.kv_dim());
  v.resize(t * c.kv_dim());
  attention.resize(t * c.q_dim());
  gate.resize(t * c.intermediate_size);
  up.resize(t * c.intermediate_size);
  projected.resize(t * c.hidden_size);
  positions.resize(t);
  bits.resize(t);
}

namespace {

void ApplyLinear(const Linear& linear, std::span<const float> x, std::span<const int> bits, bool exact,
                 std::span<float> out) {
  const int tokens = static_cast<int>(bits.size());
  if (linear.is_quantized() && !exact && cpu::HasInt8BitplaneKernel()) {
    cpu::BitplaneMatMulInt8(x, bits, linear.quantized, out);
  } else if (linear.is_quantized()) {
    cpu::BitplaneMatMul(x, bits, linear.quantized, out);
  } else {
    cpu::MatMul(x, tokens, linear.dense, linear.rows, linear.cols, out);
  }
  if (linear.bias.empty()) return;
  for (size_t i = 0; i < out.size(); ++i) out[i] += linear.bias[i % linear.bias.size()];
}

absl::Status ValidateBits(const ModelConfig& c, int bits) {
  if (!c.quantization) {
    if (bits == 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("bits ", bits, " asked of an unquantized model (only 0)"));
  }
  if (bits >= c.quantization->seed_bits && bits <= c.quantization->max_bits) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("bits ", bits, " is outside this image's widths ", c.quantization->seed_bits,
                                                 "..", c.quantization->max_bits));
}

void AddInPlace(std::span<float> x, std::span<const float> delta) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
}

}  // namespace

absl::Status Transformer::Forward(std::span<const TokenId> tokens, KvCache& cache, LogitsFor which,
                                  std::span<float> logits, const ForwardOptions& options) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const int n = static_cast<int>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("no tokens to run");
  if (cache.length() + n > cache.capacity()) {
    return absl::OutOfRangeError(absl::StrCat("context full: ", cache.length(), " + ", n, " tokens exceed ", cache.capacity()));
  }
  const size_t logit_rows = which == LogitsFor::kAllTokens ? n : 1;
  if (logits.size() != logit_rows * c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer holds ", logits.size(), " floats, need ", logit_rows * c.vocab_size));
  }
  for (TokenId id : tokens) {
    if (id < 0 || id >= c.vocab_size) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
  }
  if (absl::Status s = ValidateBits(c, options.bits); !s.ok()) return s;

  Scratch& s = scratch_;
  s.Resize(c, n);
  const int start = cache.length();
  std::fill(s.bits.begin(), s.bits.end(), options.bits);
  const auto observe = [&](int layer, LinearInput input, std::span<const float> rows, int width) {
    if (options.observer != nullptr) options.observer->Observe(layer, input, rows, width);
  };
  for (int t = 0; t < n; ++t) {
    s.positions[t] = start + t;
    const std::span<const float> row = w.embedding.Row(tokens[t]);
    std::copy(row.begin(), row.end(), s.x.begin() + static_cast<size_t>(t) * c.hidden_size);
  }

  const cpu::AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim};
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& l = w.layers[layer];

    // Attention block: the new keys and values go straight into the cache.
    cpu::RmsNorm(s.x, l.attn_norm, c.rms_norm_eps, s.normed);
    const std::span<float> k_rows = cache.keys(layer).subspan(static_cast<size_t>(start) * c.kv_dim(), static_cast<size_t>(n) * c.kv_dim());
    const std::span<float> v_rows = cache.values(layer).subspan(static_cast<size_t>(start) * c.kv_dim(), static_cast<size_t>(n) * c.kv_dim());
    observe(layer, LinearInput::kAttention, s.normed, c.hidden_size);
    ApplyLinear(l.wq, s.normed, s.bits, options.exact_kernels, s.q);
    ApplyLinear(l.wk, s.normed, s.bits, options.exact_kernels, k_rows);
    ApplyLinear(l.wv, s.normed, s.bits, options.exact_kernels, v_rows);
    cpu::Rope(s.q, s.positions, c.num_heads, c.head_dim, c.rope_theta);
    cpu::Rope(k_rows, s.positions, c.num_kv_heads, c.head_dim, c.rope_theta);
    cpu::Attention(s.q, s.positions, cache.keys(layer), cache.values(layer), shape, s.attention);
    observe(layer, LinearInput::kAttentionOutput, s.attention, c.q_dim());
    ApplyLinear(l.wo, s.attention, s.bits, options.exact_kernels, s.projected);
    AddInPlace(s.x, s.projected);

    // MLP block.
    cpu::RmsNorm(s.x, l.ffn_norm, c.rms_norm_eps, s.normed);
    observe(layer, LinearInput::kMlp, s.normed, c.hidden_size);
    ApplyLinear(l.w_gate, s.normed, s.bits, options.exact_kernels, s.gate);
    ApplyLinear(l.w_up, s.normed, s.bits, options.exact_kernels, s.up);
    cpu::SwiGlu(s.gate, s.up);
    observe(layer, LinearInput::kMlpHidden, s.gate, c.intermediate_size);
    ApplyLinear(l.w_down, s.gate, s.bits, options.exact_kernels, s.projected);
    AddInPlace(s.x, s.projected);
  }
  cache.Advance(n);

  const size_t first_row = which == LogitsFor::kAllTokens ? 0 : n - 1;
  const std::span<const float> final_rows = std::span<const float>(s.x).subspan(first_row * c.hidden_size);
  const std::span<float> normed = std::span<float>(s.normed).subspan(0, logit_rows * c.hidden_size);
  cpu::RmsNorm(final_rows, w.final_norm, c.rms_norm_eps, normed);
  cpu::MatMul(normed, static_cast<int>(logit_rows), w.head.values, w.head.rows, w.head.cols, logits);
  return absl::OkStatus();
}

}  // namespace anyprec
