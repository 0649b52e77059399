// Quantization of one weight matrix into bitplanes and per-bit-width lookup tables.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quantizer/row_clustering.h"

namespace anyprec::quant {

enum class Mode {
  kAnyPrecision,   // seed k-means, then split every cluster bit by bit up to max_bits
  kIndependent,    // k-means straight at one width (seed = max): the SqueezeLLM-style baseline
  kRoundToNearest  // per-row asymmetric uniform grid at one width, written as a LUT
};

struct QuantOptions {
  Mode mode = Mode::kAnyPrecision;
  int seed_bits = 3;
  int max_bits = 8;  // for kIndependent and kRoundToNearest, the one width (seed_bits = max_bits)
  SeedMethod seed_method = SeedMethod::kExact;
};

struct QuantizedMatrix {
  int rows = 0;
  int cols = 0;
  int seed_bits = 0;
  int max_bits = 0;
  std::vector<uint8_t> planes;           // canonical layout, engine/model/bitplanes.h
  std::vector<std::vector<float>> luts;  // luts[b - seed_bits]: [rows][2^b]

  std::span<const float> Lut(int bits, int row) const {
    const size_t entries = size_t{1} << bits;
    return std::span<const float>(luts[bits - seed_bits]).subspan(row * entries, entries);
  }
};

// `weights` is [rows, cols] row-major. `sensitivity` holds one weight per column (the same
// for every row, e.g. from activations) or one per element; a row whose sensitivities are
// all zero is clustered unweighted. Rows are spread over all cores.
QuantizedMatrix QuantizeMatrix(std::span<const float> weights, int rows, int cols, std::span<const float> sensitivity,
                               const QuantOptions& options);

}  // namespace anyprec::quant
