// The fast bitplane-LUT kernel against the scalar reference: every width, batches of 1..16,
// mixed widths in one batch, row lengths that are not multiples of 32 or 64.
#include <cmath>
#include <random>

#include "engine/cpu/bitplane_view.h"
#include "engine/cpu/ops.h"
#include "gtest/gtest.h"
#include "quantizer/matrix_quantizer.h"
#include "tests/simd_targets.h"

namespace anyprec::cpu {
namespace {

struct Fixture {
  quant::QuantizedMatrix q;
  std::vector<uint8_t> tiled;
  BitplaneView view;
};

Fixture Make(int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (float& v : w) v = dist(rng);
  Fixture f;
  f.q = quant::QuantizeMatrix(w, rows, cols, std::vector<float>(cols, 1.0f), {quant::Mode::kAnyPrecision, 3, 8});
  f.tiled = RetilePlanes(f.q.planes, rows, cols, 8);
  f.view = {rows, cols, 3, 8, f.tiled.data(), PaddedRowStride(cols), static_cast<size_t>(rows) * PaddedRowStride(cols), {}};
  for (const auto& lut : f.q.luts) f.view.luts.push_back(lut.data());
  return f;
}

void ExpectMatchesReference(const BitplaneView& view, const std::vector<int>& bits, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(bits.size() * view.cols);
  for (float& v : x) v = dist(rng);
  std::vector<float> slow(bits.size() * view.rows);
  reference::BitplaneMatMul(x, bits, view, slow);
  testing::ForEachSimdTarget([&] {
  std::vector<float> fast(slow.size());
  BitplaneMatMul(x, bits, view, fast);
  for (size_t t = 0; t < bits.size(); ++t) {
    double err = 0;
    double norm = 0;
    for (int n = 0; n < view.rows; ++n) {
      const double a = fast[t * view.rows + n];
      const double b = slow[t * view.rows + n];
      err += (a - b) * (a - b);
      norm += b * b;
    }
    EXPECT_LT(std::sqrt(err / norm), 1e-5) << "token " << t << " bits " << bits[t];
  }
  });
}

TEST(BitplaneMatMul, EveryWidthAndBatchSize) {
  std::mt19937 rng(17);
  for (int cols : {5, 64, 100, 172, 300}) {
    const Fixture f = Make(37, cols, rng);
    for (int b = 3; b <= 8; ++b) {
      for (int batch : {1, 2, 3, 4, 7, 8, 9, 16}) {
        SCOPED_TRACE(::testing::Message() << "cols " << cols << " bits " << b << " batch " << batch);
        ExpectMatchesReference(f.view, std::vector<int>(batch, b), rng);
      }
    }
  }
}

TEST(BitplaneMatMul, MixedWidthsInOneBatch) {
  std::mt19937 rng(23);
  for (int cols : {64, 172}) {
    const Fixture f = Make(50, cols, rng);
    ExpectMatchesReference(f.view, {3, 4, 8}, rng);
    ExpectMatchesReference(f.view, {8, 3, 3, 5, 4, 8, 6, 7, 3, 4, 8, 8, 5, 3, 7, 6}, rng);
    std::uniform_int_distribution<int> width(3, 8);
    for (int trial = 0; trial < 10; ++trial) {
      std::vector<int> bits(1 + trial);
      for (int& b : bits) b = width(rng);
      ExpectMatchesReference(f.view, bits, rng);
    }
  }
}

}  // namespace
}  // namespace anyprec::cpu
