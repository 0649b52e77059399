#include "server/width_controller.h"

#include <algorithm>

namespace anyprec::server {

void StepWindow::Record(double seconds, int rows) {
  steps_.emplace_back(seconds, rows);
  if (steps_.size() > kSteps) steps_.pop_front();
}

double StepWindow::mean_seconds() const {
  double sum = 0;
  for (const auto& [seconds, rows] : steps_) sum += seconds;
  return steps_.empty() ? 0 : sum / static_cast<double>(steps_.size());
}

double StepWindow::mean_rows() const {
  double sum = 0;
  for (const auto& [seconds, rows] : steps_) sum += rows;
  return steps_.empty() ? 1 : sum / static_cast<double>(steps_.size());
}

WidthController::WidthController(WidthRange widths, Slo slo) : widths_(widths), slo_(slo), ceiling_(widths.max) {}

void WidthController::SetPolicy(WidthRange widths, Slo slo) {
  widths_ = widths;
  slo_ = slo;
  ceiling_ = std::clamp(ceiling_, widths.min, widths.max);
}

double WidthController::Pressure(const TenantLoad& load, const StepCosts& costs, int bits) const {
  const int widest = std::max(bits, load.others_widest);
  const double latency = std::max(load.step_seconds / slo_.tpot_seconds, load.ttft_seconds / slo_.ttft_seconds);
  const std::optional<double> now = costs.Predict(std::max(ceiling_, load.others_widest), load.rows);
  const std::optional<double> then = costs.Predict(widest, load.rows);
  if (!now || !then || *now <= 0) return latency;
  const double utilization = load.demand_tokens_per_second * *costs.Predict(widest, load.slots) / load.slots;
  return std::max(latency * *then / *now, utilization);
}

void WidthController::Move(int bits, double now) {
  if (bits == ceiling_) return;
  ceiling_ = bits;
  changed_at_ = now;
}

int WidthController::Update(const TenantLoad& load, const StepCosts& costs, double now) {
  // Idle for the hold, whether or not the engine stepped meanwhile (it sleeps with no work):
  // back to the top.
  if (now - active_at_ >= kRaiseHoldSeconds) Move(widths_.max, now);
  if (!load.active) return ceiling_;
  active_at_ = now;
  if (load.steps_measured < kSettleSteps) return ceiling_;
  const double pressure = Pressure(load, costs, ceiling_);
  if (ceiling_ > widths_.min && pressure > kLowerAbove) {
    int best = ceiling_;
    double least = pressure;
    for (int bits = ceiling_ - 1; bits >= widths_.min; --bits) {
      const double pressure = Pressure(load, costs, bits);
      if (pressure <= kTarget) {
        best = bits;
        break;
      }
      if (pressure < least) {
        least = pressure;
        best = bits;
      }
    }
    Move(best, now);
  } else if (ceiling_ < widths_.max && now - changed_at_ >= kRaiseHoldSeconds && Pressure(load, costs, ceiling_ + 1) <= kRaiseBelow) {
    Move(ceiling_ + 1, now);
  }
  return ceiling_;
}

}  // namespace anyprec::server
