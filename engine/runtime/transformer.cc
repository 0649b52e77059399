#include "engine/runtime/transformer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/model/width.h"

namespace anyprec {

absl::Status Transformer::Forward(std::span<const TokenId> tokens, KvCache& cache, LogitsFor which, std::span<float> logits,
                                  const ForwardOptions& options) {
  const SequenceStep step{tokens, &cache, options.bits, which};
  return ForwardBatch(std::span<const SequenceStep>(&step, 1), logits, options);
}

absl::Status Transformer::ForwardBatch(std::span<const SequenceStep> steps, std::span<float> logits, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  if (steps.empty()) return absl::InvalidArgumentError("no sequences to run");
  const int first_layer = options.first_layer;
  const int end_layer = options.end_layer < 0 ? c.num_layers : options.end_layer;
  const bool embeds = first_layer == 0;
  const bool makes_logits = options.hidden.empty() || !logits.empty();
  if (first_layer < 0 || first_layer > end_layer || end_layer > c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layers [", first_layer, ", ", end_layer, ") of a model with ", c.num_layers));
  }
  if (makes_logits && end_layer < c.num_layers) {
    return absl::InvalidArgumentError("a pass that stops before the last layer writes hidden states, not logits");
  }
  if ((options.observer != nullptr || !embeds || !makes_logits) && !device_->host_visible()) {
    return absl::FailedPreconditionError("observing activations or running part of the layers needs a device whose memory the host reads (the CPU)");
  }
  // The token rows of all sequences, one after another; linear layers run on all of them at
  // once (each row at its sequence's width), attention on each sequence against its cache.
  StepRows& r = rows_;
  r.ids.clear();
  r.positions.clear();
  r.bits.clear();
  r.sequences.clear();
  std::vector<int> logit_rows;
  for (const SequenceStep& step : steps) {
    const int count = static_cast<int>(step.tokens.size());
    if (count == 0) return absl::InvalidArgumentError("no tokens to run");
    if (step.cache->length() + count > step.cache->capacity()) {
      return absl::OutOfRangeError(
          absl::StrCat("context full: ", step.cache->length(), " + ", count, " tokens exceed ", step.cache->capacity()));
    }
    RETURN_IF_ERROR(ModelWidths(c).Check(step.bits, "bits", "this model's"));
    r.sequences.push_back({r.rows(), count, step.cache});
    for (int i = 0; i < count; ++i) {
      const TokenId id = step.tokens[i];
      if (id < 0 || id >= c.vocab_size) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
      if (step.which == LogitsFor::kAllTokens || i + 1 == count) logit_rows.push_back(r.rows());
      r.ids.push_back(id);
      r.positions.push_back(step.cache->length() + i);
      r.bits.push_back(step.bits);
    }
  }
  if (!makes_logits) logit_rows.clear();
  if (logits.size() != logit_rows.size() * c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer holds ", logits.size(), " floats, need ", logit_rows.size() * c.vocab_size));
  }
  if ((!embeds || !makes_logits) && options.hidden.size() != r.ids.size() * c.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("hidden states hold ", options.hidden.size(), " floats, need ", r.ids.size() * c.hidden_size));
  }

  Device& d = *device_;
  const size_t n = r.ids.size();
  const size_t h = c.hidden_size;
  const auto buffer = [&](Activations which, size_t width) { return d.Buffer(which, n * width); };
  ASSIGN_OR_RETURN(float* const x, buffer(Activations::kX, h));
  ASSIGN_OR_RETURN(float* const normed, buffer(Activations::kNormed, h));
  ASSIGN_OR_RETURN(float* const q, buffer(Activations::kQ, c.q_dim()));
  ASSIGN_OR_RETURN(float* const k, buffer(Activations::kK, c.kv_dim()));
  ASSIGN_OR_RETURN(float* const v, buffer(Activations::kV, c.kv_dim()));
  ASSIGN_OR_RETURN(float* const attention, buffer(Activations::kAttention, c.q_dim()));
  ASSIGN_OR_RETURN(float* const gate, buffer(Activations::kGate, c.intermediate_size));
  ASSIGN_OR_RETURN(float* const up, buffer(Activations::kUp, c.intermediate_size));
  ASSIGN_OR_RETURN(float* const projected, buffer(Activations::kProjected, h));
  const auto observe = [&](int layer, LinearInput input, const float* rows, int width) {
    if (options.observer != nullptr) options.observer->Observe(layer, input, {rows, n * width}, width);
  };
  using arch::LinearId;

  RETURN_IF_ERROR(d.BeginStep(r));
  if (embeds) {
    RETURN_IF_ERROR(d.Embed(x));
  } else {
    std::copy(options.hidden.begin(), options.hidden.end(), x);
  }
  for (int layer = first_layer; layer < end_layer; ++layer) {
    // Attention block.
    RETURN_IF_ERROR(d.RmsNorm(Norm::kAttention, layer, x, r.rows(), normed));
    observe(layer, LinearInput::kAttention, normed, c.hidden_size);
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kQ, normed, q));
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kK, normed, k));
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kV, normed, v));
    if (c.qk_norm) {
      RETURN_IF_ERROR(d.RmsNorm(Norm::kQuery, layer, q, r.rows() * c.num_heads, q));
      RETURN_IF_ERROR(d.RmsNorm(Norm::kKey, layer, k, r.rows() * c.num_kv_heads, k));
    }
    RETURN_IF_ERROR(d.Rope(q, c.num_heads));
    RETURN_IF_ERROR(d.Rope(k, c.num_kv_heads));
    for (int s = 0; s < static_cast<int>(r.sequences.size()); ++s) {
      RETURN_IF_ERROR(d.AppendKv(layer, s, k, v));
      RETURN_IF_ERROR(d.Attention(layer, s, q, attention));
    }
    observe(layer, LinearInput::kAttentionOutput, attention, c.q_dim());
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kO, attention, projected));
    RETURN_IF_ERROR(d.Add(x, projected, n * h));

    // MLP block.
    RETURN_IF_ERROR(d.RmsNorm(Norm::kMlp, layer, x, r.rows(), normed));
    observe(layer, LinearInput::kMlp, normed, c.hidden_size);
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kGate, normed, gate));
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kUp, normed, up));
    RETURN_IF_ERROR(d.Glu(gate, up, n * c.intermediate_size));
    observe(layer, LinearInput::kMlpHidden, gate, c.intermediate_size);
    RETURN_IF_ERROR(d.Linear(layer, LinearId::kDown, gate, projected));
    RETURN_IF_ERROR(d.Add(x, projected, n * h));
  }
  for (const SequenceStep& step : steps) step.cache->Advance(static_cast<int>(step.tokens.size()));
  if (!makes_logits) {
    std::copy(x, x + n * h, options.hidden.begin());
    return absl::OkStatus();
  }

  // Final norm and head, only for the rows whose logits are wanted.
  for (size_t i = 0; i < logit_rows.size(); ++i) RETURN_IF_ERROR(d.RmsNorm(Norm::kFinal, 0, x + logit_rows[i] * h, 1, normed + i * h));
  return d.Head(normed, static_cast<int>(logit_rows.size()), logits);
}

}  // namespace anyprec
