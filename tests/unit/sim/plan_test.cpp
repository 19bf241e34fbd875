#include "sim/plan.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "reports/writers.hpp"
#include "topologies/cluster.hpp"
#include "topologies/cluster_config.hpp"
#include "workloads/model.hpp"

namespace moesim::sim {
namespace {

struct Fixture {
  topologies::Cluster cluster{topologies::load_cluster("dgx-h100", 2)};
  compute::CostProfile profile = compute::default_cost_profile();
  step::StepConfig base;
  PlanOptions options;

  Fixture() {
    base.model = workloads::load_model("mixtral-8x7b");
    base.seq_len = 2048;
    options.enumerate.gbs = 32;
    options.enumerate.mbs_candidates = {1, 2};
    options.top = 4;
  }
};

TEST(Plan, RankingIsSortedFitsAndHoldsItsBounds) {
  Fixture f;
  const reports::PlanResult r = run_plan(f.cluster, f.profile, f.base, f.options);
  ASSERT_EQ(r.ranked_size(), 4);
  const double capacity_gib = f.cluster.config().gpu.hbm_capacity_bytes / (1024.0 * 1024.0 * 1024.0);
  for (int i = 0; i < r.ranked_size(); ++i) {
    const reports::PlanEntry& e = r.ranked(i);
    EXPECT_EQ(e.rank(), i + 1);
    EXPECT_EQ(e.status(), "ranked");
    EXPECT_LE(e.memory_gib(), capacity_gib);
    // The bound is computed without communication or skew: never above the simulated step.
    EXPECT_LE(e.bound_ms(), e.step_time_ms()) << e.layout();
    if (i > 0) {
      EXPECT_LE(r.ranked(i - 1).step_time_ms(), e.step_time_ms());
    }
  }
  // Every pruned layout's bound is at least the top-4th simulated step: it could not have ranked.
  const double fourth = r.ranked(3).step_time_ms();
  for (const reports::PlanEntry& e : r.others()) {
    EXPECT_FALSE(e.reason().empty()) << e.layout();
    if (e.status() == "pruned") {
      EXPECT_GE(e.bound_ms(), fourth * (1 - 1e-9)) << e.layout();
    }
    if (e.status() == "simulated") {
      EXPECT_GE(e.step_time_ms(), fourth) << e.layout();
    }
  }
  EXPECT_GE(r.num_valid(), r.num_fit());
  EXPECT_GE(r.num_fit(), r.num_simulated());
}

TEST(Plan, TheThreadCountDoesNotChangeTheResult) {
  Fixture f;
  f.options.num_threads = 1;
  const std::string one = reports::to_json(run_plan(f.cluster, f.profile, f.base, f.options));
  f.options.num_threads = 3;
  const std::string three = reports::to_json(run_plan(f.cluster, f.profile, f.base, f.options));
  EXPECT_EQ(one, three);
}

TEST(Plan, BadOptionsAreErrors) {
  Fixture f;
  f.options.top = 0;
  EXPECT_THROW(run_plan(f.cluster, f.profile, f.base, f.options), std::invalid_argument);
  f.options.top = 3;
  f.options.enumerate.gbs = 0;
  EXPECT_THROW(run_plan(f.cluster, f.profile, f.base, f.options), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim
