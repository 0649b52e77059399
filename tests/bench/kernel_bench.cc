// anyprec-bench-kernels: bitplane-LUT GEMV/GEMM against the fp32 dense kernel, with the
// weights streamed from DRAM (each op reads a different matrix, from a rotation larger
// than 1 GiB) and cache-hot (one matrix again and again), plus the machine's read
// bandwidth and the quantizer's time on one Llama-2-7B-shaped layer. Prints markdown.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/bitplane_view.h"
#include "engine/cpu/ops.h"
#include "engine/model/bitplanes.h"
#include "quantizer/matrix_quantizer.h"

namespace anyprec {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kRotationBytes = size_t{1200} << 20;

// Seconds per op(i), i = 0, 1, ...: the median of 5 rounds of at least seconds / 5 each, so
// that a burst of load from other tenants of this shared machine moves it little.
template <typename Op>
double TimePerOp(Op op, double seconds = 0.4) {
  for (int i = 0; i < 3; ++i) op(i);  // warm-up
  std::vector<double> rounds;
  int next = 0;
  for (int round = 0; round < 5; ++round) {
    int ops = 0;
    const auto start = Clock::now();
    double elapsed = 0;
    while (elapsed < seconds / 5) {
      op(next++);
      ++ops;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    }
    rounds.push_back(elapsed / ops);
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[2];
}

double ReadBandwidth() {
  std::vector<uint64_t> buffer(kRotationBytes / 8, 1);
  uint64_t sink = 0;
  const double t = TimePerOp([&](int) {
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (size_t i = 0; i < buffer.size(); i += 8) {
      sum += buffer[i] + buffer[i + 1] + buffer[i + 2] + buffer[i + 3] + buffer[i + 4] + buffer[i + 5] + buffer[i + 6] + buffer[i + 7];
    }
    sink += sum;
  }, 1.0);
  if (sink == 42) std::printf(" ");
  return kRotationBytes / t / 1e9;
}

struct QuantizedCopy {
  cpu::AlignedBytes planes;
  std::vector<std::vector<float>> luts;
  std::vector<cpu::Int8Lut> int8;
  cpu::BitplaneView view;
};

// Random planes and tables: kernel speed does not depend on the values.
QuantizedCopy RandomBitplanes(int rows, int cols, std::mt19937& rng) {
  QuantizedCopy q;
  q.view.rows = rows;
  q.view.cols = cols;
  q.view.seed_bits = 3;
  q.view.max_bits = 8;
  q.view.row_stride = cpu::PaddedRowStride(cols);
  q.view.plane_stride = static_cast<size_t>(rows) * q.view.row_stride;
  q.planes.resize(8 * q.view.plane_stride);
  for (auto& byte : q.planes) byte = static_cast<uint8_t>(rng());
  for (int b = 3; b <= 8; ++b) {
    auto& lut = q.luts.emplace_back(static_cast<size_t>(rows) << b);
    for (float& v : lut) v = static_cast<float>(rng() % 2001) * 1e-5f - 0.01f;
  }
  q.view.planes = q.planes.data();
  for (int b = 3; b <= 8; ++b) q.int8.push_back(cpu::QuantizeLut(q.luts[b - 3].data(), rows, b));
  for (const auto& lut : q.luts) q.view.luts.push_back(lut.data());
  for (const auto& lut : q.int8) {
    q.view.luts_u8.push_back(lut.values.data());
    q.view.lut_scales.push_back(lut.scales.data());
  }
  return q;
}

// Enough random matrices of 8 planes and their LUTs to fill the rotation: each op reads one
// that the caches no longer hold.
std::vector<QuantizedCopy> RandomRotation(int rows, int cols, std::mt19937& rng) {
  const size_t bytes = 8 * static_cast<size_t>(rows) * cpu::PaddedRowStride(cols) + static_cast<size_t>(rows) * 504 * 4;
  std::vector<QuantizedCopy> rotation;
  for (size_t i = 0; i <= kRotationBytes / bytes; ++i) rotation.push_back(RandomBitplanes(rows, cols, rng));
  return rotation;
}

void BenchShape(int rows, int cols, double bandwidth) {
  std::mt19937 rng(rows + cols);
  const size_t dense_bytes = static_cast<size_t>(rows) * cols * 4;
  const size_t plane_bytes = static_cast<size_t>(rows) * cpu::PaddedRowStride(cols);
  const int dense_count = static_cast<int>(kRotationBytes / dense_bytes) + 1;

  std::vector<std::vector<float>> dense(dense_count, std::vector<float>(static_cast<size_t>(rows) * cols));
  for (auto& m : dense) {
    for (float& v : m) v = static_cast<float>(rng() % 1000) * 1e-5f;
  }
  const std::vector<QuantizedCopy> quantized = RandomRotation(rows, cols, rng);
  const int quantized_count = static_cast<int>(quantized.size());

  std::printf("\n### %d x %d (rows x cols)\n\n", rows, cols);
  std::printf("| batch | kernel | streamed µs | GB/s | of DRAM read | speedup vs fp32 | same matrix µs |\n|---|---|---|---|---|---|---|\n");
  for (const int batch : {1, 4, 16}) {
    std::vector<float> x(static_cast<size_t>(batch) * cols, 0.5f);
    std::vector<float> y(static_cast<size_t>(batch) * rows);
    const double dense_streamed = TimePerOp([&](int i) { cpu::MatMul(x, batch, dense[i % dense_count], rows, cols, y); });
    const double dense_hot = TimePerOp([&](int) { cpu::MatMul(x, batch, dense[0], rows, cols, y); });
    std::printf("| %d | fp32 dense | %.0f | %.1f | %.0f%% | 1.00 | %.0f |\n", batch, dense_streamed * 1e6, dense_bytes / dense_streamed / 1e9,
                100 * dense_bytes / dense_streamed / 1e9 / bandwidth, dense_hot * 1e6);
    std::vector<std::pair<std::string, std::vector<int>>> cases;
    for (int b = 3; b <= 8; ++b) cases.emplace_back(std::to_string(b) + "-bit", std::vector<int>(batch, b));
    if (batch >= 4) {
      std::vector<int> mixed(batch);
      for (int t = 0; t < batch; ++t) mixed[t] = std::vector<int>{3, 4, 8}[t % 3];
      cases.emplace_back("mixed {3,4,8}", mixed);
    }
    using Kernel = std::function<void(std::span<const float>, std::span<const int>, const cpu::BitplaneView&, std::span<float>)>;
    std::vector<std::pair<std::string, Kernel>> kernels = {{"fp32 LUT", &cpu::BitplaneMatMul}};
    for (const cpu::Int8Kernel int8 : cpu::SupportedInt8Kernels()) {
      kernels.emplace_back("int8 " + std::string(cpu::Int8KernelName(int8)),
                           [int8](auto x, auto bits, const auto& w, auto out) { cpu::BitplaneMatMulInt8(x, bits, w, out, int8); });
    }
    for (const auto& [name, bits] : cases) {
      for (const auto& [kernel_name, kernel] : kernels) {
        const int widest = *std::max_element(bits.begin(), bits.end());
        const double bytes = static_cast<double>(widest) * plane_bytes;
        const double streamed = TimePerOp([&, kernel = kernel](int i) { kernel(x, bits, quantized[i % quantized_count].view, y); });
        const double hot = TimePerOp([&, kernel = kernel](int) { kernel(x, bits, quantized[0].view, y); });
        std::printf("| %d | %s, %s | %.0f | %.1f | %.0f%% | %.2f | %.0f |\n", batch, name.c_str(), kernel_name.c_str(), streamed * 1e6,
                    bytes / streamed / 1e9, 100 * bytes / streamed / 1e9 / bandwidth, dense_streamed / streamed, hot * 1e6);
      }
    }
  }
}

// The per-token and batched schedules of each int8 kernel over batch sizes, streamed from
// DRAM: where the batched one starts to win is the kernel's kBatchedFromTokens.
void BenchSchedules(int rows, int cols) {
  std::mt19937 rng(rows + cols);
  const std::vector<QuantizedCopy> quantized = RandomRotation(rows, cols, rng);
  const int quantized_count = static_cast<int>(quantized.size());
  std::printf("\n### Schedules, %d x %d, streamed: µs per call (per token row)\n\n", rows, cols);
  std::printf("The AVX2 kernels have only the batched schedule: both of their columns run it, and their spread is the noise.\n\n");
  std::printf("| kernel | width | batch | per token | batched | batched / per token |\n|---|---|---|---|---|---|\n");
  for (const cpu::Int8Kernel kernel : cpu::SupportedInt8Kernels()) {
    for (const int b : {3, 4, 8}) {
      for (const int batch : {1, 2, 4, 6, 8, 12, 16, 32, 64}) {
        std::vector<float> x(static_cast<size_t>(batch) * cols, 0.5f);
        std::vector<float> y(static_cast<size_t>(batch) * rows);
        const std::vector<int> bits(batch, b);
        double seconds[2];
        for (const cpu::Int8Schedule schedule : {cpu::Int8Schedule::kPerToken, cpu::Int8Schedule::kBatched}) {
          seconds[schedule == cpu::Int8Schedule::kBatched] = TimePerOp(
              [&](int i) { cpu::BitplaneMatMulInt8(x, bits, quantized[i % quantized_count].view, y, kernel, schedule); }, 0.2);
        }
        std::printf("| %s | %d | %d | %.0f (%.1f) | %.0f (%.1f) | %.2f |\n", std::string(cpu::Int8KernelName(kernel)).c_str(), b, batch,
                    seconds[0] * 1e6, seconds[0] * 1e6 / batch, seconds[1] * 1e6, seconds[1] * 1e6 / batch, seconds[1] / seconds[0]);
      }
    }
  }
}

void BenchQuantizer() {
  // One Llama-2-7B layer: q, k, v, o (4096 x 4096), gate, up (11008 x 4096), down (4096 x 11008).
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::printf("\n### Quantizer, one Llama-2-7B-shaped layer (7 matrices, %d threads)\n\n| seed method | seconds (3..8 bits) | 3-bit seed SSE vs exact |\n|---|---|---|\n",
              omp_get_max_threads());
  const std::vector<std::pair<int, int>> shapes = {{4096, 4096}, {4096, 4096}, {4096, 4096}, {4096, 4096},
                                                   {11008, 4096}, {11008, 4096}, {4096, 11008}};
  std::vector<std::vector<float>> weights;
  for (const auto& [rows, cols] : shapes) {
    std::vector<float>& w = weights.emplace_back(static_cast<size_t>(rows) * cols);
    for (float& v : w) v = dist(rng);
  }
  std::vector<double> seed_error;
  for (const auto method : {quant::SeedMethod::kExact, quant::SeedMethod::kLloyd}) {
    double total = 0;
    double error = 0;
    for (size_t m = 0; m < shapes.size(); ++m) {
      const auto [rows, cols] = shapes[m];
      const std::vector<float> sensitivity(cols, 1.0f);
      const auto start = Clock::now();
      const quant::QuantizedMatrix q = quant::QuantizeMatrix(weights[m], rows, cols, sensitivity, {quant::Mode::kAnyPrecision, 3, 8, method});
      total += std::chrono::duration<double>(Clock::now() - start).count();
      for (int r = 0; r < rows; r += 16) {  // the 3-bit seed's squared error on every 16th row
        for (int c = 0; c < cols; ++c) {
          const float* lut = q.Lut(3, r).data();
          const double e = lut[ReadIndex(q.planes, rows, cols, r, c, 3)] - weights[m][static_cast<size_t>(r) * cols + c];
          error += e * e;
        }
      }
    }
    seed_error.push_back(error);
    std::printf("| %s | %.1f | %.4f |\n", method == quant::SeedMethod::kExact ? "exact (DP)" : "Lloyd (k-means++, 50 steps)", total,
                error / seed_error.front());
  }
}

}  // namespace
}  // namespace anyprec

// --kernels-only skips the quantizer; --quick also keeps only the 4096 x 4096 shape;
// --schedules times only the int8 kernels' two schedules over batch sizes.
int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--schedules") {
    anyprec::BenchSchedules(4096, 4096);
    return 0;
  }
  const double bandwidth = anyprec::ReadBandwidth();
  std::printf("DRAM read bandwidth (%d threads, 1.2 GB buffer): %.1f GB/s\n", omp_get_max_threads(), bandwidth);
  std::vector<std::pair<int, int>> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  if (mode == "--quick") shapes.resize(1);
  for (const auto& [rows, cols] : shapes) anyprec::BenchShape(rows, cols, bandwidth);
  if (mode.empty()) anyprec::BenchQuantizer();
  return 0;
}
