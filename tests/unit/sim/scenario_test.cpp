#include "sim/scenario.hpp"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "common/config.hpp"

namespace moesim::sim {
namespace {

ScenarioSpec apply(const std::string& yaml, ScenarioSpec base = {}) {
  return apply_scenario(std::move(base), load_yaml_text(yaml, "s.yaml"), "s.yaml");
}

TEST(Scenario, EmbeddedDefaultIsADeepSeekLayerOnThirtyTwoH800Nodes) {
  const ResolvedScenario r = resolve(default_scenario());
  EXPECT_EQ(r.cluster.name, "h800");
  EXPECT_EQ(r.cluster.num_nodes, 32);
  ASSERT_TRUE(r.a2a.model.has_value());
  EXPECT_EQ(r.a2a.model->name, "deepseek-v3");
  EXPECT_EQ(r.a2a.ep, 64);
  EXPECT_EQ(r.a2a.routing.node_limit, 4);
  EXPECT_EQ(r.a2a.algorithm, collectives::A2aAlgorithm::kRail);
}

TEST(Scenario, ANewClusterBringsItsOwnNodeCountUnlessTheSameMappingSetsOne) {
  // The default says h800 with 32 nodes; a file naming dgx-a100 alone gets dgx-a100's default (20 nodes).
  EXPECT_EQ(resolve(apply("cluster: dgx-a100\nmodel: mixtral-8x7b\n", default_scenario())).cluster.num_nodes, 20);
  EXPECT_EQ(resolve(apply("cluster: dgx-a100\nnodes: 2\nmodel: mixtral-8x7b\n")).cluster.num_nodes, 2);
}

TEST(Scenario, TokensPerRankComeFromTheScenarioThenTheModelThenTheDefault) {
  const std::string model = "model: {base: mixtral-8x7b, tokens_per_rank: 1000}\n";
  EXPECT_EQ(resolve(apply("cluster: dgx-h100\nnodes: 1\n" + model)).a2a.tokens_per_rank, 1000);
  EXPECT_EQ(resolve(apply("cluster: dgx-h100\nnodes: 1\ntokens_per_rank: 7\n" + model)).a2a.tokens_per_rank, 7);
  EXPECT_EQ(resolve(apply("cluster: dgx-h100\nnodes: 1\nmodel: mixtral-8x7b\n")).a2a.tokens_per_rank, 4096);
}

TEST(Scenario, RoutingKeysReachTheRoutingSpec) {
  const ResolvedScenario r = resolve(
      apply("cluster: h800\nnodes: 2\nmodel: deepseek-v3\nrouting: hot:8:0.3\nnode_limit: 2\ndevice_limit: 5\n"));
  EXPECT_EQ(r.a2a.routing.kind, workloads::RoutingSpec::Kind::kHot);
  EXPECT_EQ(r.a2a.routing.hot_experts, 8);
  EXPECT_DOUBLE_EQ(r.a2a.routing.hot_share, 0.3);
  EXPECT_EQ(r.a2a.routing.node_limit, 2);
  EXPECT_EQ(r.a2a.routing.device_limit, 5);
}

TEST(Scenario, CapacityGroupsLayersAndReplicasReachTheConfig) {
  const ResolvedScenario r =
      resolve(apply("cluster: h800\nnodes: 2\nmodel: deepseek-v3\nexpert_groups: 8\ngroup_limit: 4\ndrift: 0.1\n"
                    "layer: 3\nstep: 2\ncapacity_policy: reroute\ncapacity_factor: 1.25\nmin_capacity: 4\n"
                    "replica_slots: 1\n"));
  EXPECT_EQ(r.a2a.routing.expert_groups, 8);
  EXPECT_EQ(r.a2a.routing.group_limit, 4);
  EXPECT_DOUBLE_EQ(r.a2a.routing.drift, 0.1);
  EXPECT_EQ(r.a2a.layer, 3);
  EXPECT_EQ(r.a2a.step, 2);
  EXPECT_EQ(r.a2a.capacity.policy, workloads::CapacityPolicy::kReroute);
  EXPECT_DOUBLE_EQ(r.a2a.capacity.factor, 1.25);
  EXPECT_EQ(r.a2a.capacity.min_capacity, 4);
  EXPECT_EQ(r.a2a.replica_slots, 1);
  EXPECT_EQ(r.a2a.replay, nullptr);
}

TEST(Scenario, BadCapacityKeysNameTheKey) {
  auto message = [](const std::string& yaml) {
    try {
      apply(yaml);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("capacity_policy: drop-some\n").find("capacity_policy"), std::string::npos);
  EXPECT_NE(message("capacity_factor: 0\n").find("capacity_factor"), std::string::npos);
  EXPECT_NE(message("min_capacity: -1\n").find("min_capacity"), std::string::npos);
  // A routing file that does not exist fails at resolution, naming the file.
  const std::string missing = "cluster: dgx-h100\nnodes: 1\nmodel: mixtral-8x7b\nrouting_file: /nonexistent.csv\n";
  try {
    resolve(apply(missing));
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent.csv"), std::string::npos) << e.what();
  }
}

TEST(Scenario, BytesPerRankMakesAPlainAllToAll) {
  const ResolvedScenario r = resolve(apply("cluster: dgx-h100\nnodes: 1\nbytes_per_rank: 64 MiB\n"));
  EXPECT_FALSE(r.a2a.model.has_value());
  EXPECT_DOUBLE_EQ(r.a2a.bytes_per_rank, 64.0 * 1024 * 1024);
}

TEST(Scenario, ErrorsNameTheFileAndTheKey) {
  auto message = [](const std::string& yaml) {
    try {
      apply(yaml);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message("algorithm: ring\n").find("s.yaml:1: algorithm: expected one of direct"), std::string::npos);
  EXPECT_NE(message("routing: zipf:0\n").find("s.yaml:1: routing:"), std::string::npos);
  EXPECT_NE(message("epsilon: 2\n").find("s.yaml:1: epsilon: must be <= 1"), std::string::npos);
  EXPECT_NE(message("modle: x\n").find("s.yaml:1: modle: unknown key"), std::string::npos);
}

}  // namespace
}  // namespace moesim::sim
