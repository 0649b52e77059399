// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data. Every offset and size
// is validated before any tensor is exposed, so hostile files end in an error, never a fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
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

// Writes a safetensors file as its tensors are made, so that a writer of a file larger than
// memory holds one tensor at a time: the tensors (names, dtypes, shapes, order) are planned
// at Create; their bytes come through Append, in that order, in pieces of any size; Finish
// writes the header and renames PATH.partial to PATH. A writer destroyed before Finish
// removes PATH.partial.
class SafetensorsWriter {
 public:
  struct Planned {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;

    // What its data takes: the shape's product times the dtype's size.
    uint64_t bytes() const;
  };

  // The header's space is reserved for `metadata` as given: Finish's metadata may change its
  // values but must not take more room (e.g. checksums planned as placeholders of their length).
  static absl::StatusOr<SafetensorsWriter> Create(const std::string& path, std::vector<Planned> plan,
                                                  const std::map<std::string, std::string>& metadata);

  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) = delete;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  // The next bytes of the planned tensors; fails past the last one.
  absl::Status Append(std::span<const std::byte> bytes);
  // Fails unless every planned byte was appended.
  absl::Status Finish(const std::map<std::string, std::string>& metadata);

 private:
  SafetensorsWriter(std::string path, std::vector<Planned> plan, std::FILE* file, uint64_t header_bytes, uint64_t data_bytes)
      : path_(std::move(path)), plan_(std::move(plan)), file_(file), header_bytes_(header_bytes), data_bytes_(data_bytes) {}
  std::string temporary() const { return path_ + ".partial"; }

  std::string path_;
  std::vector<Planned> plan_;
  std::FILE* file_;  // owned; null once finished or moved from
  uint64_t header_bytes_;  // reserved, a multiple of 8
  uint64_t data_bytes_;    // planned
  uint64_t written_ = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);
  // Parses bytes that stay owned by the caller; `source` names them in errors.
  static absl::StatusOr<SafetensorsFile> Parse(std::span<const std::byte> bytes,
                                               const std::string& source);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }

  // Hands the pages of `view` (one of this file's tensors) back to the page cache, so that a
  // reader done with a tensor, or holding a widened copy of it, does not keep it resident; a
  // later read of the view faults them in again. Does nothing for a file parsed from bytes.
  void DropPages(const TensorView& view) const;

 private:
  SafetensorsFile() = default;

  std::string source_;
  std::vector<MappedFile> mapping_;  // empty when parsed from caller-owned bytes
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace anyprec
