#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "engine/model/bitplanes.h"
#include "gtest/gtest.h"
#include "quantizer/matrix_quantizer.h"
#include "quantizer/row_clustering.h"

namespace anyprec::quant {
namespace {

std::vector<float> RandomValues(size_t n, std::mt19937& rng) {
  std::student_t_distribution<float> heavy_tailed(3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = heavy_tailed(rng) * 0.02f;
  return v;
}

std::vector<float> RandomWeights(size_t n, std::mt19937& rng) {
  std::exponential_distribution<float> dist(1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Minimum cost over every way to cut [0, n) into k contiguous ranges, by exhaustive search.
double BruteForceCost(const WeightedPrefix& prefix, int begin, int k) {
  const int n = prefix.size();
  if (k == 1) return prefix.Cost(begin, n);
  double best = INFINITY;
  for (int split = begin; split <= n; ++split) best = std::min(best, prefix.Cost(begin, split) + BruteForceCost(prefix, split, k - 1));
  return best;
}

TEST(RowClustering, ExactKMeansIsOptimal) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 30; ++trial) {
    const int n = 3 + trial % 12;
    std::vector<float> values = RandomValues(n, rng);
    std::sort(values.begin(), values.end());
    const std::vector<float> weights = RandomWeights(n, rng);
    const WeightedPrefix prefix(values, weights);
    for (int k : {2, 3, 4}) {
      const Boundaries b = ExactKMeans(prefix, k);
      ASSERT_EQ(b.size(), static_cast<size_t>(k + 1));
      EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
      EXPECT_NEAR(TotalCost(prefix, b), BruteForceCost(prefix, 0, k), 1e-12);
    }
  }
}

TEST(RowClustering, ExactIsNeverWorseThanLloyd) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> values = RandomValues(500, rng);
    std::sort(values.begin(), values.end());
    const std::vector<float> weights = RandomWeights(values.size(), rng);
    const WeightedPrefix prefix(values, weights);
    const double exact = TotalCost(prefix, ExactKMeans(prefix, 8));
    const double lloyd = TotalCost(prefix, LloydKMeans(prefix, values, weights, 8, trial));
    EXPECT_LE(exact, lloyd * (1 + 1e-9));
  }
}

TEST(RowClustering, BestSplitScansEverySplitPoint) {
  std::mt19937 rng(13);
  std::vector<float> values = RandomValues(64, rng);
  std::sort(values.begin(), values.end());
  const std::vector<float> weights = RandomWeights(values.size(), rng);
  const WeightedPrefix prefix(values, weights);
  const int s = BestSplit(prefix, 10, 50);
  for (int t = 10; t <= 50; ++t) EXPECT_LE(prefix.Cost(10, s) + prefix.Cost(s, 50), prefix.Cost(10, t) + prefix.Cost(t, 50) + 1e-15);
}

class AnyPrecisionMatrix : public ::testing::TestWithParam<int> {};

// The b-bit index of every weight is the top b bits of its max-bit index, and every LUT_b
// entry is the weighted mean of the weights its cluster holds.
TEST_P(AnyPrecisionMatrix, NestingIsExactAndTablesAreClusterMeans) {
  const int cols = GetParam();
  const int rows = 7;
  std::mt19937 rng(cols);
  const std::vector<float> w = RandomValues(static_cast<size_t>(rows) * cols, rng);
  const std::vector<float> sensitivity = RandomWeights(static_cast<size_t>(rows) * cols, rng);
  const QuantizedMatrix q = QuantizeMatrix(w, rows, cols, sensitivity, {Mode::kAnyPrecision, 3, 8, SeedMethod::kExact});
  ASSERT_EQ(q.planes.size(), 8 * PlaneBytes(rows, cols));
  for (int r = 0; r < rows; ++r) {
    for (int bits = 3; bits <= 8; ++bits) {
      std::vector<double> sum_w(1 << bits), sum_wx(1 << bits);
      for (int c = 0; c < cols; ++c) {
        const uint32_t top = ReadIndex(q.planes, rows, cols, r, c, 8);
        const uint32_t index = ReadIndex(q.planes, rows, cols, r, c, bits);
        ASSERT_EQ(index, top >> (8 - bits));
        sum_w[index] += sensitivity[r * cols + c];
        sum_wx[index] += static_cast<double>(sensitivity[r * cols + c]) * w[r * cols + c];
      }
      const std::span<const float> lut = q.Lut(bits, r);
      for (int c = 0; c < (1 << bits); ++c) {
        if (sum_w[c] > 0) {
          EXPECT_NEAR(lut[c], sum_wx[c] / sum_w[c], 1e-6) << "row " << r << " bits " << bits << " cluster " << c;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RowLengths, AnyPrecisionMatrix, ::testing::Values(5, 64, 172, 300));

TEST(MatrixQuantizer, ErrorFallsWithEveryBit) {
  const int rows = 16;
  const int cols = 256;
  std::mt19937 rng(21);
  const std::vector<float> w = RandomValues(rows * cols, rng);
  const std::vector<float> ones(cols, 1.0f);
  const QuantizedMatrix q = QuantizeMatrix(w, rows, cols, ones, {Mode::kAnyPrecision, 3, 8, SeedMethod::kExact});
  double previous = INFINITY;
  for (int bits = 3; bits <= 8; ++bits) {
    double sse = 0;
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        const double e = q.Lut(bits, r)[ReadIndex(q.planes, rows, cols, r, c, bits)] - w[r * cols + c];
        sse += e * e;
      }
    }
    EXPECT_LT(sse, previous) << bits;
    previous = sse;
  }
}

TEST(MatrixQuantizer, RoundToNearestIsAUniformGrid) {
  const std::vector<float> w = {-1.0f, -0.5f, 0.1f, 0.26f, 1.0f, 0.74f};
  const QuantizedMatrix q = QuantizeMatrix(w, 1, 6, std::vector<float>(6, 1.0f), {Mode::kRoundToNearest, 3, 2});
  EXPECT_EQ(q.seed_bits, 2);
  const std::span<const float> lut = q.Lut(2, 0);
  for (int c = 0; c < 4; ++c) EXPECT_NEAR(lut[c], -1.0f + c * (2.0f / 3.0f), 1e-6);
  const std::vector<uint32_t> expected = {0, 1, 2, 2, 3, 3};
  for (int c = 0; c < 6; ++c) EXPECT_EQ(ReadIndex(q.planes, 1, 6, 0, c, 2), expected[c]) << c;
}

TEST(MatrixQuantizer, ZeroSensitivityRowsFallBackToUnweighted) {
  const std::vector<float> w = {0.0f, 1.0f, 2.0f, 10.0f, 11.0f, 12.0f, 20.0f, 21.0f};
  const QuantizedMatrix weighted = QuantizeMatrix(w, 1, 8, std::vector<float>(8, 0.0f), {Mode::kIndependent, 1, 1});
  const QuantizedMatrix plain = QuantizeMatrix(w, 1, 8, std::vector<float>(8, 1.0f), {Mode::kIndependent, 1, 1});
  EXPECT_EQ(weighted.planes, plain.planes);
  EXPECT_EQ(weighted.luts, plain.luts);
}

}  // namespace
}  // namespace anyprec::quant
