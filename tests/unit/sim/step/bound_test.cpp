#include "sim/step/bound.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../test_clusters.hpp"
#include "common/config.hpp"
#include "sim/a2a.hpp"
#include "sim/step/builder.hpp"
#include "topologies/cluster.hpp"
#include "topologies/cluster_config.hpp"
#include "workloads/traffic.hpp"

namespace moesim::sim::step {
namespace {

using collectives::TransferGraph;

TEST(TransferGraphBound, TheBusiestLinkAndTheLeastLatency) {
  // A crossbar of 4 GPUs, 100 GB/s ports, 1 us per hop (two hops GPU -> switch -> GPU). GPUs 0 and 1 each send
  // 10 units to GPU 2: its port carries 20 units, 2 x 10 per unit / 100 GB/s, after the 2 us of latency. The local
  // copy and the join move nothing.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "1 us"));
  TransferGraph graph;
  graph.add_transfer(0, 2, 10.0);
  graph.add_transfer(1, 2, 10.0);
  graph.add_transfer(3, 3, 50.0);
  graph.add_join();
  RouteCache routes(cluster);
  const TransferGraphBound bound = transfer_graph_bound(cluster, graph, 0.0, routes);
  const double bytes_per_unit = 1e6;
  const double expected_s = 20.0 * bytes_per_unit / 100e9;
  std::printf("Expectation: %.3f us / Actual result: %.3f us\n", 2.0 + expected_s * 1e6,
              us_from_time(bound.time_ps(bytes_per_unit)));
  EXPECT_NEAR(us_from_time(bound.time_ps(bytes_per_unit)), 2.0 + expected_s * 1e6, 1e-6);
  // Played on the network, the graph takes at least the bound, and a2a.cpp's bound from the played run's link
  // counters is the same number.
  const reports::CollectiveResult played = run_collective(cluster, graph, bytes_per_unit, 0.0, "test", 0.0, 4);
  EXPECT_GE(played.time_us(), us_from_time(bound.time_ps(bytes_per_unit)) - 1e-6);
  EXPECT_NEAR(played.bound_us(), us_from_time(bound.time_ps(bytes_per_unit)), 1e-6);
  // Nothing to move: no time at all.
  EXPECT_EQ(transfer_graph_bound(cluster, TransferGraph{}, 0.0, routes).time_ps(bytes_per_unit), 0);
}

TEST(TransferGraphBound, ThePerGpuCommunicationCap) {
  // GPU 0 sends 10 units to each of GPUs 1, 2 and 3: its port carries 30 x 1 MB at 100 GB/s (300 us), but with a
  // cap of 10 GB/s on what a GPU sends, its 30 units take 30 x 1 MB / 10 GB/s = 3 ms.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0 us"));
  TransferGraph graph;
  for (int dst = 1; dst < 4; ++dst) graph.add_transfer(0, dst, 10.0);
  RouteCache routes(cluster);
  EXPECT_NEAR(us_from_time(transfer_graph_bound(cluster, graph, 0.0, routes).time_ps(1e6)), 300.0, 1e-6);
  EXPECT_NEAR(us_from_time(transfer_graph_bound(cluster, graph, 10e9, routes).time_ps(1e6)), 3000.0, 1e-6);
}

workloads::TrafficOptions zipf_options(int ep) {
  workloads::TrafficOptions options;
  options.ep = ep;
  options.tokens_per_rank = 256;
  options.num_experts = 32;
  options.num_topk = 4;
  options.routing = workloads::parse_routing("zipf:1");
  options.routing.node_limit = 2;
  options.seed = 7;
  options.layer = 3;
  options.batch = 1;
  return options;
}

TEST(GroupRoutingCache, TheFirstGroupRoutesAsItDoesAmongAllTheGroups) {
  // 32 GPUs on 8-GPU nodes in 4 EP groups of 8 ranks over 2 nodes each: group 0 sampled alone routes exactly as
  // group 0 of the whole stage, because each group's tokens draw from streams of their own.
  std::vector<int> node_of_gpu(32);
  for (int g = 0; g < 32; ++g) node_of_gpu[static_cast<std::size_t>(g)] = g / 4;
  const workloads::TrafficOptions options = zipf_options(8);
  const workloads::LayerTraffic all = workloads::build_layer_traffic(node_of_gpu, options);
  GroupRoutingCache cache;
  const std::vector<int> first(node_of_gpu.begin(), node_of_gpu.begin() + 8);
  const std::shared_ptr<const GroupRoutingCache::GroupRouting> routing = cache.group_routing(first, options);
  const GroupRoutingCache::GroupRouting& alone = *routing;
  EXPECT_EQ(alone.traffic.tokens_to_rank, all.groups[0].tokens_to_rank);
  EXPECT_EQ(alone.traffic.tokens_to_node, all.groups[0].tokens_to_node);
  EXPECT_EQ(alone.traffic.node_of_rank, all.groups[0].node_of_rank);
  const std::vector<std::int64_t> expected(all.tokens_per_group_expert.begin(),
                                           all.tokens_per_group_expert.begin() + options.num_experts);
  EXPECT_EQ(alone.tokens_per_expert, expected);
  // Another stage's group on other nodes of the same pattern is the same routing, sampled once; another layer is
  // another routing.
  const std::vector<int> elsewhere = {6, 6, 6, 6, 9, 9, 9, 9};
  EXPECT_EQ(cache.group_routing(elsewhere, options), routing);
  EXPECT_EQ(cache.size(), 1U);
  workloads::TrafficOptions other_layer = options;
  other_layer.layer = 4;
  EXPECT_NE(cache.group_routing(first, other_layer)->traffic.tokens_to_rank, alone.traffic.tokens_to_rank);
  EXPECT_EQ(cache.size(), 2U);
  // Options the traffic builder rejects fail every time they are asked for, not only the first.
  workloads::TrafficOptions bad = options;
  bad.num_topk = 33;
  EXPECT_THROW(cache.group_routing(first, bad), std::invalid_argument);
  EXPECT_THROW(cache.group_routing(first, bad), std::invalid_argument);
}

// A DeepSeek-like model small enough for unit tests: a dense first layer, shared experts, 32 routed experts.
workloads::MoeModel small_model() {
  const char* yaml =
      "name: small\nhidden_size: 512\nnum_experts: 32\nnum_topk: 4\nnum_shared_experts: 1\n"
      "moe_intermediate_size: 256\nintermediate_size: 1024\nfirst_k_dense: 1\nnum_layers: 8\n"
      "num_attention_heads: 8\nvocab_size: 4096\n";
  return workloads::parse_model(load_yaml_text(yaml, "small.yaml"), "small.yaml");
}

StepConfig small_config(const std::string& layout, int num_gpus) {
  StepConfig config;
  config.model = small_model();
  config.layout = workloads::parse_layout(layout, num_gpus);
  config.seq_len = 1024;
  config.routing = workloads::parse_routing("zipf:1");
  config.routing.node_limit = 1;
  return config;
}

TEST(StepLowerBound, NeverAboveTheSimulatedStep) {
  // 16 H800 GPUs on two nodes, so EP 16 crosses the fabric. Each variant is simulated and bounded; the bound with
  // the All-to-Alls is at least the compute-only one and at most the step.
  const topologies::Cluster cluster(topologies::load_cluster("h800", 2));
  const compute::CostProfile profile = compute::default_cost_profile();
  struct Variant {
    std::string layout;
    workloads::Recompute recompute = workloads::Recompute::kNone;
    workloads::StepMode mode = workloads::StepMode::kTrain;
    int routing_samples = 1;
    int comm_sms = 0;
    collectives::A2aAlgorithm algorithm = collectives::A2aAlgorithm::kDirect;
  };
  using workloads::Recompute;
  using workloads::StepMode;
  const std::vector<Variant> variants = {
      {"dp=16,tp=1,pp=1,ep=16,mbs=1,gbs=32"},
      {"dp=8,tp=2,pp=1,ep=16,mbs=1,gbs=32", Recompute::kSelective},
      {"dp=8,tp=1,pp=2,ep=8,mbs=1,gbs=32", Recompute::kFull},
      {"dp=4,tp=2,pp=2,ep=8,mbs=2,gbs=32", Recompute::kNone, StepMode::kTrain, 2},
      {"dp=8,tp=1,pp=2,ep=8,etp=1,vpp=2,mbs=1,gbs=32"},
      {"dp=8,tp=2,pp=1,ep=8,etp=2,mbs=1,gbs=32"},
      {"dp=16,tp=1,pp=1,ep=16,mbs=1,gbs=32", Recompute::kNone, StepMode::kTrain, 1, 20},
      {"dp=16,tp=1,pp=1,ep=16,mbs=1,gbs=32", Recompute::kNone, StepMode::kTrain, 1, 0,
       collectives::A2aAlgorithm::kHierarchical},
      {"dp=8,tp=1,pp=2,ep=8,mbs=1,gbs=32", Recompute::kNone, StepMode::kPrefill},
      {"dp=8,tp=1,pp=2,ep=8,mbs=2,gbs=32", Recompute::kNone, StepMode::kDecode},
  };
  for (const Variant& variant : variants) {
    StepConfig config = small_config(variant.layout, cluster.num_gpus());
    if (config.layout.vpp > 1) config.schedule = workloads::PipelineSchedule::kInterleaved1F1B;
    config.recompute = variant.recompute;
    config.mode = variant.mode;
    config.routing_samples = variant.routing_samples;
    config.comm_sms = variant.comm_sms;
    config.a2a_algorithm = variant.algorithm;
    config.context_len = 2048;
    const TimePs step = run_training_step(cluster, profile, config).step_time;
    const TimePs compute_only = step_lower_bound(cluster, profile, config, {0, nullptr});
    const TimePs bound = step_lower_bound(cluster, profile, config);
    std::printf("%s: compute bound %.3f ms, with All-to-Alls %.3f ms, simulated %.3f ms\n", variant.layout.c_str(),
                compute_only * 1e-9, bound * 1e-9, step * 1e-9);
    EXPECT_GT(compute_only, 0) << variant.layout;
    EXPECT_GE(bound, compute_only) << variant.layout;
    EXPECT_LE(bound, step) << variant.layout;
  }
}

TEST(StepLowerBound, TheAllToAllsCountWhereTheyCrossTheFabric) {
  // EP 16 over two nodes sends most copies through the NICs: counting the All-to-Alls of every 4th, every 2nd and
  // every MoE layer raises the bound step by step above compute alone. A cache shared by the calls samples each
  // layer once and changes no bound.
  const topologies::Cluster cluster(topologies::load_cluster("h800", 2));
  const compute::CostProfile profile = compute::default_cost_profile();
  const StepConfig config = small_config("dp=16,tp=1,pp=1,ep=16,mbs=1,gbs=32", cluster.num_gpus());
  TimePs previous = step_lower_bound(cluster, profile, config, {0, nullptr});
  GroupRoutingCache cache;
  for (const int stride : {4, 2, 1}) {
    const TimePs bound = step_lower_bound(cluster, profile, config, {stride, nullptr});
    EXPECT_GT(bound, previous) << stride;
    EXPECT_EQ(step_lower_bound(cluster, profile, config, {stride, &cache}), bound) << stride;
    previous = bound;
  }
  EXPECT_EQ(cache.size(), 7U);  // one routing per MoE layer
  EXPECT_EQ(step_lower_bound(cluster, profile, config), previous);
  EXPECT_THROW(step_lower_bound(cluster, profile, config, {-1, nullptr}), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim::step
