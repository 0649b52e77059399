// The safetensors parser on arbitrary bytes: an error or a file whose every tensor lies
// inside the bytes, never a fault.
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto bytes = std::as_bytes(std::span(data, size));
  const auto file = anyprec::SafetensorsFile::Parse(bytes, "fuzz");
  if (!file.ok()) return 0;
  for (const auto& [name, tensor] : file->tensors()) {
    if (tensor.data.data() < bytes.data() || tensor.data.data() + tensor.data.size() > bytes.data() + bytes.size()) __builtin_trap();
    if (static_cast<size_t>(tensor.NumElements()) * anyprec::DTypeSize(tensor.dtype) != tensor.data.size()) __builtin_trap();
  }
  return 0;
}
