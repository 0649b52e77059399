// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data. Every offset and size
// is validated before any tensor is exposed, so hostile files end in an error, never a fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/mapped_file.h"

namespace anyprec {

enum class DType { kF32, kF16, kBF16, kU8, kI8 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);

struct TensorView {
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;

  int64_t NumElements() const;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

// Writes a safetensors file (header padded to 8 bytes, tensors in the given order) to a
// temporary name beside `path`, then renames it, so a reader never sees half a file.
absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata);

class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);
  // Parses bytes that stay owned by the caller; `source` names them in errors.
  static absl::StatusOr<SafetensorsFile> Parse(std::span<const std::byte> bytes,
                                               const std::string& source);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }

 private:
  SafetensorsFile() = default;

  std::string source_;
  std::vector<MappedFile> mapping_;  // empty when parsed from caller-owned bytes
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace anyprec
