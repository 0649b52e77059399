// anyprec-bench-gpu: the bitplane GEMV on the GPU at every width and batch 1, 4 and 16,
// against cuBLAS fp16 on the same shapes and the device's copy bandwidth, all measured in
// one run. Weights are streamed from DRAM as a decode step meets them: each call reads the
// next of several copies of the matrix, together far larger than the L2. Times are CUDA
// event medians over repeated rounds.
//
// Usage: anyprec-bench-gpu [--quick]   (--quick: one shape, fewer rounds)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda/cuda_loader.h"
#include "engine/model/half_float.h"
#include "tests/gpu/gpu_support.h"

namespace anyprec::cuda {
namespace {

constexpr size_t kStreamBytes = size_t{2} << 30;  // copies of a matrix together exceed this



double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over `rounds` of the mean time per call of `calls` calls of fn(i), in microseconds.
template <typename Fn>
double TimeUs(Backend& backend, int rounds, int calls, const Fn& fn) {
  for (int i = 0; i < calls; ++i) fn(i);  // warm-up
  Check(backend.Synchronize());
  std::vector<double> samples;
  for (int r = 0; r < rounds; ++r) {
    Check(backend.StartTimer());
    for (int i = 0; i < calls; ++i) fn(i);
    float ms = 0;
    Check(backend.ElapsedMs(ms));
    samples.push_back(1000.0 * ms / calls);
  }
  return Median(samples);
}

struct Shape {
  int rows;
  int cols;
};

struct Row {
  std::string label;
  double us;
  double bytes;
};

int Run(bool quick) {
  std::string why;
  const std::unique_ptr<LoadedBackend> loaded = LoadCudaBackend(0, why);
  if (!loaded) {
    std::printf("anyprec-bench-gpu: no CUDA backend: %s\n", why.c_str());
    return 77;
  }
  Backend& backend = **loaded;
  const DeviceInfo& info = backend.info();
  const int rounds = quick ? 3 : 7;
  std::printf("# anyprec-bench-gpu on %s (compute %d.%d, %d SMs, %.0f GiB, L2 %.0f MiB, driver %d, runtime %d)\n\n", info.name.c_str(),
              info.compute_major, info.compute_minor, info.multiprocessors, info.memory_bytes / double(1 << 30),
              info.l2_bytes / double(1 << 20), info.driver_version, info.runtime_version);

  // Copy bandwidth: bytes read plus bytes written per second by a large device-to-device copy.
  const size_t copy_bytes = size_t{1} << 30;
  DeviceBuffer from(backend, copy_bytes);
  DeviceBuffer to(backend, copy_bytes);
  Check(backend.Fill(from.get(), 1, copy_bytes));
  const double copy_us = TimeUs(backend, rounds, 4, [&](int) { Check(backend.CopyOnDevice(to.get(), from.get(), copy_bytes)); });
  const double copy_gbs = 2.0 * copy_bytes / copy_us / 1e3;
  std::printf("device-to-device copy of 1 GiB: %.1f us, %.0f GB/s (read + written)\n\n", copy_us, copy_gbs);

  std::mt19937_64 rng(7);
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{11008, 4096}}
                                          : std::vector<Shape>{{4096, 4096}, {11008, 4096}, {4096, 11008}, {8192, 28672}};
  for (const Shape& shape : shapes) {
    GpuBitplaneMatrix host;
    host.rows = shape.rows;
    host.cols = shape.cols;
    host.padded_cols = PaddedColumns(shape.cols);
    host.seed_bits = 3;
    host.max_bits = 8;
    host.planes.resize(static_cast<size_t>(host.max_bits) * host.plane_words());
    for (uint32_t& w : host.planes) w = static_cast<uint32_t>(rng());
    std::normal_distribution<float> centroid(0.0f, 0.02f);
    for (int b = 3; b <= 8; ++b) {
      host.lut_offset[b] = host.luts.size();
      for (size_t i = 0; i < (static_cast<size_t>(host.rows) << b); ++i) host.luts.push_back(centroid(rng));
    }
    const size_t plane_bytes = host.planes.size() * 4;
    const int copies = static_cast<int>(std::max<size_t>(2, (kStreamBytes + plane_bytes - 1) / plane_bytes));
    std::vector<DeviceBuffer> planes;
    std::vector<DeviceBuffer> luts;
    std::vector<DeviceBitplaneMatrix> matrices;
    for (int c = 0; c < copies; ++c) {
      planes.emplace_back(backend, plane_bytes);
      luts.emplace_back(backend, host.luts.size() * 4);
      Check(backend.Upload(planes.back().get(), host.planes.data(), plane_bytes));
      Check(backend.Upload(luts.back().get(), host.luts.data(), host.luts.size() * 4));
      DeviceBitplaneMatrix m{host.rows, host.cols, host.padded_cols, 3, 8, static_cast<const uint32_t*>(planes.back().get()),
                             static_cast<const float*>(luts.back().get()), {}};
      std::copy(std::begin(host.lut_offset), std::end(host.lut_offset), std::begin(m.lut_offset));
      matrices.push_back(m);
    }
    // Dense fp16 copies for cuBLAS, as many as make the same stream.
    const size_t dense_bytes = static_cast<size_t>(shape.rows) * shape.cols * 2;
    const int dense_copies = static_cast<int>(std::max<size_t>(2, (kStreamBytes + dense_bytes - 1) / dense_bytes));
    std::vector<uint16_t> dense_host(static_cast<size_t>(shape.rows) * shape.cols);
    for (uint16_t& v : dense_host) v = F32ToF16(centroid(rng));
    std::vector<DeviceBuffer> dense;
    for (int c = 0; c < dense_copies; ++c) {
      dense.emplace_back(backend, dense_bytes);
      Check(backend.Upload(dense.back().get(), dense_host.data(), dense_bytes));
    }
    std::vector<uint16_t> x_host(static_cast<size_t>(16) * host.padded_cols, 0);
    for (int t = 0; t < 16; ++t) {
      for (int k = 0; k < shape.cols; ++k) x_host[static_cast<size_t>(t) * host.padded_cols + k] = F32ToF16(centroid(rng) * 50);
    }
    DeviceBuffer x(backend, x_host.size() * 2);
    Check(backend.Upload(x.get(), x_host.data(), x_host.size() * 2));
    // cuBLAS reads x with its own stride (cols), the bitplane kernel with padded_cols; both
    // read the first rows of the same buffer, which is what the timing needs.
    DeviceBuffer y(backend, static_cast<size_t>(16) * shape.rows * 4);
    Check(backend.Synchronize());

    std::printf("## %d x %d (rows x cols): %d bitplane copies, %d fp16 copies streamed\n\n", shape.rows, shape.cols, copies, dense_copies);
    std::printf("| batch | kernel | us | GB/s moved | %% of copy | vs cuBLAS fp16 |\n|---|---|---|---|---|---|\n");
    for (const int batch : {1, 4, 16}) {
      const double cublas_us = TimeUs(backend, rounds, 2 * dense_copies, [&](int i) {
        Check(backend.GemmF16(x.get(), batch, dense[i % dense_copies].get(), shape.rows, shape.cols, static_cast<float*>(y.get())));
      });
      const double dense_moved = dense_bytes + 2.0 * batch * shape.cols + 4.0 * batch * shape.rows;
      std::printf("| %d | cuBLAS fp16 | %.1f | %.0f | %.0f%% | 1.00 |\n", batch, cublas_us, dense_moved / cublas_us / 1e3,
                  100.0 * dense_moved / cublas_us / 1e3 / copy_gbs);
      const auto run_bits = [&](const std::vector<int>& bits, const char* label) {
        const int widest = *std::max_element(bits.begin(), bits.end());
        double lut_floats = 0;
        std::vector<int> distinct;
        for (int b : bits) {
          if (std::find(distinct.begin(), distinct.end(), b) == distinct.end()) distinct.push_back(b);
        }
        for (int b : distinct) lut_floats += static_cast<double>(shape.rows) * (1 << b);
        const double moved = static_cast<double>(shape.rows) * host.padded_cols / 8 * widest + 4 * lut_floats +
                             2.0 * bits.size() * host.padded_cols + 4.0 * bits.size() * shape.rows;
        const double us = TimeUs(backend, rounds, 2 * copies, [&](int i) {
          Check(backend.BitplaneGemv(matrices[i % copies], x.get(), Activation::kF16, bits, static_cast<float*>(y.get())));
        });
        std::printf("| %d | %s | %.1f | %.0f | %.0f%% | %.2f |\n", batch, label, us, moved / us / 1e3, 100.0 * moved / us / 1e3 / copy_gbs,
                    cublas_us / us);
        return us;
      };
      for (int b = 3; b <= 8; ++b) run_bits(std::vector<int>(batch, b), ("bitplane " + std::to_string(b) + "-bit").c_str());
      if (batch > 1) {
        std::vector<int> mixed;
        for (int t = 0; t < batch; ++t) mixed.push_back(std::vector<int>{3, 4, 8}[t % 3]);
        const double one_pass = run_bits(mixed, "mixed {3,4,8}, one pass");
        // The same rows run as one call per width.
        double grouped = 0;
        for (const int b : {3, 4, 8}) {
          const int count = static_cast<int>(std::count(mixed.begin(), mixed.end(), b));
          const std::vector<int> group(count, b);
          grouped += TimeUs(backend, rounds, 2 * copies, [&](int i) {
            Check(backend.BitplaneGemv(matrices[i % copies], x.get(), Activation::kF16, group, static_cast<float*>(y.get())));
          });
        }
        std::printf("| %d | mixed {3,4,8}, grouped by width (3 calls) | %.1f | | | %.2f |\n", batch, grouped, cublas_us / grouped);
        std::printf("| %d | one pass / grouped | %.2f | | | |\n", batch, one_pass / grouped);
      }
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace anyprec::cuda

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  return anyprec::cuda::Run(quick);
}
