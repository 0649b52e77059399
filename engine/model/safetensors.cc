#include "engine/model/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

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

namespace {

// The header as the file stores it: JSON padded with spaces to `reserve` bytes, or to a
// multiple of 8 when `reserve` is 0; empty when it would not fit in `reserve`.
std::string HeaderText(std::span<const SafetensorsWriter::Planned> plan, const std::map<std::string, std::string>& metadata,
                       uint64_t& data_bytes, uint64_t reserve) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsWriter::Planned& t : plan) {
    header[t.name] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  data_bytes = offset;
  std::string text = header.dump();
  const uint64_t size = reserve > 0 ? reserve : (text.size() + 7) / 8 * 8;
  if (text.size() > size) return {};
  text.append(size - text.size(), ' ');
  return text;
}

absl::Status WriteError(const std::string& path) {
  return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
}

}  // namespace

uint64_t SafetensorsWriter::Planned::bytes() const {
  uint64_t n = DTypeSize(dtype);
  for (const int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

absl::StatusOr<SafetensorsWriter> SafetensorsWriter::Create(const std::string& path, std::vector<Planned> plan,
                                                             const std::map<std::string, std::string>& metadata) {
  for (const Planned& t : plan) {
    if (std::any_of(t.shape.begin(), t.shape.end(), [](int64_t d) { return d < 0; })) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' has a negative dimension"));
    }
  }
  uint64_t data_bytes = 0;
  const std::string header = HeaderText(plan, metadata, data_bytes, 0);
  const std::string temporary = path + ".partial";
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) return absl::PermissionDeniedError(absl::StrCat(temporary, ": cannot create: ", std::strerror(errno)));
  SafetensorsWriter writer(path, std::move(plan), file, header.size(), data_bytes);
  // The header's place, filled in by Finish.
  if (std::fseek(file, static_cast<long>(8 + header.size()), SEEK_SET) != 0) return WriteError(temporary);
  return writer;
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept
    : path_(std::move(other.path_)),
      plan_(std::move(other.plan_)),
      file_(std::exchange(other.file_, nullptr)),
      header_bytes_(other.header_bytes_),
      data_bytes_(other.data_bytes_),
      written_(other.written_) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ == nullptr) return;
  std::fclose(file_);
  std::remove(temporary().c_str());
}

absl::Status SafetensorsWriter::Append(std::span<const std::byte> bytes) {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": written already"));
  if (bytes.size() > data_bytes_ - written_) {
    return absl::InternalError(absl::StrCat(path_, ": ", written_ + bytes.size(), " bytes appended, the planned tensors hold ", data_bytes_));
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) return WriteError(temporary());
  written_ += bytes.size();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish(const std::map<std::string, std::string>& metadata) {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": written already"));
  if (written_ != data_bytes_) {
    return absl::InternalError(absl::StrCat(path_, ": ", written_, " bytes appended, the planned tensors hold ", data_bytes_));
  }
  uint64_t data_bytes = 0;
  const std::string header = HeaderText(plan_, metadata, data_bytes, header_bytes_);
  if (header.empty()) return absl::InternalError(absl::StrCat(path_, ": the final header outgrows the space reserved for it"));
  const uint64_t header_len = header.size();
  const bool written = std::fseek(file_, 0, SEEK_SET) == 0 && std::fwrite(&header_len, 8, 1, file_) == 1 &&
                       std::fwrite(header.data(), 1, header.size(), file_) == header.size();
  const bool closed = std::fclose(std::exchange(file_, nullptr)) == 0;
  if (!written || !closed) {
    const absl::Status error = WriteError(temporary());
    std::remove(temporary().c_str());
    return error;
  }
  if (std::rename(temporary().c_str(), path_.c_str()) != 0) {
    const absl::Status error = absl::DataLossError(absl::StrCat(path_, ": cannot rename from ", temporary(), ": ", std::strerror(errno)));
    std::remove(temporary().c_str());
    return error;
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsWriter::Planned> plan;
  for (const TensorToWrite& t : tensors) plan.push_back({t.name, t.dtype, t.shape});
  ASSIGN_OR_RETURN(SafetensorsWriter writer, SafetensorsWriter::Create(path, plan, metadata));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    if (t.data.size() != plan[i].bytes()) {
      return absl::InternalError(
          absl::StrCat(path, ": tensor '", t.name, "' has ", t.data.size(), " bytes, its shape and dtype need ", plan[i].bytes()));
    }
    RETURN_IF_ERROR(writer.Append(t.data));
  }
  return writer.Finish(metadata);
}

void SafetensorsFile::DropPages(const TensorView& view) const {
  for (const MappedFile& mapping : mapping_) mapping.DropPages(view.data);
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
