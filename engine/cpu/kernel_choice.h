// Which kernel runs the bitplane layers on this CPU, decided once per process: the fastest
// int8 kernel the CPU has, or the one the environment variable ANYPREC_CPU_KERNEL names
// (avx512-vbmi, avx2-vnni or avx2 on x86-64, neon-dotprod on aarch64, or exact for the fp32
// kernel; auto or unset for the fastest). An unknown name or a kernel this CPU lacks is an
// error, never a fallback.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/cpu/ops.h"

namespace anyprec::cpu {

struct KernelChoice {
  std::optional<Int8Kernel> int8;  // none: the exact fp32 kernel
  std::string summary;             // which kernel and why, for start-up logs and `anyprec inspect`
};
absl::StatusOr<KernelChoice> ChooseKernel();

}  // namespace anyprec::cpu
