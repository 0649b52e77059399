// The CUDA backend (engine/cuda) as a Device. The model's weights are uploaded once, planes
// re-tiled from the image's canonical ones into the GPU layout (gpu_layout.h), the head and
// embedding widened to fp32; activations live in device memory; each KvBlockPool's keys and
// values live in a device mirror that the pool owns (KvMirror), at the host's block ids. Its
// linear layers run a long run of rows at one width (a prompt) as one fp16 GEMM over the
// weights dequantized at that width, and the rest through the mixed-width bitplane GEMV.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/device/device.h"
#include "engine/model/model.h"

namespace anyprec {

// The device keeps no reference to `model`. `backend` must outlive it and every pool whose
// keys and values it has mirrored. Pools must hold fp32 keys and values, which its kernels read.
absl::StatusOr<std::unique_ptr<Device>> MakeCudaDevice(const Model& model, cuda::Backend& backend);

}  // namespace anyprec
