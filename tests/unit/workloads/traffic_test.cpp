#include "workloads/traffic.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "common/config.hpp"
#include "topologies/cluster.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::workloads {
namespace {

// Index of [row][col] in a row-major matrix `width` wide.
std::size_t cell(int row, int width, int col) {
  return static_cast<std::size_t>(row) * static_cast<std::size_t>(width) + static_cast<std::size_t>(col);
}

// The node of each GPU for num_nodes nodes of gpus_per_node GPUs, numbered the way Cluster::node_of numbers them.
std::vector<int> shape(int num_nodes, int gpus_per_node) {
  std::vector<int> node_of_gpu(static_cast<std::size_t>(num_nodes * gpus_per_node));
  for (std::size_t g = 0; g < node_of_gpu.size(); ++g) node_of_gpu[g] = static_cast<int>(g) / gpus_per_node;
  return node_of_gpu;
}

TrafficOptions make_options(int ep, std::int64_t tokens_per_rank, int num_experts, int num_topk,
                            const std::string& routing = "uniform", int node_limit = 0, std::uint64_t seed = 1) {
  TrafficOptions options;
  options.ep = ep;
  options.tokens_per_rank = tokens_per_rank;
  options.num_experts = num_experts;
  options.num_topk = num_topk;
  options.routing = parse_routing(routing);
  options.routing.node_limit = node_limit;
  options.seed = seed;
  return options;
}

std::int64_t sum(const std::int64_t* first, std::size_t n) {
  return std::accumulate(first, first + n, std::int64_t{0});
}

// Checks every invariant that follows from "each token picks num_topk distinct experts" (and, with a node limit,
// "on at most node_limit nodes"), whatever the distribution.
void expect_invariants(const LayerTraffic& traffic, const std::vector<int>& node_of_gpu) {
  const TrafficOptions& o = traffic.options;
  const std::int64_t t = o.tokens_per_rank;
  const int ep = o.ep;
  const int m = o.num_experts / ep;
  ASSERT_EQ(traffic.groups.size(), node_of_gpu.size() / static_cast<std::size_t>(ep));
  std::vector<std::int64_t> copies_per_rank_position(static_cast<std::size_t>(ep), 0);
  for (std::size_t g = 0; g < traffic.groups.size(); ++g) {
    const EpGroupTraffic& group = traffic.groups[g];
    const auto nodes = static_cast<std::size_t>(group.num_nodes);
    ASSERT_EQ(group.gpus.size(), static_cast<std::size_t>(ep));
    ASSERT_EQ(group.tokens_to_rank.size(), static_cast<std::size_t>(ep * ep));
    ASSERT_EQ(group.copies_to_rank.size(), static_cast<std::size_t>(ep * ep));
    ASSERT_EQ(group.tokens_to_node.size(), static_cast<std::size_t>(ep) * nodes);
    ASSERT_EQ(group.copies_to_node.size(), static_cast<std::size_t>(ep) * nodes);
    for (int r = 0; r < ep; ++r) {
      // EP groups are consecutive GPUs.
      EXPECT_EQ(group.gpus[static_cast<std::size_t>(r)], static_cast<int>(g) * ep + r);
    }
    for (int s = 0; s < ep; ++s) {
      const std::int64_t* tokens_row =
          group.tokens_to_rank.data() + static_cast<std::size_t>(s) * static_cast<std::size_t>(ep);
      const std::int64_t* copies_row =
          group.copies_to_rank.data() + static_cast<std::size_t>(s) * static_cast<std::size_t>(ep);
      const std::int64_t* node_tokens_row = group.tokens_to_node.data() + static_cast<std::size_t>(s) * nodes;
      const std::int64_t* node_copies_row = group.copies_to_node.data() + static_cast<std::size_t>(s) * nodes;
      // Every token sends one copy per chosen expert.
      EXPECT_EQ(sum(copies_row, static_cast<std::size_t>(ep)), t * o.num_topk) << "group " << g << " src " << s;
      EXPECT_EQ(sum(node_copies_row, nodes), t * o.num_topk) << "group " << g << " src " << s;
      // Every token goes somewhere, and to at most num_topk ranks and nodes (node_limit nodes with a limit).
      const std::int64_t max_nodes = std::min<std::int64_t>(
          {o.num_topk, group.num_nodes, o.routing.node_limit > 0 ? o.routing.node_limit : group.num_nodes});
      EXPECT_GE(sum(tokens_row, static_cast<std::size_t>(ep)), t);
      EXPECT_LE(sum(tokens_row, static_cast<std::size_t>(ep)), t * std::min(o.num_topk, ep));
      EXPECT_GE(sum(node_tokens_row, nodes), t);
      EXPECT_LE(sum(node_tokens_row, nodes), t * max_nodes);
      std::vector<std::int64_t> copies_on_node(nodes, 0);
      std::vector<std::int64_t> tokens_on_node_ranks(nodes, 0);
      std::vector<std::int64_t> most_tokens_to_a_rank_of_node(nodes, 0);
      for (int d = 0; d < ep; ++d) {
        // A token reaches a rank at most once, and with at most min(k, m) copies: its experts are distinct.
        EXPECT_LE(tokens_row[d], copies_row[d]);
        EXPECT_LE(tokens_row[d], t);
        EXPECT_LE(copies_row[d], t * std::min(o.num_topk, m));
        EXPECT_EQ(tokens_row[d] == 0, copies_row[d] == 0);
        const auto node = static_cast<std::size_t>(group.node_of_rank[static_cast<std::size_t>(d)]);
        copies_on_node[node] += copies_row[d];
        tokens_on_node_ranks[node] += tokens_row[d];
        most_tokens_to_a_rank_of_node[node] = std::max(most_tokens_to_a_rank_of_node[node], tokens_row[d]);
        copies_per_rank_position[static_cast<std::size_t>(d)] += copies_row[d];
      }
      for (std::size_t n = 0; n < nodes; ++n) {
        // Node counts are rank counts merged: copies add up; a token is counted once per node.
        EXPECT_EQ(node_copies_row[n], copies_on_node[n]);
        EXPECT_LE(node_tokens_row[n], tokens_on_node_ranks[n]);
        EXPECT_GE(node_tokens_row[n], most_tokens_to_a_rank_of_node[n]);
        EXPECT_LE(node_tokens_row[n], node_copies_row[n]);
      }
    }
  }
  // The per-expert tally agrees with the matrices: rank r holds experts [r * m, (r + 1) * m) in every group.
  ASSERT_EQ(traffic.tokens_per_expert.size(), static_cast<std::size_t>(o.num_experts));
  const auto num_tokens = static_cast<std::int64_t>(node_of_gpu.size()) * t;
  EXPECT_EQ(std::accumulate(traffic.tokens_per_expert.begin(), traffic.tokens_per_expert.end(), std::int64_t{0}),
            num_tokens * o.num_topk);
  for (int r = 0; r < ep; ++r) {
    std::int64_t on_rank = 0;
    for (int e = r * m; e < (r + 1) * m; ++e) {
      const std::int64_t count = traffic.tokens_per_expert[static_cast<std::size_t>(e)];
      EXPECT_LE(count, num_tokens);  // at most once per token
      on_rank += count;
    }
    EXPECT_EQ(on_rank, copies_per_rank_position[static_cast<std::size_t>(r)]) << "rank " << r;
  }
}

void expect_same(const LayerTraffic& a, const LayerTraffic& b) {
  ASSERT_EQ(a.groups.size(), b.groups.size());
  for (std::size_t g = 0; g < a.groups.size(); ++g) {
    EXPECT_EQ(a.groups[g].node_of_rank, b.groups[g].node_of_rank);
    EXPECT_EQ(a.groups[g].tokens_to_rank, b.groups[g].tokens_to_rank) << "group " << g;
    EXPECT_EQ(a.groups[g].copies_to_rank, b.groups[g].copies_to_rank) << "group " << g;
    EXPECT_EQ(a.groups[g].tokens_to_node, b.groups[g].tokens_to_node) << "group " << g;
    EXPECT_EQ(a.groups[g].copies_to_node, b.groups[g].copies_to_node) << "group " << g;
  }
  EXPECT_EQ(a.tokens_per_expert, b.tokens_per_expert);
}

// The number of nodes with a token of `src` in group `g` (with tokens_per_rank = 1: the nodes of that token).
int nodes_reached(const EpGroupTraffic& group, int src) {
  int count = 0;
  for (int n = 0; n < group.num_nodes; ++n) {
    count += group.tokens_to_node[cell(src, group.num_nodes, n)] > 0 ? 1 : 0;
  }
  return count;
}

std::string error_of(const std::vector<int>& node_of_gpu, const TrafficOptions& options) {
  try {
    build_layer_traffic(node_of_gpu, options);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return "";
}

TEST(LayerTraffic, UniformInvariants) {
  // 4 nodes of 4 GPUs, two EP groups of 8 ranks spanning 2 nodes each, 4 experts per rank.
  const auto cluster = shape(4, 4);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(8, 500, 32, 4));
  ASSERT_EQ(traffic.groups.size(), 2u);
  EXPECT_EQ(traffic.groups[0].num_nodes, 2);
  EXPECT_EQ(traffic.groups[1].node_of_rank, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1}));
  expect_invariants(traffic, cluster);
}

TEST(LayerTraffic, SkewedAndNodeLimitedInvariants) {
  const auto cluster = shape(8, 4);
  for (const char* routing : {"uniform", "zipf:0.8", "zipf:2", "zipf:6"}) {
    for (const int limit : {0, 1, 2, 3}) {
      SCOPED_TRACE(std::string(routing) + ", node limit " + std::to_string(limit));
      const LayerTraffic traffic = build_layer_traffic(cluster, make_options(16, 300, 64, 6, routing, limit, 5));
      expect_invariants(traffic, cluster);
    }
  }
}

TEST(LayerTraffic, NoExpertTwiceInAToken) {
  // With one expert per rank, a token that picked an expert twice would send two copies to one rank; so
  // copies == tokens entrywise holds exactly when every token's experts are distinct. Strong skew makes
  // duplicate proposals common, and the node limit forces the rejection fallback.
  const auto cluster = shape(8, 2);
  for (const char* routing : {"uniform", "zipf:3", "zipf:20"}) {
    for (const int limit : {0, 2}) {
      SCOPED_TRACE(std::string(routing) + ", node limit " + std::to_string(limit));
      const LayerTraffic traffic = build_layer_traffic(cluster, make_options(16, 400, 16, 4, routing, limit, 9));
      for (const EpGroupTraffic& group : traffic.groups) EXPECT_EQ(group.tokens_to_rank, group.copies_to_rank);
      expect_invariants(traffic, cluster);
    }
  }
}

TEST(LayerTraffic, TopkEqualToExpertsPicksEveryExpert) {
  // Each token must take all 8 experts: every rank gets exactly m = 2 copies of every token.
  const auto cluster = shape(2, 4);
  const std::int64_t t = 50;
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(4, t, 8, 8, "zipf:4"));
  for (const EpGroupTraffic& group : traffic.groups) {
    for (const std::int64_t x : group.tokens_to_rank) EXPECT_EQ(x, t);
    for (const std::int64_t x : group.copies_to_rank) EXPECT_EQ(x, 2 * t);
  }
  for (const std::int64_t x : traffic.tokens_per_expert) EXPECT_EQ(x, 8 * t);
}

TEST(LayerTraffic, NodeLimitHoldsForEveryToken) {
  // One token per rank, so the nodes a source reaches are the nodes of one token. 8 nodes of 2 GPUs, one
  // group of 16 ranks with 4 experts each (8 per node), top-8 over at most 2 nodes.
  const auto cluster = shape(8, 2);
  const int limit = 2;
  int most_nodes = 0;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    for (const char* routing : {"uniform", "zipf:1.5"}) {
      const LayerTraffic traffic = build_layer_traffic(cluster, make_options(16, 1, 64, 8, routing, limit, seed));
      for (int src = 0; src < 16; ++src) {
        const int reached = nodes_reached(traffic.groups[0], src);
        EXPECT_LE(reached, limit) << "seed " << seed << " src " << src;
        most_nodes = std::max(most_nodes, reached);
      }
    }
  }
  EXPECT_EQ(most_nodes, limit);
  // Without the limit the same tokens spread further, so the check above could have failed.
  const LayerTraffic unlimited = build_layer_traffic(cluster, make_options(16, 1, 64, 8));
  int most_unlimited = 0;
  for (int src = 0; src < 16; ++src) most_unlimited = std::max(most_unlimited, nodes_reached(unlimited.groups[0], src));
  EXPECT_GT(most_unlimited, limit);
}

TEST(LayerTraffic, NodeLabelsAreRenumberedByFirstAppearance) {
  // Node labels need not be contiguous or sorted: GPUs of label 2 sit at ranks 2, 3, 6 and 7.
  const std::vector<int> cluster = {5, 5, 2, 2, 9, 9, 2, 2};
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(8, 200, 16, 3, "zipf:1", 1));
  ASSERT_EQ(traffic.groups.size(), 1u);
  EXPECT_EQ(traffic.groups[0].node_of_rank, (std::vector<int>{0, 0, 1, 1, 2, 2, 1, 1}));
  EXPECT_EQ(traffic.groups[0].num_nodes, 3);
  expect_invariants(traffic, cluster);
  // With a limit of one node, each token's copies all land on a single node: tokens == copies / k per node.
  for (int src = 0; src < 8; ++src) {
    std::int64_t tokens = 0;
    for (int n = 0; n < 3; ++n) tokens += traffic.groups[0].tokens_to_node[cell(src, 3, n)];
    EXPECT_EQ(tokens, 200);
  }
}

TEST(LayerTraffic, OneRankGroupsKeepEverythingLocal) {
  // ep = 1: every GPU is its own group and holds every expert, so all copies stay on it.
  const auto cluster = shape(2, 2);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(1, 100, 4, 2, "zipf:1"));
  ASSERT_EQ(traffic.groups.size(), 4u);
  for (const EpGroupTraffic& group : traffic.groups) {
    EXPECT_EQ(group.tokens_to_rank, (std::vector<std::int64_t>{100}));
    EXPECT_EQ(group.copies_to_rank, (std::vector<std::int64_t>{200}));
    EXPECT_EQ(group.num_nodes, 1);
  }
}

TEST(LayerTraffic, NoTokensNoTraffic) {
  const auto cluster = shape(2, 4);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(8, 0, 16, 2, "uniform", 1));
  for (const std::int64_t x : traffic.groups[0].copies_to_rank) EXPECT_EQ(x, 0);
  for (const std::int64_t x : traffic.tokens_per_expert) EXPECT_EQ(x, 0);
  expect_invariants(traffic, cluster);
}

TEST(LayerTraffic, HugeSkewStillTerminates) {
  // zipf:1000 leaves one expert with all the mass and the rest at exactly zero; tokens must still find
  // num_topk distinct experts within one node, and all of them take the hot expert.
  const auto cluster = shape(2, 4);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(8, 100, 16, 4, "zipf:1000", 1));
  expect_invariants(traffic, cluster);
  const std::vector<double> p = expert_popularity(traffic.options.routing, 16, traffic.options.seed);
  const auto hottest = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
  EXPECT_EQ(traffic.tokens_per_expert[hottest], 8 * 100);
}

TEST(LayerTraffic, SkewFollowsThePopularity) {
  // Under zipf:1.5 top-1 the most popular expert is the most chosen one.
  const auto cluster = shape(2, 4);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(8, 2000, 32, 1, "zipf:1.5", 0, 11));
  const std::vector<double> p = expert_popularity(traffic.options.routing, 32, 11);
  const auto& counts = traffic.tokens_per_expert;
  EXPECT_EQ(std::max_element(counts.begin(), counts.end()) - counts.begin(),
            std::max_element(p.begin(), p.end()) - p.begin());
}

TEST(LayerTraffic, SameSeedSameTraffic) {
  const auto cluster = shape(4, 4);
  const TrafficOptions options = make_options(8, 300, 32, 4, "zipf:1.2", 1, 77);
  expect_same(build_layer_traffic(cluster, options), build_layer_traffic(cluster, options));
}

TEST(LayerTraffic, OtherSeedOtherTraffic) {
  const auto cluster = shape(4, 4);
  const LayerTraffic a = build_layer_traffic(cluster, make_options(8, 300, 32, 4, "uniform", 0, 1));
  const LayerTraffic b = build_layer_traffic(cluster, make_options(8, 300, 32, 4, "uniform", 0, 2));
  EXPECT_NE(a.groups[0].copies_to_rank, b.groups[0].copies_to_rank);
  EXPECT_NE(a.tokens_per_expert, b.tokens_per_expert);
}

TEST(LayerTraffic, GroupsAndRanksDrawIndependentStreams) {
  // Two groups of identical shape must not receive identical routing, nor two ranks of one group.
  const auto cluster = shape(4, 4);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(8, 300, 32, 4));
  EXPECT_NE(traffic.groups[0].copies_to_rank, traffic.groups[1].copies_to_rank);
  const auto& copies = traffic.groups[0].copies_to_rank;
  EXPECT_FALSE(std::equal(copies.begin(), copies.begin() + 8, copies.begin() + 8));
}

TEST(LayerTraffic, ThreadCountDoesNotChangeTheResult) {
  // Enough picks (16 ranks x 8192 tokens x 4) for 8 threads; skew and a binding node limit exercise every
  // sampling path. Uneven splits (3, 5 threads) cut groups in the middle.
  const auto cluster = shape(4, 4);
  const TrafficOptions options = make_options(8, 8192, 32, 4, "zipf:1.5", 1, 3);
  const LayerTraffic one = build_layer_traffic(cluster, options, 1);
  for (const int threads : {2, 3, 5, 8}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    expect_same(one, build_layer_traffic(cluster, options, threads));
  }
  expect_same(one, build_layer_traffic(cluster, options));
}

TEST(LayerTraffic, FromACluster) {
  // The Cluster overload reads only the cluster's shape: 4 nodes of 4 GPUs give the same traffic as the
  // hand-made shape, with EP groups of 8 spanning two nodes.
  const std::string yaml = R"(name: four-by-four
nodes: 4
gpus_per_node: 4
gpu: {name: test-gpu, bf16_tflops: 100, hbm_bandwidth: 1 TB/s, hbm_capacity: 16 GiB}
nvlink: {domain_gpus: 4, bandwidth: 100 GB/s}
pcie: {bandwidth: 32 GB/s}
nic: {per_node: 4, bandwidth: 100 Gb/s}
fabric:
  rail_optimized: false
  leaf: {down: 16}
)";
  const topologies::Cluster cluster(
      topologies::parse_cluster(load_yaml_text(yaml, "four-by-four.yaml"), "four-by-four.yaml", std::nullopt));
  ASSERT_EQ(cluster.num_gpus(), 16);
  const TrafficOptions options = make_options(8, 200, 32, 4, "zipf:1", 1, 4);
  const LayerTraffic traffic = build_layer_traffic(cluster, options);
  ASSERT_EQ(traffic.groups.size(), 2u);
  EXPECT_EQ(traffic.groups[1].gpus, (std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(traffic.groups[1].node_of_rank, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1}));
  expect_same(traffic, build_layer_traffic(shape(4, 4), options));
}

TEST(LayerTrafficValidation, EpMustDivideTheGpus) {
  EXPECT_EQ(error_of(shape(32, 8), make_options(48, 1, 48, 2)), "ep: must divide the GPU count 256, got 48");
  EXPECT_EQ(error_of(shape(1, 8), make_options(0, 1, 8, 2)), "ep: must be >= 1, got 0");
}

TEST(LayerTrafficValidation, EpMustDivideTheExperts) {
  EXPECT_EQ(error_of(shape(2, 8), make_options(16, 1, 8, 2)), "ep: must divide num_experts 8, got 16");
  EXPECT_EQ(error_of(shape(1, 8), make_options(4, 1, 0, 1)), "num_experts: must be >= 1, got 0");
}

TEST(LayerTrafficValidation, TopkRange) {
  EXPECT_EQ(error_of(shape(1, 8), make_options(8, 1, 8, 9)), "num_topk: must be <= num_experts (8), got 9");
  EXPECT_EQ(error_of(shape(1, 8), make_options(8, 1, 8, 0)), "num_topk: must be >= 1, got 0");
}

TEST(LayerTrafficValidation, TokensAndLimitNotNegative) {
  EXPECT_EQ(error_of(shape(1, 8), make_options(8, -1, 8, 2)), "tokens_per_rank: must be >= 0, got -1");
  EXPECT_EQ(error_of(shape(1, 8), make_options(8, 1, 8, 2, "uniform", -1)), "node_limit: must be >= 0, got -1");
}

TEST(LayerTrafficValidation, NodeLimitMustAllowTopk) {
  // 8 experts per node (one per rank): one node cannot supply 9 distinct experts, two can.
  const std::string error = error_of(shape(2, 8), make_options(16, 1, 16, 9, "uniform", 1));
  EXPECT_NE(error.find("node_limit: 1 nodes of EP group 0 may hold only 8 experts"), std::string::npos) << error;
  EXPECT_NO_THROW(build_layer_traffic(shape(2, 8), make_options(16, 1, 16, 9, "uniform", 2)));
  // A limit at or above the group's node count never binds.
  EXPECT_NO_THROW(build_layer_traffic(shape(2, 8), make_options(16, 1, 16, 16, "uniform", 2)));
}

TEST(LayerTrafficValidation, NodeLimitCountsTheSmallestNodes) {
  // A group of 4 ranks on a node with 3 of them and a node with 1: a token whose first expert is on the small
  // node could not find a second one there, even though the big node alone holds 3.
  const std::vector<int> cluster = {0, 0, 0, 1};
  const std::string error = error_of(cluster, make_options(4, 1, 4, 2, "uniform", 1));
  EXPECT_NE(error.find("may hold only 1 experts"), std::string::npos) << error;
  EXPECT_NO_THROW(build_layer_traffic(cluster, make_options(4, 1, 4, 1, "uniform", 1)));
}

TEST(LayerTrafficValidation, ZipfExponentMustBePositive) {
  TrafficOptions options = make_options(8, 1, 8, 2);
  options.routing.kind = RoutingSpec::Kind::kZipf;
  options.routing.zipf_exponent = 0.0;
  EXPECT_NE(error_of(shape(1, 8), options).find("routing: zipf exponent must be finite and > 0"), std::string::npos);
}

}  // namespace
}  // namespace moesim::workloads
