// What the GPU test and benchmark programs share: exiting on a CUDA error, and device
// memory that frees itself.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "engine/cuda/cuda_backend.h"

namespace anyprec::cuda {

inline void Check(const std::string& error) {
  if (error.empty()) return;
  std::fprintf(stderr, "CUDA error: %s\n", error.c_str());
  std::exit(1);
}

class DeviceBuffer {
 public:
  DeviceBuffer(Backend& backend, size_t bytes) : backend_(&backend) {
    std::string error;
    data_ = backend.Allocate(bytes, error);
    Check(error);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : backend_(other.backend_), data_(std::exchange(other.data_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() {
    if (data_ != nullptr) backend_->Free(data_);
  }
  void* get() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  Backend* backend_;
  void* data_;
};

}  // namespace anyprec::cuda
