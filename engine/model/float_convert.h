// Widening of safetensors data (16-bit floats, bytes) to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/model/half_float.h"
#include "engine/model/safetensors.h"

namespace anyprec {

// `out` holds as many elements as `raw` encodes in `dtype`.
void WidenToF32(DType dtype, std::span<const std::byte> raw, std::span<float> out);

}  // namespace anyprec
