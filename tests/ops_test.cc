// Every fast CPU operator against its scalar reference on random inputs, in the spirit of
// llama.cpp's test-backend-ops.
#include "engine/cpu/ops.h"

#include <cmath>
#include <random>
#include <vector>

#include "engine/base/relative_error.h"
#include "gtest/gtest.h"
#include "tests/paged_cache.h"
#include "tests/simd_targets.h"

namespace anyprec::cpu {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}


TEST(MatMul, MatchesReferenceOnEveryShapeClass) {
  std::mt19937 rng(7);
  for (int tokens : {1, 3, 17}) {
    for (int rows : {1, 5, 64, 172, 515}) {
      for (int cols : {1, 7, 64, 172, 384}) {
        SCOPED_TRACE(::testing::Message() << tokens << "x" << cols << " * " << rows << "x" << cols);
        const auto x = Random(static_cast<size_t>(tokens) * cols, rng);
        const auto w = Random(static_cast<size_t>(rows) * cols, rng);
        std::vector<float> slow(static_cast<size_t>(tokens) * rows);
        reference::MatMul(x, tokens, w, rows, cols, slow);
        testing::ForEachSimdTarget([&] {
          std::vector<float> fast(slow.size());
          MatMul(x, tokens, w, rows, cols, fast);
          EXPECT_LT(MaxRelativeError(fast, slow), 1e-5);
        });
      }
    }
  }
}

// The int8 matrix times fp32 activations equals the fp32 product with the widened matrix.
TEST(Int8MatMul, MatchesTheWidenedMatrixOnEveryShapeClass) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> entry(-127, 127);
  for (int tokens : {1, 3, 17}) {
    for (int rows : {1, 5, 64, 515}) {
      for (int cols : {1, 7, 64, 172}) {
        SCOPED_TRACE(::testing::Message() << tokens << "x" << cols << " * " << rows << "x" << cols);
        const auto x = Random(static_cast<size_t>(tokens) * cols, rng);
        std::vector<int8_t> q(static_cast<size_t>(rows) * cols);
        for (int8_t& v : q) v = static_cast<int8_t>(entry(rng));
        std::vector<float> scales = Random(rows, rng, 0.01f);
        for (float& s : scales) s = std::abs(s) + 1e-4f;
        std::vector<float> widened(q.size());
        for (size_t i = 0; i < q.size(); ++i) widened[i] = scales[i / cols] * q[i];
        std::vector<float> slow(static_cast<size_t>(tokens) * rows);
        reference::MatMul(x, tokens, widened, rows, cols, slow);
        testing::ForEachSimdTarget([&] {
          std::vector<float> fast(slow.size());
          Int8MatMul(x, tokens, q, scales, rows, cols, fast);
          EXPECT_LT(MaxRelativeError(fast, slow), 1e-5);
        });
      }
    }
  }
}

// The reference reads a contiguous fp32 cache; the fast kernel the same rows paged, in fp32
// or 16 bits (the values representable in both); the reference reads the paged 16-bit rows
// alike.
TEST(Attention, MatchesReferenceForPrefillAndDecodeOverPagedCache) {
  std::mt19937 rng(11);
  for (const KvDType dtype : kKvDTypes) {
    SCOPED_TRACE(KvDTypeName(dtype));
    for (const AttentionShape shape : {AttentionShape{8, 4, 16}, AttentionShape{8, 4, 8}, AttentionShape{4, 1, 64}, AttentionShape{2, 2, 6},
                                       AttentionShape{4, 2, 13}, AttentionShape{8, 4, 16, 5}, AttentionShape{4, 1, 64, 33}}) {
      const int q_width = shape.num_heads * shape.head_dim;
      const testing::PagedCache cache(shape.num_kv_heads * shape.head_dim, rng, dtype);
      for (const std::vector<int>& positions : testing::AttentionPositions()) {
        const auto q = Random(positions.size() * q_width, rng, 2.0f);
        std::vector<float> slow(q.size());
        reference::Attention(q, positions, cache.contiguous(), shape, slow);
        std::vector<float> paged(q.size());
        reference::Attention(q, positions, cache.paged(), shape, paged);
        EXPECT_LT(MaxRelativeError(paged, slow), 1e-6);
        testing::ForEachSimdTarget([&] {
          std::vector<float> fast(q.size(), NAN);
          Attention(q, positions, cache.paged(), shape, fast);
          EXPECT_LT(MaxRelativeError(fast, slow), 1e-5);
        });
      }
    }
  }
}

TEST(RmsNorm, NormalizesEachRow) {
  std::mt19937 rng(3);
  const auto x = Random(3 * 10, rng, 5.0f);
  const auto weight = Random(10, rng);
  std::vector<float> out(x.size());
  RmsNorm(x, weight, 1e-6f, out);
  for (int row = 0; row < 3; ++row) {
    double ms = 0;
    for (int i = 0; i < 10; ++i) ms += x[row * 10 + i] * x[row * 10 + i] / 10.0;
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(out[row * 10 + i], x[row * 10 + i] / std::sqrt(ms + 1e-6) * weight[i], 1e-5);
  }
}

TEST(Rope, RotatesHalfSplitPairsByPosition) {
  const int head_dim = 8;
  std::vector<float> x(2 * head_dim);
  for (int i = 0; i < 2 * head_dim; ++i) x[i] = static_cast<float>(i + 1);
  const std::vector<float> original = x;
  const std::vector<int> positions = {0, 5};
  std::vector<double> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(10000.0, -2.0 * i / head_dim);
  Rope(x, positions, /*num_heads=*/1, head_dim, inv_freq, 1.0);
  for (int i = 0; i < head_dim; ++i) EXPECT_FLOAT_EQ(x[i], original[i]) << "position 0 is the identity";
  for (int i = 0; i < head_dim / 2; ++i) {
    const double angle = 5 * inv_freq[i];
    const double a = original[head_dim + i];
    const double b = original[head_dim + i + head_dim / 2];
    EXPECT_NEAR(x[head_dim + i], a * std::cos(angle) - b * std::sin(angle), 1e-5);
    EXPECT_NEAR(x[head_dim + i + head_dim / 2], a * std::sin(angle) + b * std::cos(angle), 1e-5);
  }
}

TEST(Rope, PartialRotaryTurnsLeadingDimsAndScalesThem) {
  // Phi-3's partial rotary: 4 of 8 dims rotate, pairs (0, 2) and (1, 3); YaRN's factor.
  const int head_dim = 8;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> original = x;
  const std::vector<double> inv_freq = {0.5, 0.25};
  Rope(x, std::vector<int>{3}, 1, head_dim, inv_freq, 1.5);
  for (int i = 0; i < 2; ++i) {
    const double angle = 3 * inv_freq[i];
    EXPECT_NEAR(x[i], 1.5 * (original[i] * std::cos(angle) - original[i + 2] * std::sin(angle)), 1e-5);
    EXPECT_NEAR(x[i + 2], 1.5 * (original[i] * std::sin(angle) + original[i + 2] * std::cos(angle)), 1e-5);
  }
  for (int i = 4; i < head_dim; ++i) EXPECT_EQ(x[i], original[i]) << "dims past the rotary ones pass through";
}

TEST(Glu, EachActivationOfGateTimesUp) {
  const std::vector<float> g = {-3.0f, -0.5f, 0.0f, 2.0f};
  const std::vector<float> up = {1.0f, 2.0f, 3.0f, -1.5f};
  const auto expect = [&](MlpActivation act, const auto& f) {
    std::vector<float> gate = g;
    Glu(act, gate, up);
    for (size_t i = 0; i < gate.size(); ++i) EXPECT_NEAR(gate[i], f(static_cast<double>(g[i])) * up[i], 1e-6) << static_cast<int>(act);
  };
  expect(MlpActivation::kSilu, [](double x) { return x / (1 + std::exp(-x)); });
  expect(MlpActivation::kGelu, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  expect(MlpActivation::kGeluTanh, [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); });
  // The two GELUs differ by less than 5e-4: told apart only where the gate is far from 0.
  std::vector<float> exact = {2.0f}, tanh_form = {2.0f};
  Glu(MlpActivation::kGelu, exact, std::vector<float>{1.0f});
  Glu(MlpActivation::kGeluTanh, tanh_form, std::vector<float>{1.0f});
  EXPECT_GT(std::abs(exact[0] - tanh_form[0]), 1e-5f);
}

}  // namespace
}  // namespace anyprec::cpu
