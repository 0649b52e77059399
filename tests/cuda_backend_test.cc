// The CPU side of the CUDA backend, which CI checks on machines with no GPU: the GPU layout
// against the image's canonical one, and how the plugin loader fails when the plugin, the driver or the
// device is missing.
#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "engine/cuda/cuda_loader.h"
#include "engine/model/bitplanes.h"
#include "gtest/gtest.h"

namespace anyprec::cuda {
namespace {

TEST(GpuLayout, EveryIndexAndTableSurvivesRetiling) {
  std::mt19937 rng(5);
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{1, 1}, {3, 172}, {5, 1024}, {7, 1500}, {2, 2049}}) {
    SCOPED_TRACE(::testing::Message() << rows << "x" << cols);
    const int max_bits = 8;
    std::vector<uint8_t> canonical(max_bits * PlaneBytes(rows, cols));
    std::uniform_int_distribution<uint32_t> index(0, 255);
    for (int n = 0; n < rows; ++n) {
      for (int k = 0; k < cols; ++k) WriteIndex(canonical, rows, cols, n, k, max_bits, index(rng));
    }
    std::vector<std::vector<float>> luts;
    std::vector<const float*> lut_pointers;
    for (int b = 3; b <= max_bits; ++b) {
      auto& lut = luts.emplace_back(static_cast<size_t>(rows) << b);
      for (size_t i = 0; i < lut.size(); ++i) lut[i] = static_cast<float>(b * 1000 + i);
      lut_pointers.push_back(lut.data());
    }
    const GpuBitplaneMatrix gpu = RetileForGpu(canonical.data(), rows, cols, 3, max_bits, lut_pointers.data());
    EXPECT_EQ(gpu.padded_cols % kChunkColumns, 0);
    EXPECT_GE(gpu.padded_cols, cols);
    for (int b = 3; b <= max_bits; ++b) {
      for (int n = 0; n < rows; ++n) {
        for (int k = 0; k < cols; ++k) ASSERT_EQ(gpu.Index(n, k, b), ReadIndex(canonical, rows, cols, n, k, b)) << n << "," << k << " at " << b;
        for (int e = 0; e < (1 << b); ++e) ASSERT_EQ(gpu.luts[gpu.lut_offset[b] + (static_cast<size_t>(n) << b) + e], luts[b - 3][(static_cast<size_t>(n) << b) + e]);
      }
    }
    // Padding columns carry zero bits in every plane.
    for (int n = 0; n < rows; ++n) {
      for (int k = cols; k < gpu.padded_cols; ++k) ASSERT_EQ(gpu.Index(n, k, max_bits), 0u);
    }
    // The layout's promise: bit 8g + i of word (chunk, lane) is column chunk*1024 + 256g + 8 lane + i.
    EXPECT_EQ(ColumnOfBit(1, 3, 8 * 2 + 5), 1024 + 512 + 24 + 5);
  }
}

class PluginEnvironment {
 public:
  explicit PluginEnvironment(const char* value) { setenv("ANYPREC_CUDA_PLUGIN", value, 1); }
  ~PluginEnvironment() { unsetenv("ANYPREC_CUDA_PLUGIN"); }
};

TEST(CudaLoader, SaysWhyWhenThePluginIsMissing) {
  const PluginEnvironment env("/nonexistent/libanyprec_cuda.so");
  std::string why;
  EXPECT_EQ(LoadCudaBackend(0, why), nullptr);
  EXPECT_NE(why.find("not found"), std::string::npos) << why;
  EXPECT_NE(why.find("/nonexistent/libanyprec_cuda.so"), std::string::npos) << why;
}

TEST(CudaLoader, RefusesALibraryThatIsNotThePlugin) {
  Dl_info libm{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(static_cast<double (*)(double)>(&::cos)), &libm), 0);
  const PluginEnvironment env(libm.dli_fname);
  std::string why;
  EXPECT_EQ(LoadCudaBackend(0, why), nullptr);
  EXPECT_NE(why.find("not an anyprec CUDA plugin"), std::string::npos) << why;
}

// The plugin this build made: on a machine without a GPU or driver it loads, finds no
// device, and says so; with a GPU it opens device 0 and reports it.
TEST(CudaLoader, TheBuiltPluginOpensAGpuOrSaysWhyNot) {
#ifndef ANYPREC_CUDA_PLUGIN_PATH
  GTEST_SKIP() << "built without CUDA: there is no plugin to load";
#else
  const PluginEnvironment env(ANYPREC_CUDA_PLUGIN_PATH);
  std::string why;
  const std::unique_ptr<LoadedBackend> backend = LoadCudaBackend(0, why);
  if (backend) {
    EXPECT_FALSE((*backend)->info().name.empty());
    std::string error;
    EXPECT_EQ((*backend)->Allocate(size_t{1} << 62, error), nullptr);
    EXPECT_FALSE(error.empty());
  } else {
    EXPECT_TRUE(why.find("driver") != std::string::npos || why.find("device") != std::string::npos) << why;
  }
  std::string out_of_range;
  EXPECT_EQ(LoadCudaBackend(1 << 20, out_of_range), nullptr);
  EXPECT_FALSE(out_of_range.empty());
#endif
}

}  // namespace
}  // namespace anyprec::cuda
