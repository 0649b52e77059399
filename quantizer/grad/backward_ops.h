// The operators of the gradient pass: each forward operator whose inputs the backward pass
// needs, and its backward. They are templates on the scalar type: double for gradient
// checks against finite differences, float for the pass itself. Matrix products and
// attention, which hold nearly all of the work, also have fast float versions (OpenBLAS,
// and all cores); the templates in `reference` are what the tests hold them to. The other
// operators are linear in the activations' size and stay plain scalar code.
//
// Shapes are row-major: `tokens` rows of activations, weights [rows, cols] as in PyTorch's
// Linear.weight. A window runs from position 0, as the perplexity protocol does.
#pragma once

#include <algorithm>
#include <span>

#include "engine/cpu/ops.h"
#include "engine/model/rope.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec::grad {

using cpu::AttentionShape;

// y[t, r] = sum_c x[t, c] w[r, c].
void LinearForward(std::span<const float> x, int tokens, std::span<const float> w, int rows, int cols, std::span<float> y);
// dx[t, c] = sum_r dy[t, r] w[r, c], added to dx when `accumulate`.
void LinearInputGradient(std::span<const float> dy, int tokens, std::span<const float> w, int rows, int cols,
                         std::span<float> dx, bool accumulate);
// dw[r, c] = sum_t dy[t, r] x[t, c].
void LinearWeightGradient(std::span<const float> dy, std::span<const float> x, int tokens, int rows, int cols,
                          std::span<float> dw);
// Causal grouped-query attention of rows at positions 0..tokens-1; q and out are
// [tokens, heads * head_dim], k and v [tokens, kv_heads * head_dim].
void CausalAttentionForward(std::span<const float> q, std::span<const float> k, std::span<const float> v, int tokens,
                            const AttentionShape& shape, std::span<float> out);
// Gradients of the inputs from dout; the probabilities are recomputed, not stored.
void CausalAttentionBackward(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                             std::span<const float> dout, int tokens, const AttentionShape& shape, std::span<float> dq,
                             std::span<float> dk, std::span<float> dv);

namespace reference {

template <typename T>
void LinearForward(std::span<const T> x, int tokens, std::span<const float> w, int rows, int cols, std::span<T> y);
template <typename T>
void LinearInputGradient(std::span<const T> dy, int tokens, std::span<const float> w, int rows, int cols, std::span<T> dx,
                         bool accumulate);
template <typename T>
void LinearWeightGradient(std::span<const T> dy, std::span<const T> x, int tokens, int rows, int cols, std::span<T> dw);
template <typename T>
void CausalAttentionForward(std::span<const T> q, std::span<const T> k, std::span<const T> v, int tokens,
                            const AttentionShape& shape, std::span<T> out);
template <typename T>
void CausalAttentionBackward(std::span<const T> q, std::span<const T> k, std::span<const T> v, std::span<const T> dout,
                             int tokens, const AttentionShape& shape, std::span<T> dq, std::span<T> dk, std::span<T> dv);

}  // namespace reference

// y = x / rms(x) * weight, per row of width weight.size().
template <typename T>
void RmsNormForward(std::span<const T> x, std::span<const float> weight, float eps, std::span<T> y);
// dx from dy (the weight's own gradient is not needed: norms are not quantized).
template <typename T>
void RmsNormBackward(std::span<const T> x, std::span<const float> weight, float eps, std::span<const T> dy, std::span<T> dx);

// Rotary embedding in Hugging Face's half-split layout with `f`'s frequencies (as cpu::Rope),
// in place, row t at position t. The backward rotates the gradient back by the same angles.
template <typename T>
void RopeForward(std::span<T> x, int tokens, int num_heads, int head_dim, const RopeFrequencies& f);
template <typename T>
void RopeBackward(std::span<T> dx, int tokens, int num_heads, int head_dim, const RopeFrequencies& f);

// h = act(gate) * up.
template <typename T>
void GluForward(MlpActivation act, std::span<const T> gate, std::span<const T> up, std::span<T> h);
template <typename T>
void GluBackward(MlpActivation act, std::span<const T> gate, std::span<const T> up, std::span<const T> dh, std::span<T> dgate,
                 std::span<T> dup);

// The mean over rows of -log softmax(logits[t])[targets[t]], and its gradient in dlogits.
template <typename T>
double CrossEntropy(std::span<const T> logits, std::span<const TokenId> targets, int vocab, std::span<T> dlogits);

}  // namespace anyprec::grad
