#include "quantizer/matrix_quantizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/model/bitplanes.h"

namespace anyprec::quant {
namespace {

struct RowResult {
  std::vector<uint32_t> indices;          // max_bits-bit index of each column
  std::vector<std::vector<float>> luts;   // per width seed..max
};

RowResult QuantizeRowByClustering(std::span<const float> row, std::span<const float> sensitivity,
                                  const QuantOptions& o, int seed_bits, int max_bits, uint64_t row_seed) {
  const int n = static_cast<int>(row.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return row[a] < row[b]; });
  std::vector<float> sorted(n);
  std::vector<float> weights(n);
  bool any_weight = false;
  for (int i = 0; i < n; ++i) {
    sorted[i] = row[order[i]];
    weights[i] = std::max(0.0f, sensitivity[order[i]]);
    any_weight = any_weight || weights[i] > 0;
  }
  if (!any_weight) std::fill(weights.begin(), weights.end(), 1.0f);
  const WeightedPrefix prefix(sorted, weights);

  const int k = 1 << seed_bits;
  Boundaries clusters = o.seed_method == SeedMethod::kExact ? ExactKMeans(prefix, k)
                                                             : LloydKMeans(prefix, sorted, weights, k, row_seed);
  RowResult result;
  const double row_mean = prefix.Centroid(0, n, 0.0);
  std::vector<float>& seed_lut = result.luts.emplace_back(k);
  for (int c = 0; c < k; ++c) seed_lut[c] = static_cast<float>(prefix.Centroid(clusters[c], clusters[c + 1], row_mean));

  for (int bits = seed_bits; bits < max_bits; ++bits) {
    const int parents = 1 << bits;
    Boundaries children(2 * parents + 1);
    std::vector<float> lut(2 * parents);
    const std::vector<float>& parent_lut = result.luts.back();
    for (int c = 0; c < parents; ++c) {
      const int begin = clusters[c];
      const int end = clusters[c + 1];
      const int split = BestSplit(prefix, begin, end);
      children[2 * c] = begin;
      children[2 * c + 1] = split;
      lut[2 * c] = static_cast<float>(prefix.Centroid(begin, split, parent_lut[c]));
      lut[2 * c + 1] = static_cast<float>(prefix.Centroid(split, end, parent_lut[c]));
    }
    children[2 * parents] = n;
    clusters = std::move(children);
    result.luts.push_back(std::move(lut));
  }

  result.indices.assign(n, 0);
  for (int c = 0; c + 1 < static_cast<int>(clusters.size()); ++c) {
    for (int i = clusters[c]; i < clusters[c + 1]; ++i) result.indices[order[i]] = static_cast<uint32_t>(c);
  }
  return result;
}

RowResult QuantizeRowRoundToNearest(std::span<const float> row, int bits) {
  const auto [lo_it, hi_it] = std::minmax_element(row.begin(), row.end());
  const float lo = *lo_it;
  const float hi = *hi_it;
  const int levels = (1 << bits) - 1;
  const float scale = (hi - lo) / levels;
  RowResult result;
  std::vector<float>& lut = result.luts.emplace_back(levels + 1);
  for (int c = 0; c <= levels; ++c) lut[c] = lo + scale * c;
  result.indices.resize(row.size());
  for (size_t i = 0; i < row.size(); ++i) {
    const float q = scale > 0 ? std::round((row[i] - lo) / scale) : 0.0f;
    result.indices[i] = static_cast<uint32_t>(std::clamp(q, 0.0f, static_cast<float>(levels)));
  }
  return result;
}

}  // namespace

QuantizedMatrix QuantizeMatrix(std::span<const float> weights, int rows, int cols, std::span<const float> sensitivity,
                               const QuantOptions& o) {
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.max_bits = o.max_bits;
  q.seed_bits = o.mode == Mode::kAnyPrecision ? o.seed_bits : o.max_bits;
  q.planes.assign(static_cast<size_t>(q.max_bits) * PlaneBytes(rows, cols), 0);
  for (int bits = q.seed_bits; bits <= q.max_bits; ++bits) q.luts.emplace_back(static_cast<size_t>(rows) << bits);
  const bool per_element = sensitivity.size() == static_cast<size_t>(rows) * cols;

#pragma omp parallel for schedule(dynamic, 4)
  for (int r = 0; r < rows; ++r) {
    const std::span<const float> row = weights.subspan(static_cast<size_t>(r) * cols, cols);
    const std::span<const float> row_sensitivity = per_element ? sensitivity.subspan(static_cast<size_t>(r) * cols, cols) : sensitivity;
    const RowResult result = o.mode == Mode::kRoundToNearest
                                 ? QuantizeRowRoundToNearest(row, q.max_bits)
                                 : QuantizeRowByClustering(row, row_sensitivity, o, q.seed_bits, q.max_bits, static_cast<uint64_t>(r));
    for (int c = 0; c < cols; ++c) WriteIndex(q.planes, rows, cols, r, c, q.max_bits, result.indices[c]);
    for (int bits = q.seed_bits; bits <= q.max_bits; ++bits) {
      const std::vector<float>& lut = result.luts[bits - q.seed_bits];
      std::copy(lut.begin(), lut.end(), q.luts[bits - q.seed_bits].begin() + (static_cast<size_t>(r) << bits));
    }
  }
  return q;
}

}  // namespace anyprec::quant
