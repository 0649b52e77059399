// anyprec-test-backend-ops: every CUDA op against the CPU reference on fresh random inputs
// of several shapes and every width, in the manner of llama.cpp's test-backend-ops. Outputs
// are poisoned (all bits set: NaN) before each run, so that elements a kernel never writes
// are caught. Exit status: 0 all passed, 1 a failure, 77 no GPU (skipped, with the reason).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <random>
#include <string>
#include <vector>

#include "engine/base/relative_error.h"
#include "engine/cpu/ops.h"
#include "engine/cuda/cuda_loader.h"
#include "engine/model/bitplanes.h"
#include "engine/model/half_float.h"
#include "tests/gpu/gpu_support.h"
#include "tests/paged_cache.h"

namespace anyprec::cuda {
namespace {

// Bounds on max |gpu - reference| / max |reference| over an output, per op.
constexpr double kGemvBound = 1e-5;     // fp32 accumulation against the double reference
constexpr double kGemmF16Bound = 1e-3;  // cuBLAS's fp32 accumulation (tensor cores) on fp16 inputs
constexpr double kRowOpBound = 1e-5;    // RMSNorm, RoPE, SwiGLU: fp32 on both sides, fast-math exp and rsqrt
constexpr double kAttentionBound = 1e-4;  // fp32 scores and sums against the double reference

int g_failures = 0;
int g_cases = 0;

void Report(const char* op, const std::string& what, double error, double bound) {
  const bool pass = error <= bound;  // false for NaN
  ++g_cases;
  if (!pass) ++g_failures;
  std::printf("  %-12s %-44s max rel err %.3g (bound %.0e)  %s\n", op, what.c_str(), error, bound, pass ? "OK" : "FAIL");
}




// A random quantized matrix in the CPU kernels' layout, and the same on the device.
struct TestMatrix {
  cpu::AlignedBytes tiled;
  std::vector<std::vector<float>> luts;
  cpu::BitplaneView view;
  GpuBitplaneMatrix gpu;
};

TestMatrix RandomMatrix(int rows, int cols, int seed_bits, int max_bits, std::mt19937& rng) {
  TestMatrix m;
  std::vector<uint8_t> canonical(static_cast<size_t>(max_bits) * PlaneBytes(rows, cols));
  std::uniform_int_distribution<uint32_t> index(0, (1u << max_bits) - 1);
  for (int n = 0; n < rows; ++n) {
    for (int k = 0; k < cols; ++k) WriteIndex(canonical, rows, cols, n, k, max_bits, index(rng));
  }
  m.tiled = cpu::RetilePlanes(canonical, rows, cols, max_bits);
  std::normal_distribution<float> centroid(0.0f, 0.05f);
  for (int b = seed_bits; b <= max_bits; ++b) {
    std::vector<float>& lut = m.luts.emplace_back(static_cast<size_t>(rows) << b);
    for (float& c : lut) c = centroid(rng);
  }
  m.view = {rows, cols, seed_bits, max_bits, m.tiled.data(), cpu::PaddedRowStride(cols),
            static_cast<size_t>(rows) * cpu::PaddedRowStride(cols), {}, {}, {}};
  for (const auto& lut : m.luts) m.view.luts.push_back(lut.data());
  m.gpu = RetileForGpu(canonical.data(), rows, cols, seed_bits, max_bits, m.view.luts.data());
  return m;
}

struct ResidentMatrix {
  ResidentMatrix(Backend& backend, const GpuBitplaneMatrix& m)
      : planes(backend, m.planes.size() * 4), luts(backend, m.luts.size() * 4) {
    Check(backend.Upload(planes.get(), m.planes.data(), m.planes.size() * 4));
    Check(backend.Upload(luts.get(), m.luts.data(), m.luts.size() * 4));
    device = {m.rows, m.cols, m.padded_cols, m.seed_bits, m.max_bits, planes.as<uint32_t>(), luts.as<float>(), {}};
    std::copy(std::begin(m.lut_offset), std::end(m.lut_offset), std::begin(device.lut_offset));
  }
  DeviceBuffer planes;
  DeviceBuffer luts;
  DeviceBitplaneMatrix device;
};

std::string Describe(int rows, int cols, std::span<const int> bits, Activation type) {
  std::string text = std::to_string(rows) + "x" + std::to_string(cols) + (type == Activation::kF16 ? " f16" : " bf16") + " bits {";
  for (size_t i = 0; i < bits.size(); ++i) {
    if (i > 0) text += ",";
    text += std::to_string(bits[i]);
  }
  return text + "}";
}

void TestGemv(Backend& backend, const TestMatrix& m, const ResidentMatrix& resident, std::span<const int> bits, Activation type,
              std::mt19937& rng) {
  const int batch = static_cast<int>(bits.size());
  const int rows = m.gpu.rows;
  const int cols = m.gpu.cols;
  const int padded = m.gpu.padded_cols;
  std::normal_distribution<float> value(0.0f, 1.0f);
  std::vector<uint16_t> x16(static_cast<size_t>(batch) * padded, 0);
  std::vector<float> x(static_cast<size_t>(batch) * cols);  // the same values, widened, for the reference
  for (int t = 0; t < batch; ++t) {
    for (int k = 0; k < cols; ++k) {
      const float v = value(rng);
      const uint16_t h = type == Activation::kF16 ? F32ToF16(v) : F32ToBF16(v);
      x16[static_cast<size_t>(t) * padded + k] = h;
      x[static_cast<size_t>(t) * cols + k] = type == Activation::kF16 ? F16ToF32(h) : BF16ToF32(h);
    }
  }
  std::vector<float> want_f(static_cast<size_t>(batch) * rows);
  cpu::reference::BitplaneMatMul(x, bits, m.view, want_f);
  const std::vector<double> want(want_f.begin(), want_f.end());

  DeviceBuffer dx(backend, x16.size() * 2);
  DeviceBuffer dy(backend, want.size() * 4);
  Check(backend.Upload(dx.get(), x16.data(), x16.size() * 2));
  Check(backend.Fill(dy.get(), 0xff, want.size() * 4));
  Check(backend.BitplaneGemv(resident.device, dx.get(), type, bits, dy.as<float>()));
  std::vector<float> got(want.size());
  Check(backend.Download(got.data(), dy.get(), got.size() * 4));
  Report("gemv", Describe(rows, cols, bits, type), MaxRelativeError(got, want), kGemvBound);
}

void TestDequantize(Backend& backend, const TestMatrix& m, const ResidentMatrix& resident, int bits) {
  const size_t count = static_cast<size_t>(m.gpu.rows) * m.gpu.cols;
  DeviceBuffer out(backend, count * 2);
  Check(backend.Fill(out.get(), 0xff, count * 2));
  Check(backend.Dequantize(resident.device, bits, out.get()));
  std::vector<uint16_t> got(count);
  Check(backend.Download(got.data(), out.get(), count * 2));
  size_t wrong = 0;
  for (int n = 0; n < m.gpu.rows; ++n) {
    for (int k = 0; k < m.gpu.cols; ++k) {
      const float weight = m.view.Lut(bits, n)[m.view.Index(n, k, bits)];
      wrong += got[static_cast<size_t>(n) * m.gpu.cols + k] != F32ToF16(weight);
    }
  }
  Report("dequantize", std::to_string(m.gpu.rows) + "x" + std::to_string(m.gpu.cols) + " bits " + std::to_string(bits),
         static_cast<double>(wrong), 0);
}

void TestGemmF16(Backend& backend, int tokens, int rows, int k, std::mt19937& rng) {
  std::normal_distribution<float> value(0.0f, 1.0f);
  std::vector<uint16_t> x(static_cast<size_t>(tokens) * k);
  std::vector<uint16_t> w(static_cast<size_t>(rows) * k);
  for (auto& v : x) v = F32ToF16(value(rng));
  for (auto& v : w) v = F32ToF16(value(rng) * 0.05f);
  std::vector<double> want(static_cast<size_t>(tokens) * rows);
  for (int t = 0; t < tokens; ++t) {
    for (int n = 0; n < rows; ++n) {
      double sum = 0;
      for (int i = 0; i < k; ++i) sum += static_cast<double>(F16ToF32(x[static_cast<size_t>(t) * k + i])) * F16ToF32(w[static_cast<size_t>(n) * k + i]);
      want[static_cast<size_t>(t) * rows + n] = sum;
    }
  }
  DeviceBuffer dx(backend, x.size() * 2);
  DeviceBuffer dw(backend, w.size() * 2);
  DeviceBuffer dy(backend, want.size() * 4);
  Check(backend.Upload(dx.get(), x.data(), x.size() * 2));
  Check(backend.Upload(dw.get(), w.data(), w.size() * 2));
  Check(backend.Fill(dy.get(), 0xff, want.size() * 4));
  Check(backend.GemmF16(dx.get(), tokens, dw.get(), rows, k, dy.as<float>()));
  std::vector<float> got(want.size());
  Check(backend.Download(got.data(), dy.get(), got.size() * 4));
  Report("gemm_f16", std::to_string(tokens) + " tokens x " + std::to_string(rows) + "x" + std::to_string(k), MaxRelativeError(got, want),
         kGemmF16Bound);
}

std::vector<float> RandomVector(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> value(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = value(rng);
  return v;
}

template <typename T>
DeviceBuffer ToDevice(Backend& backend, const std::vector<T>& host) {
  DeviceBuffer buffer(backend, host.size() * sizeof(T));
  Check(backend.Upload(buffer.get(), host.data(), host.size() * sizeof(T)));
  return buffer;
}

std::vector<float> FromDevice(Backend& backend, const DeviceBuffer& buffer, size_t count) {
  std::vector<float> host(count);
  Check(backend.Download(host.data(), buffer.get(), count * sizeof(float)));
  return host;
}

std::vector<double> Widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

void TestRowOps(Backend& backend, std::mt19937& rng) {
  for (const auto& [rows, width] : std::vector<std::pair<int, int>>{{1, 64}, {7, 288}, {3, 4096}}) {
    const auto x = RandomVector(static_cast<size_t>(rows) * width, rng, 3.0f);
    const auto weight = RandomVector(width, rng);
    std::vector<float> want(x.size());
    cpu::RmsNorm(x, weight, 1e-5f, want);
    const DeviceBuffer dx = ToDevice(backend, x);
    const DeviceBuffer dw = ToDevice(backend, weight);
    DeviceBuffer out(backend, x.size() * 4);
    Check(backend.Fill(out.get(), 0xff, x.size() * 4));
    Check(backend.RmsNorm(dx.as<float>(), rows, width, dw.as<float>(), 1e-5f, out.as<float>()));
    Report("rms_norm", std::to_string(rows) + "x" + std::to_string(width), MaxRelativeError(FromDevice(backend, out, x.size()), Widen(want)),
           kRowOpBound);

    auto gate = RandomVector(x.size(), rng, 4.0f);
    const auto up = RandomVector(x.size(), rng);
    const DeviceBuffer dup = ToDevice(backend, up);
    for (const MlpActivation act : {MlpActivation::kSilu, MlpActivation::kGelu, MlpActivation::kGeluTanh}) {
      const DeviceBuffer dgate = ToDevice(backend, gate);
      std::vector<float> want_gate = gate;
      cpu::Glu(act, want_gate, up);
      Check(backend.Glu(act, dgate.as<float>(), dup.as<float>(), x.size()));
      Report("glu", "activation " + std::to_string(static_cast<int>(act)) + ", " + std::to_string(x.size()) + " values",
             MaxRelativeError(FromDevice(backend, dgate, x.size()), Widen(want_gate)), kRowOpBound);
    }

    const DeviceBuffer sum = ToDevice(backend, x);
    Check(backend.Add(sum.as<float>(), dup.as<float>(), x.size()));
    std::vector<float> added(x.size());
    for (size_t i = 0; i < x.size(); ++i) added[i] = x[i] + up[i];
    Report("add", std::to_string(x.size()) + " values", MaxRelativeError(FromDevice(backend, sum, x.size()), Widen(added)), 0);
  }
  for (const auto& [tokens, heads, head_dim] : std::vector<std::tuple<int, int, int>>{{1, 4, 64}, {9, 8, 16}, {5, 2, 6}}) {
    auto x = RandomVector(static_cast<size_t>(tokens) * heads * head_dim, rng);
    std::vector<int> positions(tokens);
    std::uniform_int_distribution<int> position(0, 4000);
    for (int& p : positions) p = position(rng);
    const DeviceBuffer dx = ToDevice(backend, x);
    const DeviceBuffer dpositions = ToDevice(backend, positions);
    // Partial rotary (all but 2 dims) with an attention factor, as Phi-3 and YaRN.
    std::vector<double> inv_freq;
    for (int i = 0; i < head_dim / 2 - 1; ++i) inv_freq.push_back(std::pow(10000.0, -2.0 * i / (head_dim - 2)));
    const DeviceBuffer dfreq = ToDevice(backend, inv_freq);
    cpu::Rope(x, positions, heads, head_dim, inv_freq, 1.1);
    Check(backend.Rope(dx.as<float>(), tokens, dpositions.as<int>(), heads, head_dim, dfreq.as<double>(), head_dim - 2, 1.1));
    Report("rope", std::to_string(tokens) + " tokens x " + std::to_string(heads) + "x" + std::to_string(head_dim),
           MaxRelativeError(FromDevice(backend, dx, x.size()), Widen(x)), kRowOpBound);
  }
  const int vocab = 50;
  const int width = 96;
  const auto table = RandomVector(static_cast<size_t>(vocab) * width, rng);
  const std::vector<int> ids = {3, 0, 49, 3, 17};
  const DeviceBuffer dtable = ToDevice(backend, table);
  const DeviceBuffer dids = ToDevice(backend, ids);
  DeviceBuffer out(backend, ids.size() * width * 4);
  Check(backend.Fill(out.get(), 0xff, ids.size() * width * 4));
  Check(backend.Embed(dtable.as<float>(), width, dids.as<int>(), static_cast<int>(ids.size()), 2.0f, out.as<float>()));
  std::vector<float> want;
  for (const int id : ids) {
    for (int i = 0; i < width; ++i) want.push_back(table[static_cast<size_t>(id) * width + i] * 2.0f);
  }
  Report("embed", std::to_string(ids.size()) + " ids x " + std::to_string(width), MaxRelativeError(FromDevice(backend, out, want.size()), Widen(want)), 0);
}

// The reference reads a contiguous cache; the kernel the same rows paged.
void TestAttention(Backend& backend, std::mt19937& rng) {
  for (const cpu::AttentionShape shape : {cpu::AttentionShape{8, 4, 16}, cpu::AttentionShape{8, 4, 8}, cpu::AttentionShape{4, 1, 64},
                                          cpu::AttentionShape{2, 2, 6}, cpu::AttentionShape{32, 8, 128}, cpu::AttentionShape{8, 4, 16, 7}}) {
    const int q_width = shape.num_heads * shape.head_dim;
    const testing::PagedCache cache(shape.num_kv_heads * shape.head_dim, rng);
    const DeviceBuffer dkeys = ToDevice(backend, cache.paged_keys);
    const DeviceBuffer dvalues = ToDevice(backend, cache.paged_values);
    const DeviceBuffer dblocks = ToDevice(backend, cache.blocks);
    const DeviceKvLayer kv{dkeys.as<float>(), dvalues.as<float>(), cache.block_stride(), testing::PagedCache::kBlockTokens,
                           cache.row_width, dblocks.as<int>()};
    for (const std::vector<int>& positions : testing::AttentionPositions()) {
      const auto q = RandomVector(positions.size() * q_width, rng, 2.0f);
      std::vector<float> want(q.size());
      cpu::reference::Attention(q, positions, cache.contiguous(), shape, want);
      const DeviceBuffer dq = ToDevice(backend, q);
      const DeviceBuffer dpositions = ToDevice(backend, positions);
      DeviceBuffer out(backend, q.size() * 4);
      Check(backend.Fill(out.get(), 0xff, q.size() * 4));
      Check(backend.Attention(dq.as<float>(), static_cast<int>(positions.size()), dpositions.as<int>(), positions.back(), kv,
                              shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.window, out.as<float>()));
      Report("attention",
             std::to_string(shape.num_heads) + "/" + std::to_string(shape.num_kv_heads) + " heads x " + std::to_string(shape.head_dim) +
                 ", positions " + std::to_string(positions.front()) + ".." + std::to_string(positions.back()),
             MaxRelativeError(FromDevice(backend, out, q.size()), Widen(want)), kAttentionBound);
    }
  }
}

int Run() {
  std::string why;
  const std::unique_ptr<LoadedBackend> backend = LoadCudaBackend(0, why);
  if (!backend) {
    std::printf("anyprec-test-backend-ops: SKIPPED, no CUDA backend: %s\n", why.c_str());
    return 77;
  }
  const DeviceInfo& info = (*backend)->info();
  std::printf("anyprec-test-backend-ops on %s (compute %d.%d, %d SMs, driver %d, runtime %d)\n", info.name.c_str(), info.compute_major,
              info.compute_minor, info.multiprocessors, info.driver_version, info.runtime_version);
  std::mt19937 rng(20261128);
  const std::vector<std::vector<int>> width_sets = {{3}, {4}, {5}, {6}, {7}, {8}, {8, 8}, {3, 4, 8, 5},
                                                    {3, 4, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8, 8, 3, 4, 5}};
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{5, 172}, {33, 1000}, {64, 1024}, {130, 2100}, {512, 4096}}) {
    const TestMatrix m = RandomMatrix(rows, cols, 3, 8, rng);
    const ResidentMatrix resident(**backend, m.gpu);
    for (const std::vector<int>& bits : width_sets) {
      for (const Activation type : {Activation::kF16, Activation::kBF16}) TestGemv(**backend, m, resident, bits, type, rng);
    }
    for (int b = 3; b <= 8; ++b) TestDequantize(**backend, m, resident, b);
  }
  for (const auto& [tokens, rows, k] : std::vector<std::tuple<int, int, int>>{{1, 64, 172}, {7, 130, 1000}, {64, 256, 512}}) {
    TestGemmF16(**backend, tokens, rows, k, rng);
  }
  TestRowOps(**backend, rng);
  TestAttention(**backend, rng);
  std::printf("%d/%d passed\n", g_cases - g_failures, g_cases);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace anyprec::cuda

int main() { return anyprec::cuda::Run(); }
