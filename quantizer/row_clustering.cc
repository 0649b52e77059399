#include "quantizer/row_clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace anyprec::quant {

WeightedPrefix::WeightedPrefix(std::span<const float> sorted_values, std::span<const float> weights) {
  const size_t n = sorted_values.size();
  w_.assign(n + 1, 0.0);
  wx_.assign(n + 1, 0.0);
  wxx_.assign(n + 1, 0.0);
  x_.assign(n + 1, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const double x = sorted_values[i];
    const double w = weights[i];
    w_[i + 1] = w_[i] + w;
    wx_[i + 1] = wx_[i] + w * x;
    wxx_[i + 1] = wxx_[i] + w * x * x;
    x_[i + 1] = x_[i] + x;
  }
}

double WeightedPrefix::Cost(int begin, int end) const {
  const double w = w_[end] - w_[begin];
  if (end - begin < 2 || w <= 0) return 0.0;
  const double wx = wx_[end] - wx_[begin];
  const double wxx = wxx_[end] - wxx_[begin];
  return std::max(0.0, wxx - wx * wx / w);
}

double WeightedPrefix::Centroid(int begin, int end, double fallback) const {
  if (end <= begin) return fallback;
  const double w = w_[end] - w_[begin];
  if (w > 0) return (wx_[end] - wx_[begin]) / w;
  return (x_[end] - x_[begin]) / (end - begin);
}

namespace {

// dp_next[i] = min over m <= i of dp_prev[m] + Cost(m, i), for i in [lo, hi], knowing the
// optimal m lies in [opt_lo, opt_hi] (monotone in i).
void SolveLayer(const WeightedPrefix& prefix, const std::vector<double>& dp_prev, std::vector<double>& dp_next,
                std::vector<int>& arg, int lo, int hi, int opt_lo, int opt_hi) {
  if (lo > hi) return;
  const int mid = (lo + hi) / 2;
  double best = std::numeric_limits<double>::infinity();
  int best_m = opt_lo;
  for (int m = opt_lo; m <= std::min(mid, opt_hi); ++m) {
    const double v = dp_prev[m] + prefix.Cost(m, mid);
    if (v < best) {
      best = v;
      best_m = m;
    }
  }
  dp_next[mid] = best;
  arg[mid] = best_m;
  SolveLayer(prefix, dp_prev, dp_next, arg, lo, mid - 1, opt_lo, best_m);
  SolveLayer(prefix, dp_prev, dp_next, arg, mid + 1, hi, best_m, opt_hi);
}

}  // namespace

Boundaries ExactKMeans(const WeightedPrefix& prefix, int k) {
  const int n = prefix.size();
  std::vector<double> dp(n + 1);
  for (int i = 0; i <= n; ++i) dp[i] = prefix.Cost(0, i);
  std::vector<std::vector<int>> args(k, std::vector<int>(n + 1, 0));
  std::vector<double> next(n + 1);
  for (int j = 1; j < k; ++j) {
    SolveLayer(prefix, dp, next, args[j], 0, n, 0, n);
    dp.swap(next);
  }
  Boundaries b(k + 1);
  b[k] = n;
  for (int j = k - 1; j >= 1; --j) b[j] = args[j][b[j + 1]];
  b[0] = 0;
  return b;
}

Boundaries LloydKMeans(const WeightedPrefix& prefix, std::span<const float> sorted, std::span<const float> weights,
                       int k, uint64_t seed, int max_iterations) {
  const int n = prefix.size();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  // Weighted k-means++: each next centroid is drawn with probability proportional to w * d^2.
  const auto draw = [&](const std::vector<double>& mass, double total) {
    double r = uniform(rng) * total;
    for (int i = 0; i < n; ++i) {
      r -= mass[i];
      if (r <= 0) return i;
    }
    return n - 1;
  };
  std::vector<double> mass(n);
  double total = 0;
  for (int i = 0; i < n; ++i) total += (mass[i] = weights[i]);
  std::vector<double> centroids;
  if (n > 0) centroids.push_back(sorted[total > 0 ? draw(mass, total) : 0]);
  std::vector<double> d2(n, std::numeric_limits<double>::infinity());
  while (static_cast<int>(centroids.size()) < k && n > 0) {
    total = 0;
    for (int i = 0; i < n; ++i) {
      const double d = sorted[i] - centroids.back();
      d2[i] = std::min(d2[i], d * d);
      total += (mass[i] = weights[i] * d2[i]);
    }
    if (total <= 0) break;
    centroids.push_back(sorted[draw(mass, total)]);
  }
  if (centroids.empty()) centroids.push_back(0.0);
  while (static_cast<int>(centroids.size()) < k) centroids.push_back(centroids.back());
  std::sort(centroids.begin(), centroids.end());

  Boundaries b(k + 1, 0);
  b[k] = n;
  for (int iteration = 0; iteration < max_iterations; ++iteration) {
    Boundaries next(k + 1, 0);
    next[k] = n;
    for (int c = 1; c < k; ++c) {
      const double border = 0.5 * (centroids[c - 1] + centroids[c]);
      next[c] = static_cast<int>(std::upper_bound(sorted.begin(), sorted.end(), border) - sorted.begin());
      next[c] = std::max(next[c], next[c - 1]);
    }
    for (int c = 0; c < k; ++c) centroids[c] = prefix.Centroid(next[c], next[c + 1], centroids[c]);
    if (next == b) break;
    b = std::move(next);
  }
  return b;
}

int BestSplit(const WeightedPrefix& prefix, int begin, int end) {
  int best_s = begin;
  double best = std::numeric_limits<double>::infinity();
  for (int s = begin; s <= end; ++s) {
    const double v = prefix.Cost(begin, s) + prefix.Cost(s, end);
    if (v < best) {
      best = v;
      best_s = s;
    }
  }
  return best_s;
}

double TotalCost(const WeightedPrefix& prefix, const Boundaries& boundaries) {
  double total = 0;
  for (size_t c = 0; c + 1 < boundaries.size(); ++c) total += prefix.Cost(boundaries[c], boundaries[c + 1]);
  return total;
}

}  // namespace anyprec::quant
