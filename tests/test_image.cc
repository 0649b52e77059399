#include "tests/test_image.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include "gtest/gtest.h"
#include "quantizer/quantizer.h"
#include "tests/shared_data.h"

namespace anyprec::testing {
namespace {

class TemporaryImage {
 public:
  TemporaryImage(const std::string& model, const std::string& name, const quant::ModelQuantizeOptions& options)
      : dir_((std::filesystem::temp_directory_path() / ("anyprec-test-image-" + name + "-" + std::to_string(::getpid()))).string()) {
    const absl::Status status = quant::QuantizeModel(SharedPath(model), dir_, options, [](const std::string&) {});
    if (!status.ok()) {
      ADD_FAILURE() << "cannot quantize " << model << ": " << status;
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
  static const TemporaryImage image("models/TinyStories-656K", "tinystories", [] {
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kNone;
    return options;
  }());
  return image.dir();
}

const std::string& Stories260KImage() {
  static const TemporaryImage image("models/stories260K-hf", "stories260k", [] {
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kNone;
    options.tokenizer_path = SharedPath("models/stories260K/tok512.bin");
    return options;
  }());
  return image.dir();
}

const std::string& SyntheticArchImage(const std::string& variant) {
  static std::map<std::string, std::unique_ptr<TemporaryImage>> images;
  std::unique_ptr<TemporaryImage>& image = images[variant];
  if (image == nullptr) {
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kFisher;
    options.calibration_text = SharedPath("data/tinystories/tinystories_val_head.txt");
    options.tokenizer_path = SharedPath("models/stories260K/tok512.bin");
    options.fisher.samples = 4;
    options.fisher.seq_len = 64;
    image = std::make_unique<TemporaryImage>("models/synthetic-arch/" + variant, variant, options);
  }
  return image->dir();
}

}  // namespace anyprec::testing
