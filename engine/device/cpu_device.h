// The CPU as a Device: engine/cpu's operators on host memory. Bitplane layers are prepared
// for its kernels from the image's canonical planes (re-tiled, rows padded to 128 columns)
// with int8 LUTs for the integer kernel, unless the exact fp32 kernel is asked for.
#pragma once

#include <memory>

#include "engine/device/device.h"
#include "engine/model/model.h"

namespace anyprec {

struct CpuDeviceOptions {
  // The exact fp32 bitplane kernel instead of the int8 one (cpu::ChooseKernel), which is
  // about 1% off the exact result.
  bool exact_kernels = false;
};

// The device views `model`'s tensors, which must outlive it (a Model's moves keep them).
std::unique_ptr<Device> MakeCpuDevice(const Model& model, const CpuDeviceOptions& options = {});

}  // namespace anyprec
