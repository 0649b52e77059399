// Weighted 1-D clustering of one sorted row: the seed k-means (exact dynamic programming or
// Lloyd iterations) and the exact two-way splits that upscale it one bit at a time. In one
// dimension every cluster is a contiguous range of the sorted row, so clusters are stored as
// boundaries and all costs come from prefix sums in O(1).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace anyprec::quant {

enum class SeedMethod { kExact, kLloyd };

// Prefix sums of w, w*x and w*x^2 over a row sorted by x.
class WeightedPrefix {
 public:
  WeightedPrefix(std::span<const float> sorted_values, std::span<const float> weights);

  int size() const { return static_cast<int>(w_.size()) - 1; }
  // Weighted sum of squared errors of [begin, end) around its weighted mean.
  double Cost(int begin, int end) const;
  // Weighted mean of [begin, end); the unweighted mean when its weights sum to zero,
  // and `fallback` when it is empty.
  double Centroid(int begin, int end, double fallback) const;

 private:
  std::vector<double> w_, wx_, wxx_;
  std::vector<double> x_;  // unweighted prefix sums, for zero-weight ranges
};

// Boundaries of k clusters: k+1 ascending indices from 0 to n (clusters may be empty).
using Boundaries = std::vector<int>;

// Optimal k-clustering (minimum total Cost) by dynamic programming with the
// divide-and-conquer optimization, valid because Cost is a Monge cost on sorted data.
Boundaries ExactKMeans(const WeightedPrefix& prefix, int k);

// Weighted k-means++ seeding (deterministic in `seed`) and at most `max_iterations` Lloyd steps.
Boundaries LloydKMeans(const WeightedPrefix& prefix, std::span<const float> sorted_values,
                       std::span<const float> weights, int k, uint64_t seed, int max_iterations = 50);

// The split point of [begin, end) that minimizes Cost(begin, s) + Cost(s, end); the
// lowest such s in [begin, end] (s == begin or end leaves one child empty).
int BestSplit(const WeightedPrefix& prefix, int begin, int end);

double TotalCost(const WeightedPrefix& prefix, const Boundaries& boundaries);

}  // namespace anyprec::quant
