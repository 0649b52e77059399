// Precision as a resource: one tenant's width ceiling under load. Its adaptive requests run
// at the ceiling (within each request's own range); the controller lowers it when the
// tenant's latency objectives are about to be missed and raises it again when load falls.
//
// The control law. The pressure at width w is how close the tenant's latencies come to its
// SLO, scaled by what a step would cost at w:
//
//   p(w) = max(max(step / tpot_slo, ttft / ttft_slo) * cost(w) / cost(ceiling), utilization(w))
//
// where `step` is the mean of the last engine steps since the widths last changed (each running
// request gains one token per step, so a step is its time per output token), `ttft` the
// longer of the oldest waiting request's wait and the recent first tokens' mean, and cost(w)
// the StepCosts prediction for the step's rows with the tenant's rows at w (the step's widest
// width is what its time follows, so lowering a tenant whose rows are not the widest predicts,
// and does, nothing). utilization(w) is the engine time the arriving work would take at w per
// second: the output tokens asked for per second times a token's share of a full batch's step,
// cost(w, slots) / slots. Over 1 the queue grows whatever the latencies are now, so it is the
// term that holds a width under a steady overload: without it the controller would drain the
// queue at a low width, see short waits, rise, and let the queue grow again.
//
//   - p(ceiling) > kLowerAbove: drop to the highest width w with p(w) <= kTarget, or to the
//     width of least pressure when none is (the highest of equals: no drop that saves nothing).
//   - p(ceiling + 1) <= kRaiseBelow, held at the ceiling for kRaiseHoldSeconds: rise one width.
//   - no request of the tenant running or waiting for kRaiseHoldSeconds (seen by no Update
//     in that time, or seen idle by every one): back to the top.
//   - no decision before kSettleSteps steps measured at the current widths.
//
// Why it does not oscillate under a constant load: a drop lands on a w with p(w) <= kTarget <
// kLowerAbove, so it does not drop again, and p(w + 1) > kTarget > kRaiseBelow (else it would
// have landed on w + 1), so it does not rise either. A rise needs p(w + 1) <= kRaiseBelow <
// kLowerAbove, so it is not undone. The bands absorb a prediction error of up to 12% (kTarget to
// kLowerAbove) before a width is revisited; a width never measured is predicted cheaper than it
// is (StepCosts), so a drop may fall short and take another step down, never up and down.
#pragma once

#include <deque>
#include <utility>

#include "engine/model/width.h"
#include "server/request.h"
#include "server/step_costs.h"

namespace anyprec::server {

// The engine steps since the widths last changed, the last kSteps of them: what a step takes
// at the widths in force now, however long ago they changed.
class StepWindow {
 public:
  static constexpr int kSteps = 16;
  void Record(double seconds, int rows);
  void Clear() { steps_.clear(); }
  int steps() const { return static_cast<int>(steps_.size()); }
  double mean_seconds() const;
  double mean_rows() const;  // 1 when empty

 private:
  std::deque<std::pair<double, int>> steps_;  // seconds, rows
};

// What the controller sees of a tenant at one engine step.
struct TenantLoad {
  bool active = false;        // a request of the tenant is running or waiting
  double step_seconds = 0;    // the mean engine step since the widths last changed (StepWindow)
  int steps_measured = 0;     // steps in that mean
  double rows = 1;            // the mean token rows per step, all tenants together
  double ttft_seconds = 0;    // the oldest waiting request's wait, or the recent first tokens' mean if longer
  int others_widest = 0;      // the widest width of the running rows that are not this tenant's adaptive ones
  double demand_tokens_per_second = 0;  // output tokens arriving per second, all tenants together
  int slots = 1;              // sequences the engine decodes together at most
};

class WidthController {
 public:
  static constexpr double kLowerAbove = 0.9;
  static constexpr double kTarget = 0.8;
  static constexpr double kRaiseBelow = 0.6;
  static constexpr int kSettleSteps = 4;
  static constexpr double kRaiseHoldSeconds = 1.0;

  // Starts at the top of `widths`.
  WidthController(WidthRange widths, Slo slo);

  // A reloaded tenants file may change the range and the objectives; the ceiling stays within.
  void SetPolicy(WidthRange widths, Slo slo);

  // The ceiling after one more step's look at `load`, `now` seconds on any steady clock.
  int Update(const TenantLoad& load, const StepCosts& costs, double now);

  int ceiling() const { return ceiling_; }
  const WidthRange& widths() const { return widths_; }

 private:
  double Pressure(const TenantLoad& load, const StepCosts& costs, int bits) const;
  void Move(int bits, double now);

  WidthRange widths_;
  Slo slo_;
  int ceiling_;
  double changed_at_ = -1e300;  // when the ceiling last moved
  double active_at_ = 0;        // when the tenant last had a request running or waiting
};

}  // namespace anyprec::server
