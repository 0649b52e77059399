// What an engine step costs, as the scheduler measured it: by the widest width the step ran
// (the mixed-width kernels read that width's planes once for every row) and its rows. The
// width controller predicts from it what another width would cost.
#pragma once

#include <map>
#include <optional>

namespace anyprec::server {

class StepCosts {
 public:
  // A step whose widest row ran at `widest_bits`, of `rows` token rows, took `seconds`.
  void Record(int widest_bits, int rows, double seconds);

  // Seconds of a step of `rows` rows whose widest is `widest_bits`: the line seconds = a + b *
  // rows fitted to that width's steps, the recent ones weighing more. Where that width's steps
  // all had about one row count, the line goes through their mean with the slope of the nearest
  // width that has one (a row costs about the same at every width: the batched kernels' work per
  // row does not depend on it), else flat. A width never measured is predicted from the nearest
  // measured one in proportion to the widths (weight bytes read), which overstates what a lower
  // width saves until it is measured. nullopt before any step.
  std::optional<double> Predict(int widest_bits, double rows) const;

 private:
  // Exponentially weighted sums for the least-squares line of one width.
  struct Fit {
    double weight = 0, rows = 0, rows_squared = 0, seconds = 0, rows_seconds = 0;
    std::optional<double> Slope() const;  // seconds per row; nullopt when the rows hardly varied
    double Predict(double at_rows, double slope) const;
  };
  // The slope of `bits`' fit, else of the nearest width's that has one, else 0.
  double SlopeNear(int bits) const;
  std::map<int, Fit> fits_;  // by widest width
};

}  // namespace anyprec::server
