#include "engine/model/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "nlohmann/json.hpp"

namespace anyprec {
namespace {

// Real headers are a few hundred KiB at most; this bounds what a hostile length can make us parse.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status Malformed(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": malformed safetensors: ", what));
}

absl::StatusOr<DType> ParseDType(const std::string& name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "U8") return DType::kU8;
  if (name == "I8") return DType::kI8;
  return absl::UnimplementedError(absl::StrCat("unsupported dtype ", name, " (supported: F32, F16, BF16, U8, I8)"));
}

struct ByteRange {
  uint64_t begin;
  uint64_t end;
  const std::string* name;
};

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
    case DType::kU8:
    case DType::kI8: return 1;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kU8: return "U8";
    case DType::kI8: return "I8";
  }
  return "?";
}

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    header[t.name] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  const std::string temporary = path + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&header_len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const TensorToWrite& t : tensors) out.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
    out.flush();
    if (!out) return absl::DataLossError(absl::StrCat(temporary, ": write failed: ", std::strerror(errno)));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": cannot rename from ", temporary, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  const std::span<const std::byte> bytes = mapped.bytes();
  ASSIGN_OR_RETURN(SafetensorsFile file, Parse(bytes, path));
  file.mapping_.push_back(std::move(mapped));
  return file;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(std::span<const std::byte> bytes,
                                                       const std::string& source) {
  if (bytes.size() < 8) return Malformed(source, absl::StrCat("file is ", bytes.size(), " bytes, shorter than the 8-byte header length"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes) return Malformed(source, absl::StrCat("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes));
  if (header_len > bytes.size() - 8) return Malformed(source, absl::StrCat("header length ", header_len, " runs past the end of the file (", bytes.size(), " bytes)"));

  const auto* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    return Malformed(source, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return Malformed(source, "header is not a JSON object");

  const std::span<const std::byte> data = bytes.subspan(8 + header_len);
  SafetensorsFile file;
  file.source_ = source;
  std::vector<ByteRange> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Malformed(source, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) return Malformed(source, absl::StrCat("__metadata__ value for '", key, "' is not a string"));
        file.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "': ");
    if (!entry.is_object()) return Malformed(source, where + "entry is not an object");
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return Malformed(source, where + "missing or non-string dtype");
    if (shape_it == entry.end() || !shape_it->is_array()) return Malformed(source, where + "missing or non-array shape");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) return Malformed(source, where + "data_offsets must be [begin, end]");

    const absl::StatusOr<DType> dtype = ParseDType(dtype_it->get<std::string>());
    if (!dtype.ok()) return Malformed(source, where + std::string(dtype.status().message()));

    TensorView view{*dtype, {}, {}};
    uint64_t elements = 1;
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) return Malformed(source, where + "shape has a negative or non-integer dimension");
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && elements > std::numeric_limits<int64_t>::max() / d) return Malformed(source, where + "shape overflows");
      elements *= d;
      view.shape.push_back(static_cast<int64_t>(d));
    }
    for (const auto& off : *offsets_it) {
      if (!off.is_number_unsigned()) return Malformed(source, where + "data_offsets must be non-negative integers");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (end < begin) return Malformed(source, absl::StrCat(where, "data_offsets [", begin, ", ", end, "] end before they begin"));
    if (end > data.size()) return Malformed(source, absl::StrCat(where, "data_offsets [", begin, ", ", end, "] run past the data section (", data.size(), " bytes)"));
    const uint64_t expected = elements * DTypeSize(*dtype);
    if (elements > std::numeric_limits<uint64_t>::max() / DTypeSize(*dtype) || end - begin != expected) {
      return Malformed(source, absl::StrCat(where, "holds ", end - begin, " bytes but its shape and dtype need ", expected));
    }
    view.data = data.subspan(begin, end - begin);
    auto [it, inserted] = file.tensors_.emplace(name, std::move(view));
    ranges.push_back({begin, end, &it->first});
  }

  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return Malformed(source, absl::StrCat("tensors '", *ranges[i - 1].name, "' and '", *ranges[i].name, "' overlap"));
    }
  }
  return file;
}

}  // namespace anyprec
