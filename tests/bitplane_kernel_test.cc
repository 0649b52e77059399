// The fast bitplane-LUT kernel against the scalar reference: every width, batches of 1..16,
// mixed widths in one batch, row lengths that are not multiples of 32 or 64.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "engine/cpu/bitplane_view.h"
#include "engine/cpu/kernel_choice.h"
#include "engine/cpu/ops.h"
#include "engine/model/bitplanes.h"
#include "gtest/gtest.h"
#include "tests/simd_targets.h"

namespace anyprec::cpu {
namespace {

// A random matrix as an image holds it: canonical planes of uniform 8-bit indices (a b-bit
// view reads their top b bits) and per width one sorted random table per row. The kernels
// read no more of a matrix than that, so the test needs no quantizer (nor its dependencies
// in the cross build, tests/cross/arm64.sh).
struct Fixture {
  AlignedBytes tiled;
  std::vector<std::vector<float>> luts;
  std::vector<Int8Lut> int8;
  BitplaneView view;
};

Fixture Make(int rows, int cols, std::mt19937& rng, int seed_bits = 3) {
  std::vector<uint8_t> planes(kMaxBits * PlaneBytes(rows, cols));
  std::uniform_int_distribution<uint32_t> index(0, (1u << kMaxBits) - 1);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) WriteIndex(planes, rows, cols, r, c, kMaxBits, index(rng));
  }
  std::normal_distribution<float> dist(0.0f, 0.05f);
  Fixture f;
  f.tiled = RetilePlanes(planes, rows, cols, kMaxBits);
  f.view = {rows, cols, seed_bits, kMaxBits, f.tiled.data(), PaddedRowStride(cols), static_cast<size_t>(rows) * PaddedRowStride(cols),
            {}, {}, {}};
  for (int b = seed_bits; b <= kMaxBits; ++b) {
    std::vector<float>& lut = f.luts.emplace_back(static_cast<size_t>(rows) << b);
    for (float& v : lut) v = dist(rng);
    for (int r = 0; r < rows; ++r) std::sort(lut.begin() + (static_cast<size_t>(r) << b), lut.begin() + (static_cast<size_t>(r + 1) << b));
    f.int8.push_back(QuantizeLut(lut.data(), rows, b));
  }
  for (size_t i = 0; i < f.luts.size(); ++i) {
    f.view.luts.push_back(f.luts[i].data());
    f.view.luts_u8.push_back(f.int8[i].values.data());
    f.view.lut_scales.push_back(f.int8[i].scales.data());
  }
  return f;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& want, size_t begin, size_t end) {
  double err = 0;
  double norm = 0;
  for (size_t i = begin; i < end; ++i) {
    err += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(err / norm);
}

std::vector<float> RandomActivations(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

// Every integer kernel this CPU can run, on both schedules, equals the scalar reference (the
// same integer arithmetic), and stays within a few percent of the exact product.
void ExpectInt8MatchesReference(const BitplaneView& view, const std::vector<int>& bits, std::mt19937& rng) {
  if (SupportedInt8Kernels().empty()) GTEST_SKIP() << "this CPU has no int8 kernel";
  const std::vector<float> x = RandomActivations(bits.size() * view.cols, rng);
  std::vector<float> slow(bits.size() * view.rows);
  std::vector<float> exact(slow.size());
  reference::BitplaneMatMulInt8(x, bits, view, slow);
  reference::BitplaneMatMul(x, bits, view, exact);
  for (const Int8Kernel kernel : SupportedInt8Kernels()) {
    std::vector<std::vector<float>> by_schedule;
    for (const Int8Schedule schedule : {Int8Schedule::kPerToken, Int8Schedule::kBatched}) {
      SCOPED_TRACE(::testing::Message() << Int8KernelName(kernel) << (schedule == Int8Schedule::kBatched ? ", batched" : ", per token"));
      std::vector<float>& fast = by_schedule.emplace_back(slow.size());
      BitplaneMatMulInt8(x, bits, view, fast, kernel, schedule);
      for (size_t t = 0; t < bits.size(); ++t) {
        EXPECT_LT(RelativeError(fast, slow, t * view.rows, (t + 1) * view.rows), 1e-5) << "token " << t << " bits " << bits[t];
        EXPECT_LT(RelativeError(fast, exact, t * view.rows, (t + 1) * view.rows), 0.03) << "token " << t << " bits " << bits[t];
      }
    }
    // Bit for bit: a token row's result must not depend on the batch it came in, which picks
    // the schedule (the server batches sequences that ran alone a step before).
    EXPECT_EQ(by_schedule[0], by_schedule[1]) << Int8KernelName(kernel) << ": the schedules differ";
  }
}

void ExpectMatchesReference(const BitplaneView& view, const std::vector<int>& bits, std::mt19937& rng) {
  const std::vector<float> x = RandomActivations(bits.size() * view.cols, rng);
  std::vector<float> slow(bits.size() * view.rows);
  reference::BitplaneMatMul(x, bits, view, slow);
  testing::ForEachSimdTarget([&] {
    std::vector<float> fast(slow.size());
    BitplaneMatMul(x, bits, view, fast);
    for (size_t t = 0; t < bits.size(); ++t) {
      EXPECT_LT(RelativeError(fast, slow, t * view.rows, (t + 1) * view.rows), 1e-5) << "token " << t << " bits " << bits[t];
    }
  });
}

TEST(BitplaneMatMul, EveryWidthAndBatchSize) {
  std::mt19937 rng(17);
  for (int cols : {5, 64, 100, 172, 300, 520}) {
    const Fixture f = Make(37, cols, rng);
    for (int b = 3; b <= 8; ++b) {
      for (int batch = 1; batch <= 16; ++batch) {
        SCOPED_TRACE(::testing::Message() << "cols " << cols << " bits " << b << " batch " << batch);
        ExpectMatchesReference(f.view, std::vector<int>(batch, b), rng);
        ExpectInt8MatchesReference(f.view, std::vector<int>(batch, b), rng);
      }
    }
  }
}

// Images may hold widths down to 1 bit.
TEST(BitplaneMatMul, WidthsBelowThree) {
  std::mt19937 rng(29);
  const Fixture f = Make(21, 300, rng, 1);
  for (int b = 1; b <= 2; ++b) {
    for (int batch : {1, 3}) ExpectInt8MatchesReference(f.view, std::vector<int>(batch, b), rng);
  }
  ExpectMatchesReference(f.view, {1, 2, 5, 8, 1}, rng);
  ExpectInt8MatchesReference(f.view, {1, 2, 5, 8, 1}, rng);
}

TEST(BitplaneMatMul, MixedWidthsInOneBatch) {
  std::mt19937 rng(23);
  for (int cols : {64, 172, 300}) {
    const Fixture f = Make(50, cols, rng);
    for (const std::vector<int>& bits : {std::vector<int>{3, 4, 8}, std::vector<int>{8, 3, 3, 5, 4, 8, 6, 7, 3, 4, 8, 8, 5, 3, 7, 6}}) {
      ExpectMatchesReference(f.view, bits, rng);
      ExpectInt8MatchesReference(f.view, bits, rng);
    }
    std::uniform_int_distribution<int> width(3, 8);
    for (int trial = 0; trial < 10; ++trial) {
      std::vector<int> bits(1 + trial);
      for (int& b : bits) b = width(rng);
      ExpectMatchesReference(f.view, bits, rng);
      ExpectInt8MatchesReference(f.view, bits, rng);
    }
  }
}

// Prefill-sized batches: more token rows than a pass or a GEMM tile holds, in any order of
// widths, on rows and columns that fill no whole tile.
TEST(BitplaneMatMul, LargeBatches) {
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> width(3, 8);
  for (int cols : {100, 300, 520}) {
    const Fixture f = Make(23, cols, rng);
    for (int batch : {17, 40, 64}) {
      SCOPED_TRACE(::testing::Message() << "cols " << cols << " batch " << batch);
      ExpectInt8MatchesReference(f.view, std::vector<int>(batch, 4), rng);
      std::vector<int> bits(batch);
      for (int& b : bits) b = width(rng);
      ExpectInt8MatchesReference(f.view, bits, rng);
    }
  }
}

// The int8 kernels the cases above check on this CPU, and what ChooseKernel makes of it, in
// the log: tests/cross/arm64.sh reads it to know that the NEON kernel ran under qemu.
TEST(BitplaneMatMul, KernelsOfThisCpu) {
  const absl::StatusOr<KernelChoice> choice = ChooseKernel();
  ASSERT_TRUE(choice.ok()) << choice.status();
  std::string names;
  for (const Int8Kernel kernel : SupportedInt8Kernels()) names.append(" ").append(Int8KernelName(kernel));
  std::printf("int8 kernels:%s\nchosen: %s\n", names.empty() ? " none" : names.c_str(), choice->summary.c_str());
}

}  // namespace
}  // namespace anyprec::cpu
