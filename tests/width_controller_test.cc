// The width controller and its step costs against synthetic engines: a step of `rows` rows
// whose widest width is w costs a known function of w and rows, and the scheduler's part
// (measuring steps since the widths last changed) is played by Simulation.
#include "server/width_controller.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

namespace anyprec::server {
namespace {

TEST(StepCosts, FitsALinePerWidthAndScalesAWidthNeverMeasured) {
  StepCosts costs;
  EXPECT_FALSE(costs.Predict(8, 1).has_value());
  for (int i = 0; i < 50; ++i) {
    for (int rows : {1, 4, 16}) costs.Record(8, rows, 0.02 + 0.003 * rows);
  }
  EXPECT_NEAR(*costs.Predict(8, 10), 0.05, 1e-9);
  EXPECT_NEAR(*costs.Predict(8, 1), 0.023, 1e-9);
  // Width 4 is predicted from 8 in proportion, until measured.
  EXPECT_NEAR(*costs.Predict(4, 10), 0.025, 1e-9);
  for (int i = 0; i < 10; ++i) costs.Record(4, 10, 0.04);
  // One row count says nothing of the slope: through the mean, with the slope of width 8.
  EXPECT_NEAR(*costs.Predict(4, 30), 0.04 + 20 * 0.003, 1e-9);
  // The nearest measured width: 5 from 4, 7 from 8.
  EXPECT_NEAR(*costs.Predict(5, 10), 0.05, 1e-9);
  EXPECT_NEAR(*costs.Predict(7, 10), 0.05 * 7 / 8, 1e-9);
}

TEST(StepCosts, AWidthSeenAtOneRowCountBorrowsTheSlopeOfTheNearestThatHasOne) {
  StepCosts costs;
  for (int i = 0; i < 20; ++i) {
    costs.Record(8, 16, 0.1);  // 8 bits only ever at 16 rows
    costs.Record(3, 1, 0.02);
    costs.Record(3, 16, 0.05);  // 2 ms a row at 3 bits
  }
  EXPECT_NEAR(*costs.Predict(8, 1), 0.1 - 15 * 0.002, 1e-9);
  StepCosts flat;
  flat.Record(8, 16, 0.1);
  EXPECT_NEAR(*flat.Predict(8, 1), 0.1, 1e-9);  // no slope anywhere: flat
}

TEST(StepCosts, ARowNeverMakesAStepCheaper) {
  StepCosts costs;
  for (int i = 0; i < 20; ++i) {
    costs.Record(8, 1, 0.030);
    costs.Record(8, 2, 0.029);
  }
  EXPECT_GE(*costs.Predict(8, 40), *costs.Predict(8, 1));
}

// An engine whose step costs step_cost(widest, rows) seconds, times noise, serving one
// adaptive tenant whose `rows` requests run at its ceiling beside rows of other tenants at
// `others_widest`, measured as the scheduler measures them (StepWindow).
struct Simulation {
  std::function<double(int widest, int rows)> step_cost;
  int rows = 16;
  int others_rows = 0;
  int others_widest = 0;
  double ttft_seconds = 0;
  double noise = 0;
  // With a demand: output tokens arriving per second, and a queue of them that the engine's
  // `slots` sequences serve one token per step each; ttft_seconds is then the queue's wait.
  double demand = 0;
  int slots = 16;
  double backlog_tokens = 0;

  WidthController controller;
  StepCosts costs;
  double now = 0;
  StepWindow window;
  int changes = 0;
  std::mt19937 random{7};

  Simulation(WidthRange widths, Slo slo) : controller(widths, slo) {}

  // One engine step; returns its seconds.
  double Step() {
    const int widest = std::max(controller.ceiling(), others_widest);
    const int all_rows = rows + others_rows;
    double seconds = step_cost(widest, all_rows);
    if (noise > 0) seconds *= std::uniform_real_distribution<double>(1 - noise, 1 + noise)(random);
    costs.Record(widest, all_rows, seconds);
    now += seconds;
    if (demand > 0) {
      backlog_tokens = std::max(0.0, backlog_tokens + demand * seconds - slots);
      ttft_seconds = backlog_tokens / slots * seconds;
    }
    window.Record(seconds, all_rows);
    TenantLoad load;
    load.active = rows > 0;
    load.step_seconds = window.mean_seconds();
    load.steps_measured = window.steps();
    load.rows = window.mean_rows();
    load.ttft_seconds = ttft_seconds;
    load.others_widest = others_rows > 0 ? others_widest : 0;
    load.demand_tokens_per_second = demand;
    load.slots = slots;
    const int before = controller.ceiling();
    if (controller.Update(load, costs, now) != before) {
      ++changes;
      window.Clear();
    }
    return seconds;
  }
  void Run(int steps) {
    for (int i = 0; i < steps; ++i) Step();
  }
};

// Weight bytes proportional to the width plus a per-row cost: 8 bits and 16 rows take 112
// ms; each width below saves 10 ms.
double BytesAndRows(int widest, int rows) { return 0.010 * widest + 0.002 * rows; }

TEST(WidthController, NeverLeavesItsRange) {
  std::mt19937 random(1);
  for (int trial = 0; trial < 50; ++trial) {
    const int min = std::uniform_int_distribution(3, 6)(random);
    const int max = std::uniform_int_distribution(min, 8)(random);
    Simulation sim({min, max}, {.ttft_seconds = 2, .tpot_seconds = std::uniform_real_distribution(0.01, 0.3)(random)});
    sim.step_cost = BytesAndRows;
    sim.noise = 0.3;
    for (int phase = 0; phase < 20; ++phase) {
      sim.rows = std::uniform_int_distribution(0, 64)(random);
      sim.ttft_seconds = std::uniform_real_distribution(0.0, 5.0)(random);
      for (int i = 0; i < 50; ++i) {
        sim.Step();
        ASSERT_GE(sim.controller.ceiling(), min);
        ASSERT_LE(sim.controller.ceiling(), max);
      }
    }
  }
}

TEST(WidthController, DropsToHoldTheTpotSloAndThenHoldsStill) {
  Simulation sim({3, 8}, {.ttft_seconds = 2, .tpot_seconds = 0.1});
  sim.step_cost = BytesAndRows;
  sim.noise = 0.05;
  ASSERT_GT(BytesAndRows(8, 16), 0.1);  // the top width misses the SLO
  sim.Run(200);
  const int settled = sim.controller.ceiling();
  EXPECT_LT(settled, 8);
  EXPECT_LE(BytesAndRows(settled, 16), 0.1) << "settled at " << settled;
  // A width that meets the SLO with the controller's margin is not given away: two widths
  // below the highest that meets it at most.
  EXPECT_GE(settled, 6 - 2);
  // A constant load: no change more.
  const int changes = sim.changes;
  sim.Run(5000);
  EXPECT_EQ(sim.changes, changes);
  EXPECT_EQ(sim.controller.ceiling(), settled);
}

TEST(WidthController, GoesToItsLowestWidthWhenNoWidthCanHoldTheSlo) {
  Simulation sim({4, 8}, {.ttft_seconds = 2, .tpot_seconds = 0.03});
  sim.step_cost = BytesAndRows;
  sim.Run(300);
  EXPECT_EQ(sim.controller.ceiling(), 4);
}

TEST(WidthController, RisesAgainWhenTheLoadFalls) {
  // Rows cost as much as widths here: 8 bits and 16 rows take 120 ms, one row 45 ms.
  const auto rows_heavy = [](int widest, int rows) { return 0.005 * widest + 0.005 * rows; };
  Simulation sim({3, 8}, {.ttft_seconds = 2, .tpot_seconds = 0.1});
  sim.step_cost = rows_heavy;
  sim.Run(300);
  ASSERT_LT(sim.controller.ceiling(), 8);
  // One request left: 8 bits would take 45 ms, under kRaiseBelow of the SLO. The widths it
  // measured only at 16 rows are predicted with the slope of those it saw at both.
  sim.rows = 1;
  sim.Run(2000);
  EXPECT_EQ(sim.controller.ceiling(), 8);
  // No request at all: back to the top once kRaiseHoldSeconds have passed.
  sim.rows = 16;
  sim.Run(300);
  ASSERT_LT(sim.controller.ceiling(), 8);
  sim.rows = 0;
  sim.others_rows = 1;
  sim.others_widest = 3;
  sim.Run(10);
  EXPECT_LT(sim.controller.ceiling(), 8) << "rose before the hold";
  sim.Run(100);
  EXPECT_EQ(sim.controller.ceiling(), 8);
}

TEST(WidthController, DoesNotDropWhereAnotherTenantsRowsSetTheStepsWidth) {
  Simulation sim({3, 8}, {.ttft_seconds = 2, .tpot_seconds = 0.1});
  sim.step_cost = BytesAndRows;
  sim.others_rows = 4;
  sim.others_widest = 8;  // fixed 8-bit requests: the step reads 8 planes whatever this tenant does
  sim.Run(500);
  EXPECT_EQ(sim.controller.ceiling(), 8);
  EXPECT_EQ(sim.changes, 0);
}

TEST(WidthController, DropsWhenRequestsWaitTooLongForTheirFirstToken) {
  Simulation sim({3, 8}, {.ttft_seconds = 1, .tpot_seconds = 10});
  sim.step_cost = BytesAndRows;
  sim.ttft_seconds = 0.5;
  sim.Run(200);
  EXPECT_EQ(sim.controller.ceiling(), 8);
  // The queue's oldest request has waited 1.5 s: 1.5 * w / 8 <= 0.8 from w = 4 down.
  sim.ttft_seconds = 1.5;
  sim.Step();
  EXPECT_EQ(sim.controller.ceiling(), 4);
  // A wait that does not shrink takes it on down, one look per kSettleSteps steps.
  sim.Run(WidthController::kSettleSteps);
  EXPECT_EQ(sim.controller.ceiling(), 3);
}

TEST(WidthController, HoldsAWidthThatKeepsUpWithASteadyOverload) {
  Simulation sim({3, 8}, {.ttft_seconds = 2, .tpot_seconds = 10});
  sim.step_cost = BytesAndRows;
  sim.noise = 0.05;
  // 1.2 times what 16 slots serve at 8 bits, 0.86 of it at 5 bits.
  sim.demand = 1.2 * 16 / BytesAndRows(8, 16);
  sim.Run(300);
  const int settled = sim.controller.ceiling();
  EXPECT_LT(settled, 8);
  EXPECT_LT(sim.demand * BytesAndRows(settled, 16) / 16, 1.0) << "settled at " << settled << ", where the queue grows";
  const int changes = sim.changes;
  sim.Run(20000);
  EXPECT_EQ(sim.changes, changes) << "the width moved under a constant load";
  EXPECT_EQ(sim.controller.ceiling(), settled);
  EXPECT_LT(sim.ttft_seconds, 0.5) << "the queue did not drain";
  // 0.48 of what 8 bits serve: back to the top.
  sim.demand *= 0.4;
  sim.Run(20000);
  EXPECT_EQ(sim.controller.ceiling(), 8);
}

TEST(WidthController, ANewPolicyKeepsTheCeilingWithinItsRange) {
  WidthController controller({3, 8}, {});
  EXPECT_EQ(controller.ceiling(), 8);
  controller.SetPolicy({3, 6}, {});
  EXPECT_EQ(controller.ceiling(), 6);
  controller.SetPolicy({7, 8}, {});
  EXPECT_EQ(controller.ceiling(), 7);
}

}  // namespace
}  // namespace anyprec::server
