// Analytic validation of the network and the All-to-All algorithms: each test computes its expectation from a
// closed form written out in the comment and prints it beside the simulated value.
#include <cstdio>
#include <numeric>

#include <gtest/gtest.h>

#include "../unit/sim/test_clusters.hpp"
#include "reports/writers.hpp"
#include "sim/a2a.hpp"
#include "topologies/cluster.hpp"
#include "workloads/capacity.hpp"
#include "workloads/traffic.hpp"

namespace moesim::sim {
namespace {

void print(const char* what, double expected, double actual) {
  std::printf("%s: Expectation: %.6f us / Actual result: %.6f us (ratio %.6f)\n", what, expected, actual,
              actual / expected);
}

TEST(A2aValidation, UniformDirectOnACrossbarMatchesTheClosedForm) {
  // n = 16 GPUs on one crossbar, 100 GB/s ports, 1 us per hop (2 us per path). Each rank's 16 MiB send buffer
  // is split over the 16 ranks: c = 1 MiB per pair; the self chunk stays local. Every port carries n - 1 = 15
  // equal flows, so every flow runs at 100/15 GB/s and all finish together:
  //   T = 2 us + 15 * c / 100 GB/s.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(16, "100 GB/s", "1 us"));
  A2aConfig config;
  config.cluster_name = "crossbar";
  config.bytes_per_rank = 16.0 * 1024 * 1024;
  config.epsilon = 0.0;
  const auto result = run_a2a(cluster, config);
  const double expected_us = 2.0 + 15.0 * 1024 * 1024 / 100e9 * 1e6;
  print("direct", expected_us, result.collectives(0).time_us());
  // Finish times are rounded up to the next integer picosecond: at most 1 ps (1e-6 us) late.
  EXPECT_NEAR(result.collectives(0).time_us(), expected_us, 2e-6);
  // nccl-tests: algbw = send buffer / time, busbw = algbw * (n - 1) / n.
  EXPECT_NEAR(result.collectives(0).algbw_gbps(), config.bytes_per_rank / (expected_us * 1e-6) / 1e9, 1e-6);
  EXPECT_NEAR(result.collectives(0).busbw_gbps(), result.collectives(0).algbw_gbps() * 15.0 / 16.0, 1e-9);
}

TEST(A2aValidation, PairwiseOnACrossbarTakesOneLatencyAndOneChunkPerRound) {
  // In round k every rank sends one chunk to r + k and receives one from r - k: no port carries two flows, so
  // each of the n - 1 rounds takes 2 us + c / 100 GB/s:  T = 15 * (2 us + c / 100 GB/s).
  const topologies::Cluster cluster(moesim::testing::crossbar_config(16, "100 GB/s", "1 us"));
  A2aConfig config;
  config.cluster_name = "crossbar";
  config.bytes_per_rank = 16.0 * 1024 * 1024;
  config.algorithm = collectives::A2aAlgorithm::kPairwise;
  config.epsilon = 0.0;
  const auto result = run_a2a(cluster, config);
  const double expected_us = 15.0 * (2.0 + 1024.0 * 1024 / 100e9 * 1e6);
  print("pairwise", expected_us, result.collectives(0).time_us());
  EXPECT_NEAR(result.collectives(0).time_us(), expected_us, 1e-5);
}

TEST(A2aValidation, UniformDirectInsideOneNvSwitchNodeIsWithinOnePercentOfTheBound) {
  // One dgx-h100 node: 8 GPUs on NVSwitch at 450 GB/s per direction. With a 256 MiB send buffer each GPU's
  // port carries 7/8 of it; the bound is that over 450 GB/s plus the path latency, and a direct all-to-all
  // on a non-blocking crossbar is bandwidth-bound: within 1%.
  const topologies::Cluster cluster(topologies::load_cluster("dgx-h100", 1));
  A2aConfig config;
  config.cluster_name = "dgx-h100";
  config.bytes_per_rank = 256.0 * 1024 * 1024;
  const auto result = run_a2a(cluster, config);
  const auto& c = result.collectives(0);
  const double port_us = 7.0 / 8.0 * config.bytes_per_rank / cluster.link(0).capacity_bps * 1e6;
  print("nvswitch node", c.bound_us(), c.time_us());
  EXPECT_GT(c.bound_us(), port_us);
  EXPECT_GE(c.sim_over_bound(), 1.0);
  EXPECT_LE(c.sim_over_bound(), 1.01);
}

TEST(A2aValidation, OversubscribedLeafUplinkSetsTheTimeOfAUniformAllToAll) {
  // Four single-GPU nodes on two leaves (2 NICs down, 1 uplink each: 2:1 oversubscribed) under one spine; every
  // port 50 GB/s. A direct all-to-all with c = 1 MB per pair sends 2 x 2 = 4 flows across each leaf uplink, so
  // each crossing flow runs at 50/4 GB/s from start to end; the one intra-leaf flow per node gets the rest of
  // its NIC port and ends first. The crossing flows' path has four 1 us hops (NIC, leaf-spine, spine-leaf, NIC;
  // PCIe hops cost nothing here):  T = 4 us + 4 c / 50 GB/s = 84 us, and the uplink sets the bound.
  const std::string yaml = R"(name: oversubscribed
nodes: 4
gpus_per_node: 1
gpu: {name: test-gpu, bf16_tflops: 100, hbm_bandwidth: 1 TB/s, hbm_capacity: 16 GiB}
nvlink: {domain_gpus: 1}
pcie: {bandwidth: 100 GB/s, latency: 0 us}
nic: {per_node: 1, bandwidth: 50 GB/s, latency: 1 us, overhead: 0 us}
fabric:
  rail_optimized: false
  link: {bandwidth: 50 GB/s, latency: 1 us}
  leaf: {down: 2, up: 1}
  spine: {down: 2}
)";
  const topologies::Cluster cluster(topologies::parse_cluster(YAML::Load(yaml), "oversubscribed.yaml", std::nullopt));
  A2aConfig config;
  config.cluster_name = "oversubscribed";
  config.bytes_per_rank = 4e6;  // 1 MB to each of the 4 ranks, itself included
  config.epsilon = 0.0;
  const auto result = run_a2a(cluster, config);
  const auto& c = result.collectives(0);
  const double expected_us = 4.0 + 4.0 * 1e6 / 50e9 * 1e6;
  print("2:1 leaf uplink", expected_us, c.time_us());
  EXPECT_NEAR(c.time_us(), expected_us, 2e-6);
  EXPECT_NE(c.bound_link().find("spine"), std::string::npos) << c.bound_link();
}

TEST(A2aValidation, BytesAreConservedThroughTheLayer) {
  // Direct dispatch without deduplication: every (token, expert) copy whose expert lives on another rank
  // crosses the network once, so bytes delivered = off-diagonal copies x bytes per copy, and with the local
  // copies added back, the total is GPUs x tokens x top-k x bytes per copy.
  const topologies::Cluster cluster(topologies::load_cluster("dgx-h100", 2));
  A2aConfig config;
  config.cluster_name = "dgx-h100";
  config.model = workloads::load_model("mixtral-8x7b");
  config.tokens_per_rank = 512;
  config.ep = 8;
  config.token_dedup = false;
  config.routing = workloads::parse_routing("zipf:1.2");
  const auto result = run_a2a(cluster, config);
  workloads::TrafficOptions options{8, 512, 8, 2, config.routing, config.seed};
  const auto traffic = workloads::build_layer_traffic(cluster, options);
  double local = 0.0;
  for (const auto& g : traffic.groups) {
    for (std::size_t r = 0; r < g.gpus.size(); ++r)
      local += static_cast<double>(g.copies_to_rank[r * g.gpus.size() + r]);
  }
  const double per_copy = config.model->dispatch_bytes_per_token();
  const double all_copies = 16.0 * 512 * 2;
  EXPECT_DOUBLE_EQ(result.collectives(0).total_bytes() + local * per_copy, all_copies * per_copy);
  EXPECT_DOUBLE_EQ(result.collectives(0).wire_bytes_per_rank().mean_sent(),
                   result.collectives(0).wire_bytes_per_rank().mean_received());
}

TEST(A2aValidation, DroppedCopiesDoNotTravelAndPaddingDoes) {
  // Direct dispatch without deduplication, one expert per rank (Mixtral on EP 8): the bytes delivered are the
  // off-diagonal copies the policy lets through. drop-position sends only the kept copies, padded sends C per
  // (rank, expert) whatever was kept: 16 ranks x 7 remote experts x C.
  const topologies::Cluster cluster(topologies::load_cluster("dgx-h100", 2));
  A2aConfig config;
  config.cluster_name = "dgx-h100";
  config.model = workloads::load_model("mixtral-8x7b");
  config.tokens_per_rank = 512;
  config.ep = 8;
  config.token_dedup = false;
  config.routing = workloads::parse_routing("zipf:1.2");
  config.capacity.factor = 1.0;
  const double per_copy = config.model->dispatch_bytes_per_token();
  const std::int64_t capacity = workloads::expert_capacity(512, 2, 8, 1.0, 0);  // ceil(512 x 2 / 8) = 128

  config.capacity.policy = workloads::CapacityPolicy::kDropPosition;
  const auto dropped = run_a2a(cluster, config);
  workloads::TrafficOptions options{8, 512, 8, 2, config.routing, config.seed};
  options.capacity = config.capacity;
  const auto traffic = workloads::build_layer_traffic(cluster, options);
  double remote = 0.0;
  for (const auto& g : traffic.groups) {
    for (std::size_t i = 0; i < g.copies_to_rank.size(); ++i) {
      if (i / 8 != i % 8) remote += static_cast<double>(g.copies_to_rank[i]);
    }
  }
  std::printf("drop-position: Expectation: %.0f bytes / Actual result: %.0f bytes\n", remote * per_copy,
              dropped.collectives(0).total_bytes());
  EXPECT_DOUBLE_EQ(dropped.collectives(0).total_bytes(), remote * per_copy);
  EXPECT_GT(dropped.routing().dropped_fraction(), 0.0);

  config.capacity.policy = workloads::CapacityPolicy::kPadded;
  const auto padded = run_a2a(cluster, config);
  const double expected_padded = 16.0 * 7.0 * static_cast<double>(capacity) * per_copy;
  std::printf("padded: Expectation: %.0f bytes / Actual result: %.0f bytes\n", expected_padded,
              padded.collectives(0).total_bytes());
  EXPECT_DOUBLE_EQ(padded.collectives(0).total_bytes(), expected_padded);
  EXPECT_GT(padded.routing().padding_fraction(), 0.0);
}

TEST(A2aValidation, ReplicatingHotExpertsEvensTheRankLoad) {
  // One hot expert takes 60% of the choices; with a replica slot on each rank EPLB splits it over several ranks,
  // so the busiest rank receives less and the dispatch, bound by that rank's links, gets faster.
  const topologies::Cluster cluster(topologies::load_cluster("dgx-h100", 2));
  A2aConfig config;
  config.cluster_name = "dgx-h100";
  config.model = workloads::load_model("qwen3-30b-a3b");
  config.tokens_per_rank = 1024;
  config.ep = 16;
  config.routing = workloads::parse_routing("zipf:1.5");
  config.replica_slots = 2;
  const auto result = run_a2a(cluster, config);
  ASSERT_TRUE(result.has_replication());
  const auto& after = result.replication();
  std::printf("  rank load max/mean %.3f -> %.3f, time %.2f us -> %.2f us (%d experts replicated)\n",
              result.routing().rank_load_imbalance(), after.routing().rank_load_imbalance(), result.total_time_us(),
              after.total_time_us(), static_cast<int>(after.num_replicated_experts()));
  EXPECT_LT(after.routing().rank_load_imbalance(), result.routing().rank_load_imbalance());
  EXPECT_GT(after.num_replicated_experts(), 0);
  EXPECT_GT(after.speedup(), 1.0);
  EXPECT_DOUBLE_EQ(after.routing().tokens_per_expert_max(), result.routing().tokens_per_expert_max());
}

TEST(A2aValidation, NoAlgorithmBeatsTheLinkBound) {
  // The oracle of every run: simulated / bound >= 1 (the window errs late, never early).
  const topologies::Cluster cluster(topologies::load_cluster("h800", 4));
  for (auto algorithm : {collectives::A2aAlgorithm::kDirect, collectives::A2aAlgorithm::kPairwise,
                         collectives::A2aAlgorithm::kHierarchical, collectives::A2aAlgorithm::kRail}) {
    A2aConfig config;
    config.cluster_name = "h800";
    config.model = workloads::load_model("deepseek-v3");
    config.tokens_per_rank = 256;
    config.routing = workloads::parse_routing("zipf:1.5");
    config.routing.node_limit = 2;
    config.algorithm = algorithm;
    config.epsilon = 0.01;
    const auto result = run_a2a(cluster, config);
    for (const auto& c : result.collectives()) {
      EXPECT_GE(c.sim_over_bound(), 1.0) << collectives::algorithm_name(algorithm) << " " << c.name();
    }
  }
}

TEST(A2aValidation, SameSeedGivesByteIdenticalJsonAndAnotherSeedDoesNot) {
  const topologies::Cluster cluster(topologies::load_cluster("h800", 2));
  A2aConfig config;
  config.cluster_name = "h800";
  config.model = workloads::load_model("deepseek-v3");
  config.tokens_per_rank = 256;
  config.routing = workloads::parse_routing("zipf:1.0");
  const std::string first = reports::to_json(run_a2a(cluster, config));
  const std::string second = reports::to_json(run_a2a(cluster, config));
  EXPECT_EQ(first, second);
  config.seed = 2;
  EXPECT_NE(first, reports::to_json(run_a2a(cluster, config)));
}

}  // namespace
}  // namespace moesim::sim
