// Conversions between fp32 and the 16-bit floats (IEEE half and bfloat16). Depends on
// nothing, so that the GPU-only build (tests/gpu) can use it too.
#pragma once

#include <cstdint>

namespace anyprec {

float BF16ToF32(uint16_t bits);
float F16ToF32(uint16_t bits);
// The largest finite half.
inline constexpr float kF16Max = 65504.0f;
// Rounds to the nearest half, ties to even; overflow becomes infinity.
uint16_t F32ToF16(float value);
// Rounds to the nearest bfloat16, ties to even.
uint16_t F32ToBF16(float value);

}  // namespace anyprec
