// Keys and values of one sequence for every layer, so that each new token attends to the
// past without recomputing it.
#pragma once

#include <span>
#include <vector>

#include "engine/model/model_config.h"

namespace anyprec {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int capacity)
      : capacity_(capacity),
        row_width_(config.kv_dim()),
        keys_(static_cast<size_t>(config.num_layers) * capacity * row_width_),
        values_(keys_.size()) {}

  int capacity() const { return capacity_; }
  // Positions [0, length) hold valid entries.
  int length() const { return length_; }
  void Clear() { length_ = 0; }
  void Advance(int tokens) { length_ += tokens; }

  std::span<float> keys(int layer) { return LayerSlice(keys_, layer); }
  std::span<float> values(int layer) { return LayerSlice(values_, layer); }

 private:
  std::span<float> LayerSlice(std::vector<float>& data, int layer) {
    const size_t size = static_cast<size_t>(capacity_) * row_width_;
    return std::span<float>(data).subspan(layer * size, size);
  }

  int capacity_;
  int row_width_;
  int length_ = 0;
  std::vector<float> keys_;
  std::vector<float> values_;
};

}  // namespace anyprec
