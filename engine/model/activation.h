// The gate's activation in a gated MLP, down(act(gate(x)) * up(x)): SwiGLU (Llama, Mistral,
// Qwen, Phi-3) or GeGLU (Gemma). Its own header so that the operators of every device name it.
#pragma once

namespace anyprec {

enum class MlpActivation {
  kSilu,      // x * sigmoid(x)
  kGelu,      // x * Phi(x), with erf ("gelu")
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ("gelu_pytorch_tanh")
};

}  // namespace anyprec
