// The language-model loss of one window and its gradient with respect to every linear
// layer's weight, on the CPU: a forward pass that keeps each layer's activations, then the
// backward pass through head, final norm and the layers in reverse (SwiGLU MLP, attention
// with RoPE and a causal mask, RMSNorms, residuals). Gradients only: no optimizer.
//
// GradientPass<float> is the one to use (fast operators, all cores); GradientPass<double>
// runs the plain reference operators in double, for gradient checks.
//
// Memory: the model's weights, one window's activations (per layer about
// tokens x (2 hidden + 2 q + 2 kv + 2 intermediate) values, plus tokens x vocab logits),
// and one gradient buffer the size of the largest linear layer.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec::grad {

template <typename T>
class GradientPass {
 public:
  // Called once per linear layer with dL/dW [rows, cols]; `linear` counts in
  // an index into arch::kLinears (q, k, v, o, gate, up, down). The span dies after the call.
  using GradientSink = std::function<void(int layer, int linear, std::span<const T> gradient)>;

  // `config` and `weights` (dense fp32, not an anyprec image) must outlive the pass.
  GradientPass(const ModelConfig& config, const ModelWeights& weights) : config_(config), weights_(weights) {}

  // The mean negative log-likelihood (nats) of targets[t] after inputs[0..t].
  absl::StatusOr<double> Loss(std::span<const TokenId> inputs, std::span<const TokenId> targets);

  // The same loss, and the gradient of every linear layer's weight handed to `sink`.
  absl::StatusOr<double> LossAndGradients(std::span<const TokenId> inputs, std::span<const TokenId> targets,
                                          const GradientSink& sink);

 private:
  // What the backward pass needs of one layer: its input, the attention's q and k (after
  // RoPE; and before their norms, with q/k norms) and v, the attention output, the residual
  // between the blocks, gate and up.
  struct LayerActivations {
    std::vector<T> input, q, k, v, q_projected, k_projected, attention, middle, gate, up;
  };

  absl::Status Validate(std::span<const TokenId> inputs, std::span<const TokenId> targets) const;
  // Runs the forward pass and the loss; leaves activations_, final_ and logits_ set.
  double Forward(std::span<const TokenId> inputs, std::span<const TokenId> targets);
  void Backward(int tokens, const GradientSink& sink);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  std::vector<LayerActivations> activations_;
  std::vector<T> final_;    // the last layer's output, before the final norm
  std::vector<T> logits_;   // [tokens, vocab]; after Forward, the loss's gradient
};

// Bytes GradientPass<float> allocates for a window of `tokens`: activations, scratch and
// the gradient buffer (the model's weights not included).
size_t GradientPassBytes(const ModelConfig& config, int tokens);

extern template class GradientPass<float>;
extern template class GradientPass<double>;

}  // namespace anyprec::grad
