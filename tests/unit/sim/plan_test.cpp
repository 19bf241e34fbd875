#include "sim/plan.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/config.hpp"
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
    // The bound leaves out most communication and the skew the sampled group does not show: never above the
    // simulated step.
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

// The layouts of a result by rank, with their step times.
std::vector<std::pair<std::string, double>> ranking(const reports::PlanResult& r) {
  std::vector<std::pair<std::string, double>> out;
  for (const reports::PlanEntry& e : r.ranked()) out.emplace_back(e.layout(), e.step_time_ms());
  return out;
}

// Pruning is only a shortcut: simulating every layout that fits ranks the same top N, and every layout the pruned
// run left out has a bound no higher than its simulated step.
void expect_pruning_keeps_the_ranking(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                                      const step::StepConfig& base, PlanOptions options) {
  options.prune = true;
  const reports::PlanResult pruned = run_plan(cluster, profile, base, options);
  options.prune = false;
  const reports::PlanResult all = run_plan(cluster, profile, base, options);
  EXPECT_EQ(ranking(pruned), ranking(all));
  EXPECT_EQ(all.num_simulated(), all.num_fit());
  std::map<std::string, reports::PlanEntry> simulated;
  for (const auto* entries : {&all.ranked(), &all.others()}) {
    for (const reports::PlanEntry& e : *entries) {
      if (e.step_time_ms() > 0.0) simulated[e.layout()] = e;
    }
  }
  int num_pruned = 0;
  for (const reports::PlanEntry& e : pruned.others()) {
    if (e.status() != "pruned") continue;
    ++num_pruned;
    ASSERT_EQ(simulated.count(e.layout()), 1U) << e.layout();
    EXPECT_LE(e.bound_ms(), simulated[e.layout()].step_time_ms()) << e.layout();
  }
  for (const auto& [layout, e] : simulated) EXPECT_LE(e.bound_ms(), e.step_time_ms()) << layout;
  std::printf("%d of %d layouts pruned, %zu simulated without pruning; the top %d agree\n", num_pruned,
              static_cast<int>(pruned.num_fit()), simulated.size(), options.top);
  EXPECT_GT(num_pruned, 0);
}

TEST(Plan, PruningNeverChangesTheRanking) {
  Fixture f;
  expect_pruning_keeps_the_ranking(f.cluster, f.profile, f.base, f.options);
}

TEST(Plan, PruningNeverChangesTheRankingWithSharedExpertsAcrossNodes) {
  // A DeepSeek-like model (a dense first layer, a shared expert, 32 routed experts, skewed node-limited routing) on
  // 16 H800 GPUs, so that EP groups of 16 send their All-to-Alls through the NICs and the bound counts them.
  const topologies::Cluster cluster(topologies::load_cluster("h800", 2));
  const char* yaml =
      "name: small\nhidden_size: 512\nnum_experts: 32\nnum_topk: 4\nnum_shared_experts: 1\n"
      "moe_intermediate_size: 256\nintermediate_size: 1024\nfirst_k_dense: 1\nnum_layers: 8\n"
      "num_attention_heads: 8\nvocab_size: 4096\n";
  step::StepConfig base;
  base.model = workloads::parse_model(load_yaml_text(yaml, "small.yaml"), "small.yaml");
  base.seq_len = 1024;
  base.routing = workloads::parse_routing("zipf:1");
  base.routing.node_limit = 1;
  PlanOptions options;
  options.enumerate.gbs = 32;
  options.enumerate.mbs_candidates = {1, 2};
  options.top = 3;
  expect_pruning_keeps_the_ranking(cluster, compute::default_cost_profile(), base, options);
}

TEST(Plan, ProgressCountsEveryLayoutOnce) {
  Fixture f;
  std::vector<PlanProgress> calls;
  f.options.on_progress = [&](const PlanProgress& p) { calls.push_back(p); };
  const reports::PlanResult r = run_plan(f.cluster, f.profile, f.base, f.options);
  ASSERT_FALSE(calls.empty());
  const PlanProgress& last = calls.back();
  EXPECT_TRUE(last.is_done);
  EXPECT_EQ(last.num_fit, r.num_fit());
  EXPECT_EQ(last.num_simulated, r.num_simulated());
  EXPECT_EQ(last.num_simulated + last.num_pruned + last.num_failed, r.num_fit());
  EXPECT_DOUBLE_EQ(last.best_step_ms, r.ranked(0).step_time_ms());
  for (std::size_t i = 1; i < calls.size(); ++i) {  // counters only grow
    EXPECT_GE(calls[i].num_pruned, calls[i - 1].num_pruned);
    EXPECT_GE(calls[i].num_simulated, calls[i - 1].num_simulated);
    EXPECT_FALSE(calls[i - 1].is_done);
  }
  char best[32];
  std::snprintf(best, sizeof best, "%.1f", last.best_step_ms);
  EXPECT_EQ(format_plan_progress(last), "plan: " + std::to_string(last.num_simulated) + "/" +
                                            std::to_string(last.num_fit) + " simulated, " +
                                            std::to_string(last.num_pruned) + " pruned, best " + best + " ms");
  PlanProgress start;
  start.num_fit = 45;
  start.num_failed = 1;
  EXPECT_EQ(format_plan_progress(start), "plan: 0/45 simulated, 0 pruned, 1 invalid");
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
