#include "engine/model/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/base/mapped_file.h"
#include "gtest/gtest.h"
#include "tests/shared_data.h"

namespace anyprec {
namespace {

std::vector<std::byte> MakeFile(const std::string& header, size_t data_bytes, uint64_t declared_len = UINT64_MAX) {
  const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::vector<std::byte> bytes(8 + header.size() + data_bytes);
  std::memcpy(bytes.data(), &len, 8);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  return bytes;
}

absl::Status ParseStatus(const std::vector<std::byte>& bytes) {
  return SafetensorsFile::Parse(bytes, "test.safetensors").status();
}

void ExpectError(const std::vector<std::byte>& bytes, const std::string& fragment) {
  const absl::Status status = ParseStatus(bytes);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(std::string(status.message()).find("test.safetensors"), std::string::npos) << status;
  EXPECT_NE(std::string(status.message()).find(fragment), std::string::npos) << status;
}

TEST(Safetensors, ParsesAValidFile) {
  const auto bytes = MakeFile(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                              R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})", 32);
  auto file = SafetensorsFile::Parse(bytes, "test.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->tensors().at("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(file->tensors().at("b").data.size(), 8u);
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST(Safetensors, RejectsTruncatedAndHostileFiles) {
  ExpectError(std::vector<std::byte>(5), "shorter than the 8-byte header length");
  ExpectError(MakeFile("{}", 0, 1ull << 62), "exceeds the limit");
  ExpectError(MakeFile("{}", 0, 4096), "runs past the end");
  ExpectError(MakeFile("{\"a\":", 0), "not valid JSON");
  ExpectError(MakeFile("[1,2]", 0), "not a JSON object");
  ExpectError(MakeFile("{\"a\":\"\xff\xfe\"}", 0), "not valid JSON");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8000]}})", 8), "run past the data section");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "end before they begin");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "shape and dtype need 12");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8), "overflows");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative");
  ExpectError(MakeFile(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8), "unsupported dtype");
  ExpectError(MakeFile(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "dtype");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), "data_offsets");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
              "overlap");
  ExpectError(MakeFile(R"({"__metadata__":{"k":3}})", 0), "__metadata__");
}

TEST(Safetensors, OpenNamesTheMissingFile) {
  const absl::Status status = SafetensorsFile::Open("/nonexistent/model.safetensors").status();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(std::string(status.message()).find("/nonexistent/model.safetensors"), std::string::npos);
}

// Random corruption of a real header must always end in a result or an error, never a fault.
TEST(Safetensors, SurvivesRandomCorruptionOfARealFile) {
  auto mapped = MappedFile::Open(testing::SharedPath("models/TinyStories-656K/model.safetensors"));
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  const std::vector<std::byte> original(mapped->bytes().begin(), mapped->bytes().end());
  uint64_t header_len = 0;
  std::memcpy(&header_len, original.data(), 8);
  std::mt19937 rng(1234);
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::byte> bytes = original;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (8 + header_len);
      bytes[pos] = static_cast<std::byte>(rng() % 256);
    }
    if (trial % 10 == 0) bytes.resize(rng() % bytes.size());
    rejected += !ParseStatus(bytes).ok();
  }
  EXPECT_GT(rejected, 1000);
}

// The writer: tensors planned, then appended in pieces of any size, in a file that a reader
// sees only once it is whole; every misuse is an error that leaves nothing behind.
TEST(SafetensorsWriter, WritesPlannedTensorsFromPiecesAndRefusesMisuse) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("anyprec-st-writer-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "w.safetensors").string();
  const std::vector<SafetensorsWriter::Planned> plan = {{"a", DType::kF32, {2, 3}}, {"b", DType::kU8, {5}}};
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<uint8_t> b = {9, 8, 7, 6, 5};
  const auto a_bytes = std::as_bytes(std::span<const float>(a));
  const auto b_bytes = std::as_bytes(std::span<const uint8_t>(b));
  {
    auto writer = SafetensorsWriter::Create(path, plan, {{"key", "0000"}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    EXPECT_TRUE(std::filesystem::exists(path + ".partial"));
    ASSERT_TRUE(writer->Append(a_bytes.first(5)).ok());
    ASSERT_TRUE(writer->Append(a_bytes.subspan(5)).ok());
    EXPECT_FALSE(writer->Finish({{"key", "abcd"}}).ok()) << "finished with tensor b missing";
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".partial")) << "an abandoned writer leaves its partial file";
  EXPECT_FALSE(std::filesystem::exists(path));
  {
    auto writer = SafetensorsWriter::Create(path, plan, {{"key", "0000"}});
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->Append(a_bytes).ok());
    ASSERT_TRUE(writer->Append(b_bytes).ok());
    const absl::Status past_the_end = writer->Append(b_bytes.first(1));
    EXPECT_NE(std::string(past_the_end.message()).find("the planned tensors hold 29"), std::string::npos) << past_the_end;
    EXPECT_FALSE(writer->Finish({{"key", "a longer value than was planned"}}).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  {
    auto writer = SafetensorsWriter::Create(path, plan, {{"key", "0000"}});
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->Append(a_bytes).ok());
    ASSERT_TRUE(writer->Append(b_bytes).ok());
    ASSERT_TRUE(writer->Finish({{"key", "abc"}}).ok());
    EXPECT_FALSE(writer->Append(b_bytes.first(1)).ok());
  }
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata().at("key"), "abc");
  const TensorView& read_a = file->tensors().at("a");
  EXPECT_EQ(read_a.shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(read_a.data.size(), a_bytes.size());
  EXPECT_EQ(std::memcmp(read_a.data.data(), a.data(), a_bytes.size()), 0);
  const TensorView& read_b = file->tensors().at("b");
  ASSERT_EQ(read_b.data.size(), b.size());
  EXPECT_EQ(std::memcmp(read_b.data.data(), b.data(), b.size()), 0);
  // Dropping a tensor's pages keeps it readable: the file gives them back.
  file->DropPages(read_a);
  EXPECT_EQ(std::memcmp(read_a.data.data(), a.data(), a_bytes.size()), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace anyprec
