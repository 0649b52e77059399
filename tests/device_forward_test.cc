// The one graph walk (Transformer) on the CUDA device over the host emulation of the CUDA
// backend (tests/host_backend.h), against the same walk on the CPU device, on an image
// quantized from the real TinyStories-656K: the same logits (up to fp16 activations) at 3, 4
// and 8 bits, in mixed batches over a shared block pool and with a prompt chunk, and sane
// device allocations; and what the CUDA device refuses.
#include "engine/device/cuda_device.h"

#include <optional>

#include "engine/base/relative_error.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/transformer.h"
#include "gtest/gtest.h"
#include "tests/host_backend.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

// fp16 activations into the linear layers where the CPU keeps fp32.
constexpr double kLogitBound = 2e-2;


TEST(CudaDevice, RunsTheGraphAsTheCpuDoesOnTheHostEmulation) {
  absl::StatusOr<Model> loaded = Model::Load(testing::TinyStoriesImage());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto uploaded = std::make_unique<Model>(*std::move(loaded));
  testing::HostBackend backend(size_t{256} << 20);
  absl::StatusOr<std::unique_ptr<Device>> device = MakeCudaDevice(*uploaded, backend);
  ASSERT_TRUE(device.ok()) << device.status();
  // The model moves after the upload and the object it was is freed: the device must not
  // keep pointing at it (ASan sees it if so).
  const std::optional<Model> model(std::move(*uploaded));
  uploaded.reset();
  const ModelConfig& c = model->config();
  Transformer cpu(*model, {.exact_kernels = true});
  Transformer gpu(*model, **device);
  const std::vector<TokenId> prompt = {1, 80, 147, 201, 282, 57, 300, 12, 450, 99, 7};

  for (const int bits : {3, 4, 8}) {
    SCOPED_TRACE(bits);
    std::vector<float> want(prompt.size() * c.vocab_size);
    std::vector<float> got(want.size());
    KvCache cpu_cache(c, 64);
    KvCache gpu_cache(c, 64);
    ForwardOptions options;
    options.bits = bits;
    ASSERT_TRUE(cpu.Forward(prompt, cpu_cache, LogitsFor::kAllTokens, want, options).ok());
    const absl::Status status = gpu.Forward(prompt, gpu_cache, LogitsFor::kAllTokens, got, options);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_LT(MaxRelativeError(got, want), kLogitBound);
    // Decode steps continue from the cache.
    for (int step = 0; step < 3; ++step) {
      const std::vector<TokenId> next = {ArgMax(std::span<const float>(want).last(c.vocab_size))};
      want.assign(c.vocab_size, 0);
      got.assign(c.vocab_size, 0);
      ASSERT_TRUE(cpu.Forward(next, cpu_cache, LogitsFor::kLastToken, want, options).ok());
      ASSERT_TRUE(gpu.Forward(next, gpu_cache, LogitsFor::kLastToken, got, options).ok());
      EXPECT_LT(MaxRelativeError(got, want), kLogitBound) << "decode step " << step;
    }
  }

  // Three sequences at widths 3, 4, 8 in one batch, their caches in one shared pool.
  KvBlockPool cpu_pool(c, 4, 32);
  KvBlockPool gpu_pool(c, 4, 32);
  std::vector<std::unique_ptr<KvCache>> cpu_caches;
  std::vector<std::unique_ptr<KvCache>> gpu_caches;
  const std::vector<int> widths = {3, 4, 8};
  for (size_t s = 0; s < widths.size(); ++s) {
    cpu_caches.push_back(std::make_unique<KvCache>(cpu_pool));
    gpu_caches.push_back(std::make_unique<KvCache>(gpu_pool));
    ASSERT_TRUE(cpu_caches.back()->Reserve(20) && gpu_caches.back()->Reserve(20));  // 5 of the pool's blocks each
  }
  // A prefill step of different lengths, then decode steps: the sequences stand at different
  // positions in every step after the first.
  std::vector<std::vector<TokenId>> inputs;
  for (size_t s = 0; s < widths.size(); ++s) inputs.emplace_back(prompt.begin(), prompt.end() - static_cast<long>(s));
  std::vector<float> want(widths.size() * c.vocab_size);
  std::vector<float> got(want.size());
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(step);
    std::vector<SequenceStep> cpu_steps;
    std::vector<SequenceStep> gpu_steps;
    for (size_t s = 0; s < widths.size(); ++s) {
      cpu_steps.push_back({inputs[s], cpu_caches[s].get(), widths[s], LogitsFor::kLastToken});
      gpu_steps.push_back({inputs[s], gpu_caches[s].get(), widths[s], LogitsFor::kLastToken});
    }
    ASSERT_TRUE(cpu.ForwardBatch(cpu_steps, want).ok());
    const absl::Status status = gpu.ForwardBatch(gpu_steps, got);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_LT(MaxRelativeError(got, want), kLogitBound);
    for (size_t s = 0; s < widths.size(); ++s) inputs[s] = {ArgMax(std::span<const float>(want).subspan(s * c.vocab_size, c.vocab_size))};
  }
  EXPECT_LT(backend.largest_allocation(), size_t{64} << 20) << "no device buffer should approach the model's size";

  // A prompt's second chunk of 40 tokens at width 4 (through the dequantized GEMM), batched with
  // a decode token at width 8 (the GEMV) of a sequence further along.
  std::vector<TokenId> long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt.push_back(1 + (i * 37) % (c.vocab_size - 1));
  const std::span<const TokenId> first_chunk = std::span<const TokenId>(long_prompt).first(20);
  const std::span<const TokenId> second_chunk = std::span<const TokenId>(long_prompt).subspan(20);
  KvCache cpu_long(c, 64), gpu_long(c, 64), cpu_short(c, 64), gpu_short(c, 64);
  want.assign(c.vocab_size, 0);
  ASSERT_TRUE(cpu.Forward(first_chunk, cpu_long, LogitsFor::kLastToken, want, {4}).ok());
  ASSERT_TRUE(gpu.Forward(first_chunk, gpu_long, LogitsFor::kLastToken, want, {4}).ok());
  ASSERT_TRUE(cpu.Forward(prompt, cpu_short, LogitsFor::kLastToken, want, {8}).ok());
  ASSERT_TRUE(gpu.Forward(prompt, gpu_short, LogitsFor::kLastToken, want, {8}).ok());
  const std::vector<TokenId> one = {prompt.front()};
  const std::vector<SequenceStep> cpu_mix = {{second_chunk, &cpu_long, 4, LogitsFor::kAllTokens}, {one, &cpu_short, 8, LogitsFor::kLastToken}};
  const std::vector<SequenceStep> gpu_mix = {{second_chunk, &gpu_long, 4, LogitsFor::kAllTokens}, {one, &gpu_short, 8, LogitsFor::kLastToken}};
  want.assign((second_chunk.size() + 1) * c.vocab_size, 0);
  got.assign(want.size(), 0);
  ASSERT_TRUE(cpu.ForwardBatch(cpu_mix, want).ok());
  const absl::Status mixed = gpu.ForwardBatch(gpu_mix, got);
  ASSERT_TRUE(mixed.ok()) << mixed;
  EXPECT_LT(MaxRelativeError(got, want), kLogitBound);
}

class NoActivations final : public LinearInputObserver {
 public:
  void Observe(int, LinearInput, std::span<const float>, int) override { ADD_FAILURE() << "device memory shown to the host"; }
};

TEST(CudaDevice, RefusesWhatItCannotHonour) {
  absl::StatusOr<Model> model = Model::Load(testing::TinyStoriesImage());
  ASSERT_TRUE(model.ok()) << model.status();
  testing::HostBackend backend(size_t{256} << 20);
  absl::StatusOr<std::unique_ptr<Device>> device = MakeCudaDevice(*model, backend);
  ASSERT_TRUE(device.ok()) << device.status();
  Transformer gpu(*model, **device);
  const ModelConfig& c = model->config();
  const std::vector<TokenId> prompt = {1, 80, 147};
  std::vector<float> logits(c.vocab_size);

  KvCache half(c, 8, cpu::KvDType::kF16);
  const absl::Status f16 = gpu.Forward(prompt, half, LogitsFor::kLastToken, logits, {3});
  EXPECT_EQ(f16.code(), absl::StatusCode::kFailedPrecondition) << f16;
  EXPECT_NE(f16.message().find("fp32 keys and values"), std::string_view::npos) << f16;
  EXPECT_EQ(half.length(), 0);

  KvCache cache(c, 8);
  NoActivations observer;
  const absl::Status observed = gpu.Forward(prompt, cache, LogitsFor::kLastToken, logits, {3, &observer});
  EXPECT_EQ(observed.code(), absl::StatusCode::kFailedPrecondition) << observed;
  EXPECT_TRUE(gpu.Forward(prompt, cache, LogitsFor::kLastToken, logits, {3}).ok());
}

}  // namespace
}  // namespace anyprec
