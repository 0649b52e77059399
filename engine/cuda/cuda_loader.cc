#include "engine/cuda/cuda_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace anyprec::cuda {

LoadedBackend::~LoadedBackend() {
  destroy_(backend_);
  dlclose(library_);
}

std::vector<std::string> PluginCandidates() {
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("ANYPREC_CUDA_PLUGIN"); path != nullptr && *path != '\0') return {path};
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back((exe.parent_path() / "libanyprec_cuda.so").string());
    candidates.push_back((exe.parent_path().parent_path() / "lib" / "libanyprec_cuda.so").string());
  }
  return candidates;
}

std::unique_ptr<LoadedBackend> LoadCudaBackend(int device, std::string& why) {
  std::string tried;
  for (const std::string& path : PluginCandidates()) {
    if (!std::filesystem::exists(path)) {
      tried += (tried.empty() ? "" : ", ") + path;
      continue;
    }
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      why = "cannot load the CUDA plugin " + path + ": " + dlerror();
      return nullptr;
    }
    const auto version = reinterpret_cast<AnyprecCudaAbiVersionFn>(dlsym(library, "anyprec_cuda_abi_version"));
    const auto create = reinterpret_cast<AnyprecCudaCreateFn>(dlsym(library, "anyprec_cuda_create"));
    const auto destroy = reinterpret_cast<AnyprecCudaDestroyFn>(dlsym(library, "anyprec_cuda_destroy"));
    if (version == nullptr || create == nullptr || destroy == nullptr || version() != kPluginAbiVersion) {
      dlclose(library);
      why = path + " is not an anyprec CUDA plugin of this build (ABI " + std::to_string(kPluginAbiVersion) + ")";
      return nullptr;
    }
    char error[512] = {};
    Backend* backend = create(device, error, sizeof(error));
    if (backend == nullptr) {
      dlclose(library);
      why = error;
      return nullptr;
    }
    return std::make_unique<LoadedBackend>(library, backend, destroy);
  }
  why = "the CUDA plugin libanyprec_cuda.so was not found (built without CUDA?); looked at " + tried;
  return nullptr;
}

}  // namespace anyprec::cuda
