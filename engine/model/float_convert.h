// Widening of 16-bit floats (IEEE half and bfloat16) to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/model/safetensors.h"

namespace anyprec {

float BF16ToF32(uint16_t bits);
float F16ToF32(uint16_t bits);
// Rounds to the nearest half, ties to even; overflow becomes infinity.
uint16_t F32ToF16(float value);
// Rounds to the nearest bfloat16, ties to even.
uint16_t F32ToBF16(float value);

// `out` holds as many elements as `raw` encodes in `dtype`.
void WidenToF32(DType dtype, std::span<const std::byte> raw, std::span<float> out);

}  // namespace anyprec
