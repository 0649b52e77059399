#include "engine/runtime/transformer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/cpu/ops.h"
#include "engine/model/width.h"
#include "engine/runtime/cuda_forward.h"

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

absl::Status ValidateBits(const ModelConfig& c, int bits) { return ModelWidths(c).Check(bits, "bits", "this model's"); }

void AddInPlace(std::span<float> x, std::span<const float> delta) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
}

}  // namespace

absl::Status Transformer::Forward(std::span<const TokenId> tokens, KvCache& cache, LogitsFor which,
                                  std::span<float> logits, const ForwardOptions& options) {
  const SequenceStep step{tokens, &cache, options.bits, which};
  return ForwardBatch(std::span<const SequenceStep>(&step, 1), logits, options);
}

absl::Status Transformer::ForwardBatch(std::span<const SequenceStep> steps, std::span<float> logits,
                                       const ForwardOptions& options) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  if (steps.empty()) return absl::InvalidArgumentError("no sequences to run");
  int n = 0;
  size_t logit_rows = 0;
  for (const SequenceStep& step : steps) {
    const int count = static_cast<int>(step.tokens.size());
    if (count == 0) return absl::InvalidArgumentError("no tokens to run");
    if (step.cache->length() + count > step.cache->capacity()) {
      return absl::OutOfRangeError(absl::StrCat("context full: ", step.cache->length(), " + ", count, " tokens exceed ",
                                                step.cache->capacity()));
    }
    for (TokenId id : step.tokens) {
      if (id < 0 || id >= c.vocab_size) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
    }
    if (absl::Status s = ValidateBits(c, step.bits); !s.ok()) return s;
    n += count;
    logit_rows += step.which == LogitsFor::kAllTokens ? count : 1;
  }
  if (logits.size() != logit_rows * c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer holds ", logits.size(), " floats, need ", logit_rows * c.vocab_size));
  }

  if (gpu_ != nullptr && !options.exact_kernels && options.observer == nullptr) return gpu_->Forward(steps, logits);

  // The token rows of all sequences, one after another; linear layers run on all of them at
  // once (each row at its sequence's width), attention on each sequence against its cache.
  Scratch& s = scratch_;
  s.Resize(c, n);
  std::vector<int> logit_rows_index;
  for (int row = 0; const SequenceStep& step : steps) {
    for (size_t i = 0; i < step.tokens.size(); ++i, ++row) {
      s.positions[row] = step.cache->length() + static_cast<int>(i);
      s.bits[row] = step.bits;
      w.embedding.CopyRow(step.tokens[i], std::span<float>(s.x).subspan(static_cast<size_t>(row) * c.hidden_size, c.hidden_size));
      if (step.which == LogitsFor::kAllTokens || i + 1 == step.tokens.size()) logit_rows_index.push_back(row);
    }
  }
  const auto observe = [&](int layer, LinearInput input, std::span<const float> rows, int width) {
    if (options.observer != nullptr) options.observer->Observe(layer, input, rows, width);
  };
  const auto rows_of = [](std::span<float> data, int first, int count, int width) {
    return data.subspan(static_cast<size_t>(first) * width, static_cast<size_t>(count) * width);
  };

  const cpu::AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim};
  const int kv = c.kv_dim();
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& l = w.layers[layer];

    // Attention block.
    cpu::RmsNorm(s.x, l.attn_norm, c.rms_norm_eps, s.normed);
    observe(layer, LinearInput::kAttention, s.normed, c.hidden_size);
    ApplyLinear(l.wq, s.normed, s.bits, options.exact_kernels, s.q);
    ApplyLinear(l.wk, s.normed, s.bits, options.exact_kernels, s.k);
    ApplyLinear(l.wv, s.normed, s.bits, options.exact_kernels, s.v);
    cpu::Rope(s.q, s.positions, c.num_heads, c.head_dim, c.rope_theta);
    cpu::Rope(s.k, s.positions, c.num_kv_heads, c.head_dim, c.rope_theta);
    for (int first = 0; const SequenceStep& step : steps) {
      const int count = static_cast<int>(step.tokens.size());
      KvCache& cache = *step.cache;
      const auto k_new = rows_of(s.k, first, count, kv);
      const auto v_new = rows_of(s.v, first, count, kv);
      for (int i = 0; i < count; ++i) cache.Store(layer, cache.length() + i, k_new.subspan(i * kv, kv), v_new.subspan(i * kv, kv));
      cpu::Attention(rows_of(s.q, first, count, c.q_dim()), std::span<const int>(s.positions).subspan(first, count),
                     cache.layer(layer), shape, rows_of(s.attention, first, count, c.q_dim()));
      first += count;
    }
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
  for (const SequenceStep& step : steps) step.cache->Advance(static_cast<int>(step.tokens.size()));

  // Final norm and head, only for the rows whose logits are wanted.
  for (size_t i = 0; i < logit_rows_index.size(); ++i) {
    const auto row = std::span<const float>(s.x).subspan(static_cast<size_t>(logit_rows_index[i]) * c.hidden_size, c.hidden_size);
    cpu::RmsNorm(row, w.final_norm, c.rms_norm_eps, std::span<float>(s.normed).subspan(i * c.hidden_size, c.hidden_size));
  }
  const auto normed = std::span<const float>(s.normed).first(logit_rows * c.hidden_size);
  if (w.head.is_int8()) {
    cpu::Int8MatMul(normed, static_cast<int>(logit_rows), w.head.q, w.head.scales, w.head.rows, w.head.cols, logits);
  } else {
    cpu::MatMul(normed, static_cast<int>(logit_rows), w.head.values, w.head.rows, w.head.cols, logits);
  }
  return absl::OkStatus();
}

}  // namespace anyprec
