#include "engine/model/safetensors.h"

#include <cstring>
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

}  // namespace
}  // namespace anyprec
