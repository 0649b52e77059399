// The fp32 forward pass of a Llama-family model on the CPU, readable top to bottom in
// transformer.cc: embedding, then per layer RMSNorm, attention with RoPE and a KV cache,
// SwiGLU MLP and residuals, then the final norm and the head.
#pragma once

#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/arch.h"
#include "engine/model/model.h"
#include "engine/runtime/kv_cache.h"
#include "engine/tokenizer/tokenizer.h"

namespace anyprec {

enum class LogitsFor { kLastToken, kAllTokens };

using LinearInput = arch::LinearInput;

// Sees every linear layer's input rows as the forward pass runs (e.g. to gather
// calibration statistics for quantization).
class LinearInputObserver {
 public:
  virtual ~LinearInputObserver() = default;
  // `rows` holds tokens x width activations.
  virtual void Observe(int layer, LinearInput input, std::span<const float> rows, int width) = 0;
};

struct ForwardOptions {
  // The width to run at, one of ModelWidths (engine/model/width.h): 0 for an unquantized model.
  int bits = 0;
  // Bitplane layers run on the integer kernel where the CPU has one (cpu::ChooseKernel), about 1%
  // off the exact result; set this for the exact fp32 kernel everywhere.
  bool exact_kernels = false;
  LinearInputObserver* observer = nullptr;
};

// One sequence's share of a batched forward step.
struct SequenceStep {
  std::span<const TokenId> tokens;  // run at positions cache->length() onwards
  KvCache* cache;
  int bits = 0;                      // this sequence's width (see ForwardOptions::bits)
  LogitsFor which = LogitsFor::kLastToken;
};

class CudaForward;

class Transformer {
 public:
  // `model` (and `gpu`, when given) must outlive the transformer. With `gpu`, forward
  // passes run on the GPU, except those that ask for exact kernels or observe activations.
  explicit Transformer(const Model& model, CudaForward* gpu = nullptr) : model_(model), gpu_(gpu) {}

  const ModelConfig& config() const { return model_.config(); }

  // Runs `tokens` at positions cache.length() onwards (a whole prompt at once, or one
  // decode step), appends their keys and values to `cache`, and writes logits into
  // `logits`: vocab_size floats for the last token, or tokens x vocab_size for all.
  absl::Status Forward(std::span<const TokenId> tokens, KvCache& cache, LogitsFor which, std::span<float> logits,
                       const ForwardOptions& options = {});

  // Several sequences in one step (continuous batching): each with its own cache, tokens
  // (a prompt chunk or one decode token) and width; the linear layers run once over all
  // their rows, mixing widths. `logits` holds each step's rows in order (one, or one per
  // token for kAllTokens). options.bits is ignored; each step carries its own.
  absl::Status ForwardBatch(std::span<const SequenceStep> steps, std::span<float> logits, const ForwardOptions& options = {});

 private:
  // Activations of one Forward call, kept between calls to avoid reallocating.
  struct Scratch {
    std::vector<float> x, normed, q, k, v, attention, gate, up, projected;
    std::vector<int> positions;
    std::vector<int> bits;
    void Resize(const ModelConfig& c, int tokens);
  };

  const Model& model_;
  CudaForward* gpu_;
  Scratch scratch_;
};

}  // namespace anyprec
