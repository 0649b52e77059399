// A read-only memory mapping of a whole file, released when the object dies.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace anyprec {

class MappedFile {
 public:
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // Returns the pages that overlap `range` (inside bytes()) to the page cache: the process's
  // resident memory falls, and a later read faults them in again from the file.
  void DropPages(std::span<const std::byte> range) const;

 private:
  MappedFile(const std::byte* data, size_t size) : data_(data), size_(size) {}
  void Release();

  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string, e.g. a JSON config.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace anyprec
