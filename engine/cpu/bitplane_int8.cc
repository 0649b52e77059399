// BitplaneMatMulInt8's one dispatch point: which int8 kernel this CPU runs, the activations
// quantized in the order that kernel reads, token rows sorted by width, the schedule, and
// output rows spread over the cores.
#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cpu/int8_kernels.h"
#include "engine/cpu/kernel_choice.h"
#include "engine/cpu/row_blocks.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

namespace anyprec::cpu {
namespace {

// Every int8 kernel of the target's architecture, fastest first, with what it needs of the CPU.
struct KernelInfo {
  Int8Kernel kernel;
  std::string_view name;
  const char* requirement;
  bool (*supported)();
  int8::RowsKernel gemm;  // the batched schedule, which every kernel has
  // The per-token schedule, for batches of fewer than batched_from_tokens token rows in
  // passes of pass_tokens; none where gemm was the faster from one token row on.
  int8::RowsKernel rows;
  int pass_tokens;
  int batched_from_tokens;
  ActivationOrder order;
};
constexpr KernelInfo kKernels[] = {
#if defined(__x86_64__)
    {Int8Kernel::kAvx512Vbmi, "avx512-vbmi", "AVX-512 F, BW, VL, VBMI and VNNI, and GFNI",
     [] {
       return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("gfni");
     },
     &int8::avx512_vbmi::Gemm, &int8::avx512_vbmi::Rows, int8::avx512_vbmi::kPassTokens, int8::avx512_vbmi::kBatchedFromTokens,
     ActivationOrder::kNatural},
    {Int8Kernel::kAvx2Vnni, "avx2-vnni", "AVX2, FMA, AVX-512 VL and VNNI",
     [] {
       return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512vnni");
     },
     &int8::avx2_vnni::Gemm, nullptr, 0, 1, ActivationOrder::kBitSliced},
    {Int8Kernel::kAvx2, "avx2", "AVX2 and FMA", [] { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); },
     &int8::avx2::Gemm, nullptr, 0, 1, ActivationOrder::kBitSliced},
#elif defined(__aarch64__)
    {Int8Kernel::kNeonDotprod, "neon-dotprod", "ARMv8.2 NEON with the dot-product extension",
     [] { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }, &int8::neon_dotprod::Gemm, &int8::neon_dotprod::Rows,
     int8::neon_dotprod::kPassTokens, int8::neon_dotprod::kBatchedFromTokens, ActivationOrder::kBitSliced},
#endif
};

const KernelInfo& InfoOf(Int8Kernel kernel) {
  for (const KernelInfo& info : kKernels) {
    if (info.kernel == kernel) return info;
  }
  return kKernels[0];
}

// The bit-sliced order works on whole 256-column tiles; the natural one on 128-column blocks.
size_t PaddedCols(ActivationOrder order, const BitplaneView& w) {
  const size_t cols = w.row_stride * 8;
  return order == ActivationOrder::kNatural ? cols : (cols + 255) / 256 * 256;
}

}  // namespace

std::string_view Int8KernelName(Int8Kernel kernel) { return InfoOf(kernel).name; }

std::vector<Int8Kernel> SupportedInt8Kernels() {
  std::vector<Int8Kernel> supported;
  for (const KernelInfo& info : kKernels) {
    if (info.supported()) supported.push_back(info.kernel);
  }
  return supported;
}

absl::StatusOr<KernelChoice> ChooseKernel() {
  const char* env = std::getenv("ANYPREC_CPU_KERNEL");
  const std::string requested = env == nullptr ? "auto" : env;
  const std::vector<Int8Kernel> supported = SupportedInt8Kernels();
  if (requested == "auto" || requested.empty()) {
    if (supported.empty()) {
      // The last kernel needs the least, which every other one needs too.
      return KernelChoice{std::nullopt, absl::StrCat("exact fp32 (this CPU lacks ", kKernels[std::size(kKernels) - 1].requirement,
                                                     ", which every int8 kernel needs)")};
    }
    const KernelInfo& best = InfoOf(supported.front());
    std::string why = absl::StrCat("int8 ", std::string(best.name), " (the fastest for this CPU's ", best.requirement);
    if (best.kernel != kKernels[0].kernel) absl::StrAppend(&why, "; it lacks ", kKernels[0].requirement);
    return KernelChoice{best.kernel, why + ")"};
  }
  if (requested == "exact") return KernelChoice{std::nullopt, "exact fp32 (ANYPREC_CPU_KERNEL=exact)"};
  std::string names = "auto";
  for (const KernelInfo& info : kKernels) {
    absl::StrAppend(&names, ", ", std::string(info.name));
    if (requested != info.name) continue;
    if (!info.supported()) {
      return absl::FailedPreconditionError(
          absl::StrCat("ANYPREC_CPU_KERNEL=", requested, " needs ", info.requirement, ", which this CPU lacks"));
    }
    return KernelChoice{info.kernel, absl::StrCat("int8 ", requested, " (ANYPREC_CPU_KERNEL)")};
  }
  return absl::InvalidArgumentError(absl::StrCat("ANYPREC_CPU_KERNEL='", requested, "' is none of ", names, ", exact"));
}

std::optional<Int8Kernel> ChosenInt8Kernel() {
  static const std::optional<Int8Kernel> chosen = [] {
    const absl::StatusOr<KernelChoice> choice = ChooseKernel();
    return choice.ok() ? choice->int8 : std::nullopt;
  }();
  return chosen;
}

bool HasInt8BitplaneKernel() { return ChosenInt8Kernel().has_value(); }

void BitplaneMatMulInt8(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out) {
  BitplaneMatMulInt8(x, bits, w, out, ChosenInt8Kernel().value());
}

void BitplaneMatMulInt8(std::span<const float> x, std::span<const int> bits, const BitplaneView& w, std::span<float> out,
                        Int8Kernel kernel, Int8Schedule schedule) {
  const KernelInfo& info = InfoOf(kernel);
  const int tokens = static_cast<int>(bits.size());
  const Int8Activations a = QuantizeActivations(x, tokens, w.cols, PaddedCols(info.order, w), info.order);
  // Token rows sorted by width, in passes of at most the kernel's pass_tokens.
  std::vector<int> order(tokens);
  for (int t = 0; t < tokens; ++t) order[t] = t;
  std::stable_sort(order.begin(), order.end(), [&](int p, int q) { return bits[p] < bits[q]; });
  std::vector<int> sorted_bits(tokens);
  for (int t = 0; t < tokens; ++t) sorted_bits[t] = bits[order[t]];
  const bool batched =
      info.rows == nullptr || schedule == Int8Schedule::kBatched || (schedule == Int8Schedule::kAuto && tokens >= info.batched_from_tokens);
  ForEachRowBlock(w.rows, static_cast<long>(w.rows) * w.cols * tokens, [&](int begin, int end) {
    if (batched) {
      info.gemm(a, w, order.data(), sorted_bits.data(), tokens, begin, end, out.data());
      return;
    }
    for (int first = 0; first < tokens; first += info.pass_tokens) {
      const int count = std::min(info.pass_tokens, tokens - first);
      info.rows(a, w, &order[first], &sorted_bits[first], count, begin, end, out.data());
    }
  });
}

}  // namespace anyprec::cpu
