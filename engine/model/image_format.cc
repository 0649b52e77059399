#include "engine/model/image_format.h"

#include <xxhash.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace anyprec::image {

std::string PlanesTensor(const std::string& linear_prefix) { return linear_prefix + ".planes"; }

std::string LutTensor(const std::string& linear_prefix, int bits) { return absl::StrCat(linear_prefix, ".lut", bits); }

std::string ChecksumKey(const std::string& tensor) { return "xxh3:" + tensor; }

std::string Checksum(std::span<const std::byte> bytes) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
  return hex;
}

}  // namespace anyprec::image
