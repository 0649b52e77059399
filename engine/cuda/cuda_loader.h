// Finds and loads the CUDA plugin (libanyprec_cuda.so) the way ggml loads its backends:
// with dlopen, only when asked, so that binaries start and run on machines with no GPU,
// no driver and no CUDA libraries. Plain C++: it builds without CUDA.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"

namespace anyprec::cuda {

// A backend and the plugin it lives in; the plugin stays loaded while the backend lives.
class LoadedBackend {
 public:
  LoadedBackend(void* library, Backend* backend, AnyprecCudaDestroyFn destroy)
      : library_(library), backend_(backend), destroy_(destroy) {}
  ~LoadedBackend();
  LoadedBackend(const LoadedBackend&) = delete;
  LoadedBackend& operator=(const LoadedBackend&) = delete;
  Backend& operator*() const { return *backend_; }
  Backend* operator->() const { return backend_; }

 private:
  void* library_;
  Backend* backend_;
  AnyprecCudaDestroyFn destroy_;
};

// Where the plugin is looked for: $ANYPREC_CUDA_PLUGIN alone when it is set; otherwise
// libanyprec_cuda.so beside the executable, then in ../lib/ from it.
std::vector<std::string> PluginCandidates();

// The backend on `device`, or null with `why` saying what is missing: the plugin (not
// built, or not found), a library it needs, the driver, or a device.
std::unique_ptr<LoadedBackend> LoadCudaBackend(int device, std::string& why);

}  // namespace anyprec::cuda
