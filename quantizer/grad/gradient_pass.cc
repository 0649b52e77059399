#include "quantizer/grad/gradient_pass.h"

#include <algorithm>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "engine/model/arch.h"
#include "quantizer/grad/backward_ops.h"

namespace anyprec::grad {
namespace {

// The fast operators for float, the references for anything else.
template <typename T>
void ProjectLinear(std::span<const T> x, int tokens, const anyprec::Linear& w, std::span<T> y) {
  if constexpr (std::is_same_v<T, float>) {
    LinearForward(x, tokens, w.dense, w.rows, w.cols, y);
  } else {
    reference::LinearForward<T>(x, tokens, w.dense, w.rows, w.cols, y);
  }
  if (w.bias.empty()) return;
  for (size_t i = 0; i < y.size(); ++i) y[i] += w.bias[i % w.bias.size()];
}

template <typename T>
void InputGradient(std::span<const T> dy, int tokens, const anyprec::Linear& w, std::span<T> dx, bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    LinearInputGradient(dy, tokens, w.dense, w.rows, w.cols, dx, accumulate);
  } else {
    reference::LinearInputGradient<T>(dy, tokens, w.dense, w.rows, w.cols, dx, accumulate);
  }
}

template <typename T>
void WeightGradient(std::span<const T> dy, std::span<const T> x, int tokens, const anyprec::Linear& w, std::span<T> dw) {
  if constexpr (std::is_same_v<T, float>) {
    LinearWeightGradient(dy, x, tokens, w.rows, w.cols, dw);
  } else {
    reference::LinearWeightGradient<T>(dy, x, tokens, w.rows, w.cols, dw);
  }
}

template <typename T>
void Attention(std::span<const T> q, std::span<const T> k, std::span<const T> v, int tokens, const AttentionShape& shape,
               std::span<T> out) {
  if constexpr (std::is_same_v<T, float>) {
    CausalAttentionForward(q, k, v, tokens, shape, out);
  } else {
    reference::CausalAttentionForward<T>(q, k, v, tokens, shape, out);
  }
}

template <typename T>
void AttentionGradient(std::span<const T> q, std::span<const T> k, std::span<const T> v, std::span<const T> dout,
                       int tokens, const AttentionShape& shape, std::span<T> dq, std::span<T> dk, std::span<T> dv) {
  if constexpr (std::is_same_v<T, float>) {
    CausalAttentionBackward(q, k, v, dout, tokens, shape, dq, dk, dv);
  } else {
    reference::CausalAttentionBackward<T>(q, k, v, dout, tokens, shape, dq, dk, dv);
  }
}

template <typename T>
void AddInPlace(std::span<T> x, std::span<const T> delta) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
}

}  // namespace

template <typename T>
absl::Status GradientPass<T>::Validate(std::span<const TokenId> inputs, std::span<const TokenId> targets) const {
  if (inputs.empty() || inputs.size() != targets.size()) {
    return absl::InvalidArgumentError(absl::StrCat("a window needs as many targets as inputs, and at least one (got ",
                                                   inputs.size(), " and ", targets.size(), ")"));
  }
  if (weights_.embedding.is_int8() || weights_.head.is_int8()) {
    return absl::FailedPreconditionError("the gradient pass needs an fp32 embedding and head (a Hugging Face model, not an int8 image)");
  }
  if (static_cast<int>(inputs.size()) > config_.context_length()) {
    return absl::InvalidArgumentError(absl::StrCat("a window of ", inputs.size(), " tokens exceeds the model's ",
                                                   config_.context_length(), " positions"));
  }
  for (std::span<const TokenId> ids : {inputs, targets}) {
    for (TokenId id : ids) {
      if (id < 0 || id >= config_.vocab_size) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
    }
  }
  for (const LayerWeights& layer : weights_.layers) {
    for (const anyprec::Linear* linear : layer.linears()) {
      if (linear->is_quantized()) return absl::InvalidArgumentError("gradients need the dense model, not an anyprec image");
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<double> GradientPass<T>::Loss(std::span<const TokenId> inputs, std::span<const TokenId> targets) {
  if (absl::Status s = Validate(inputs, targets); !s.ok()) return s;
  return Forward(inputs, targets);
}

template <typename T>
absl::StatusOr<double> GradientPass<T>::LossAndGradients(std::span<const TokenId> inputs, std::span<const TokenId> targets,
                                                         const GradientSink& sink) {
  if (absl::Status s = Validate(inputs, targets); !s.ok()) return s;
  const double loss = Forward(inputs, targets);
  Backward(static_cast<int>(inputs.size()), sink);
  return loss;
}

template <typename T>
double GradientPass<T>::Forward(std::span<const TokenId> inputs, std::span<const TokenId> targets) {
  const ModelConfig& c = config_;
  const int n = static_cast<int>(inputs.size());
  const size_t rows = n;
  const RopeFrequencies rope = RopeFrequenciesFor(c, n);  // the window is one pass from position 0
  activations_.resize(c.num_layers);

  std::vector<T> x(rows * c.hidden_size);
  for (int t = 0; t < n; ++t) {
    const std::span<const float> embedding = weights_.embedding.Row(inputs[t]);
    for (int i = 0; i < c.hidden_size; ++i) x[static_cast<size_t>(t) * c.hidden_size + i] = embedding[i] * c.embedding_scale;
  }
  std::vector<T> normed(rows * c.hidden_size), projected(rows * c.hidden_size), hidden(rows * c.intermediate_size);
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& l = weights_.layers[layer];
    LayerActivations& a = activations_[layer];
    a.input = x;
    a.q.resize(rows * c.q_dim());
    a.k.resize(rows * c.kv_dim());
    a.v.resize(rows * c.kv_dim());
    a.attention.resize(rows * c.q_dim());
    a.gate.resize(rows * c.intermediate_size);
    a.up.resize(rows * c.intermediate_size);

    RmsNormForward<T>(x, l.attn_norm, c.rms_norm_eps, normed);
    ProjectLinear<T>(normed, n, l.wq, a.q);
    ProjectLinear<T>(normed, n, l.wk, a.k);
    ProjectLinear<T>(normed, n, l.wv, a.v);
    if (c.qk_norm) {
      a.q_projected = a.q;
      a.k_projected = a.k;
      RmsNormForward<T>(a.q_projected, l.q_norm, c.rms_norm_eps, a.q);
      RmsNormForward<T>(a.k_projected, l.k_norm, c.rms_norm_eps, a.k);
    }
    RopeForward<T>(a.q, n, c.num_heads, c.head_dim, rope);
    RopeForward<T>(a.k, n, c.num_kv_heads, c.head_dim, rope);
    Attention<T>(a.q, a.k, a.v, n, {c.num_heads, c.num_kv_heads, c.head_dim, c.WindowOf(layer)}, a.attention);
    ProjectLinear<T>(a.attention, n, l.wo, projected);
    AddInPlace<T>(x, projected);
    a.middle = x;

    RmsNormForward<T>(x, l.ffn_norm, c.rms_norm_eps, normed);
    ProjectLinear<T>(normed, n, l.w_gate, a.gate);
    ProjectLinear<T>(normed, n, l.w_up, a.up);
    GluForward<T>(c.mlp_activation, a.gate, a.up, hidden);
    ProjectLinear<T>(hidden, n, l.w_down, projected);
    AddInPlace<T>(x, projected);
  }
  final_ = std::move(x);
  RmsNormForward<T>(final_, weights_.final_norm, c.rms_norm_eps, normed);
  logits_.resize(rows * c.vocab_size);
  const anyprec::Linear head{weights_.head.rows, weights_.head.cols, weights_.head.values, {}, {}};
  ProjectLinear<T>(normed, n, head, logits_);
  // The gradient of the loss replaces the logits in place.
  return CrossEntropy<T>(logits_, targets, c.vocab_size, logits_);
}

template <typename T>
void GradientPass<T>::Backward(int n, const GradientSink& sink) {
  const ModelConfig& c = config_;
  const size_t rows = n;
  const RopeFrequencies rope = RopeFrequenciesFor(c, n);

  size_t largest = 0;
  for (const anyprec::Linear* linear : weights_.layers[0].linears()) largest = std::max(largest, linear->dense.size());
  std::vector<T> weight_gradient(largest);
  const auto hand_over = [&](int layer, int index, std::span<const T> dy, std::span<const T> x, const anyprec::Linear& w) {
    const std::span<T> dw = std::span<T>(weight_gradient).first(w.dense.size());
    WeightGradient<T>(dy, x, n, w, dw);
    sink(layer, index, dw);
  };

  // Head and final norm: dx is the gradient at the last layer's output.
  std::vector<T> dnormed(rows * c.hidden_size), normed(rows * c.hidden_size), dx(rows * c.hidden_size);
  const anyprec::Linear head{weights_.head.rows, weights_.head.cols, weights_.head.values, {}, {}};
  InputGradient<T>(logits_, n, head, dnormed, false);
  RmsNormBackward<T>(final_, weights_.final_norm, c.rms_norm_eps, dnormed, dx);

  std::vector<T> hidden(rows * c.intermediate_size), dhidden(rows * c.intermediate_size);
  std::vector<T> dgate(rows * c.intermediate_size), dup(rows * c.intermediate_size);
  std::vector<T> dattention(rows * c.q_dim()), dq(rows * c.q_dim()), dk(rows * c.kv_dim()), dv(rows * c.kv_dim());
  std::vector<T> dresidual(rows * c.hidden_size);
  for (int layer = c.num_layers - 1; layer >= 0; --layer) {
    const LayerWeights& l = weights_.layers[layer];
    const LayerActivations& a = activations_[layer];

    // MLP block: out = middle + down(act(gate(n2)) * up(n2)), n2 = norm(middle).
    RmsNormForward<T>(a.middle, l.ffn_norm, c.rms_norm_eps, normed);
    GluForward<T>(c.mlp_activation, a.gate, a.up, hidden);
    hand_over(layer, arch::Index(arch::LinearId::kDown), dx, hidden, l.w_down);
    InputGradient<T>(dx, n, l.w_down, dhidden, false);
    GluBackward<T>(c.mlp_activation, a.gate, a.up, dhidden, dgate, dup);
    hand_over(layer, arch::Index(arch::LinearId::kGate), dgate, normed, l.w_gate);
    hand_over(layer, arch::Index(arch::LinearId::kUp), dup, normed, l.w_up);
    InputGradient<T>(dgate, n, l.w_gate, dnormed, false);
    InputGradient<T>(dup, n, l.w_up, dnormed, true);
    RmsNormBackward<T>(a.middle, l.ffn_norm, c.rms_norm_eps, dnormed, dresidual);
    AddInPlace<T>(dx, dresidual);

    // Attention block: middle = input + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 =
    // norm(input), with q and k each normed per head before RoPE where the family does.
    RmsNormForward<T>(a.input, l.attn_norm, c.rms_norm_eps, normed);
    hand_over(layer, arch::Index(arch::LinearId::kO), dx, a.attention, l.wo);
    InputGradient<T>(dx, n, l.wo, dattention, false);
    AttentionGradient<T>(a.q, a.k, a.v, dattention, n, {c.num_heads, c.num_kv_heads, c.head_dim, c.WindowOf(layer)}, dq, dk, dv);
    RopeBackward<T>(dq, n, c.num_heads, c.head_dim, rope);
    RopeBackward<T>(dk, n, c.num_kv_heads, c.head_dim, rope);
    if (c.qk_norm) {
      const std::vector<T> dq_normed = dq;
      const std::vector<T> dk_normed = dk;
      RmsNormBackward<T>(a.q_projected, l.q_norm, c.rms_norm_eps, dq_normed, dq);
      RmsNormBackward<T>(a.k_projected, l.k_norm, c.rms_norm_eps, dk_normed, dk);
    }
    hand_over(layer, arch::Index(arch::LinearId::kQ), dq, normed, l.wq);
    hand_over(layer, arch::Index(arch::LinearId::kK), dk, normed, l.wk);
    hand_over(layer, arch::Index(arch::LinearId::kV), dv, normed, l.wv);
    InputGradient<T>(dq, n, l.wq, dnormed, false);
    InputGradient<T>(dk, n, l.wk, dnormed, true);
    InputGradient<T>(dv, n, l.wv, dnormed, true);
    RmsNormBackward<T>(a.input, l.attn_norm, c.rms_norm_eps, dnormed, dresidual);
    AddInPlace<T>(dx, dresidual);
  }
}

size_t GradientPassBytes(const ModelConfig& c, int tokens) {
  const size_t rows = tokens;
  const size_t per_layer = rows * (2 * c.hidden_size + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.intermediate_size +
                                   (c.qk_norm ? c.q_dim() + c.kv_dim() : 0));
  const size_t scratch = rows * (4 * c.hidden_size + 4 * c.intermediate_size + 2 * c.q_dim() + 2 * c.kv_dim());
  const size_t largest_linear = static_cast<size_t>(std::max(c.q_dim(), c.intermediate_size)) *
                                std::max(c.hidden_size, c.intermediate_size);
  return sizeof(float) * (c.num_layers * per_layer + rows * c.vocab_size + scratch + largest_linear);
}

template class GradientPass<float>;
template class GradientPass<double>;

}  // namespace anyprec::grad
