#include "tests/test_image.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"
#include "quantizer/quantizer.h"
#include "tests/shared_data.h"

namespace anyprec::testing {
namespace {

class TemporaryImage {
 public:
  TemporaryImage()
      : dir_((std::filesystem::temp_directory_path() / ("anyprec-test-image-" + std::to_string(::getpid()))).string()) {
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kNone;
    const absl::Status status = quant::QuantizeModel(SharedPath("models/TinyStories-656K"), dir_, options, [](const std::string&) {});
    if (!status.ok()) {
      ADD_FAILURE() << "cannot quantize TinyStories-656K: " << status;
      std::abort();
    }
  }
  ~TemporaryImage() { std::filesystem::remove_all(dir_); }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace

const std::string& TinyStoriesImage() {
  static const TemporaryImage image;
  return image.dir();
}

}  // namespace anyprec::testing
