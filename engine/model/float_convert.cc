#include "engine/model/float_convert.h"

#include <cstring>

namespace anyprec {

void WidenToF32(DType dtype, std::span<const std::byte> raw, std::span<float> out) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out.data(), raw.data(), out.size() * sizeof(float));
      return;
    case DType::kU8:
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(static_cast<uint8_t>(raw[i]));
      return;
    case DType::kI8:
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(static_cast<int8_t>(raw[i]));
      return;
    case DType::kBF16:
    case DType::kF16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, raw.data() + 2 * i, 2);
        out[i] = dtype == DType::kBF16 ? BF16ToF32(bits) : F16ToF32(bits);
      }
      return;
  }
}

}  // namespace anyprec
