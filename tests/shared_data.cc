#include "tests/shared_data.h"

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

namespace anyprec::testing {

std::string SharedDir() {
  const char* env = std::getenv("ANYPREC_SHARED");
  const std::string dir = env != nullptr ? env : ANYPREC_DEFAULT_SHARED_DIR;
  if (!std::filesystem::is_directory(dir)) {
    ADD_FAILURE() << "shared data folder not found at '" << dir
                  << "': tests need ../shared beside the repository (or ANYPREC_SHARED=/path/to/shared)";
  }
  return dir;
}

std::string SharedPath(const std::string& relative) {
  const std::string path = SharedDir() + "/" + relative;
  if (!std::filesystem::exists(path)) ADD_FAILURE() << "missing shared file '" << path << "'";
  return path;
}

}  // namespace anyprec::testing
