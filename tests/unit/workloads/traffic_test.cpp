#include "workloads/traffic.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <optional>
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
                            const std::string& routing = "uniform", int node_limit = 0, std::uint64_t seed = 1,
                            int device_limit = 0) {
  TrafficOptions options;
  options.ep = ep;
  options.tokens_per_rank = tokens_per_rank;
  options.num_experts = num_experts;
  options.num_topk = num_topk;
  options.routing = parse_routing(routing);
  options.routing.node_limit = node_limit;
  options.routing.device_limit = device_limit;
  options.seed = seed;
  return options;
}

std::int64_t sum(const std::int64_t* first, std::size_t n) {
  return std::accumulate(first, first + n, std::int64_t{0});
}

// Checks every invariant that follows from "each token picks num_topk distinct experts" (and, with limits, "on at
// most node_limit nodes and device_limit ranks"), whatever the distribution.
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
      const std::int64_t max_ranks =
          std::min({o.num_topk, ep, o.routing.device_limit > 0 ? o.routing.device_limit : ep});
      EXPECT_GE(sum(tokens_row, static_cast<std::size_t>(ep)), t);
      EXPECT_LE(sum(tokens_row, static_cast<std::size_t>(ep)), t * max_ranks);
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

// The number of ranks with a token of `src` (with tokens_per_rank = 1: the ranks of that token).
int ranks_reached(const EpGroupTraffic& group, int src) {
  const auto ep = static_cast<int>(group.gpus.size());
  int count = 0;
  for (int d = 0; d < ep; ++d) count += group.tokens_to_rank[cell(src, ep, d)] > 0 ? 1 : 0;
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

// Every distribution, with and without each limit.
const char* const kAllDistributions[] = {"uniform",     "zipf:1",      "zipf:3",     "dirichlet:0.2", "dirichlet:4",
                                         "lognormal:1", "lognormal:4", "hot:16:0.2", "hot:24:0.5"};

// The traffic, or nothing where validation rejects the seed's hot set under the limits: for hot routing, whether
// every token can finish its hot and cold picks depends on where the seeded hot experts fall
// (HotLimitsAreValidatedAgainstThePlacement tests that rejection). Any other error fails the test.
std::optional<LayerTraffic> build_unless_hot_set_rejected(const std::vector<int>& node_of_gpu,
                                                          const TrafficOptions& options) {
  try {
    return build_layer_traffic(node_of_gpu, options);
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    const bool is_hot_placement =
        what.find("hot experts of hot:") != std::string::npos || what.find("cold experts of hot:") != std::string::npos;
    if (options.routing.kind != RoutingSpec::Kind::kHot || !is_hot_placement) throw;
    return std::nullopt;
  }
}

TEST(LayerTraffic, EveryDistributionKeepsTheInvariants) {
  // 8 nodes of 4 GPUs, EP groups of 16 ranks (4 nodes) with 4 experts each, top-6, under each limit and both.
  // For hot routing the first of seeds 5, 6, ... whose hot set the limits accept is used.
  const auto cluster = shape(8, 4);
  for (const char* routing : kAllDistributions) {
    for (const auto& [node_limit, device_limit] : {std::pair{0, 0}, {2, 0}, {0, 3}, {2, 3}, {1, 3}}) {
      SCOPED_TRACE(std::string(routing) + ", node limit " + std::to_string(node_limit) + ", device limit " +
                   std::to_string(device_limit));
      std::optional<LayerTraffic> traffic;
      for (std::uint64_t seed = 5; seed < 100 && !traffic; ++seed) {
        traffic = build_unless_hot_set_rejected(cluster,
                                                make_options(16, 300, 64, 6, routing, node_limit, seed, device_limit));
      }
      ASSERT_TRUE(traffic.has_value());
      expect_invariants(*traffic, cluster);
    }
  }
}

TEST(LayerTraffic, NoExpertTwiceInATokenForAnyDistribution) {
  // As in NoExpertTwiceInAToken: one expert per rank, so copies == tokens entrywise exactly when no token repeats
  // an expert. Strong skew (dirichlet:0.05, lognormal:5) makes repeated proposals common; hot:2:0.5 with top-4
  // takes both hot experts in every token (the second hot proposal repeats the first half the time), and hot:4:0.9
  // makes 3 or 4 hot picks of 4.
  const auto cluster = shape(8, 2);
  for (const char* routing : {"dirichlet:0.05", "lognormal:5", "hot:2:0.5", "hot:3:0.25", "hot:4:0.9"}) {
    for (const int limit : {0, 3}) {
      SCOPED_TRACE(std::string(routing) + ", node limit " + std::to_string(limit));
      std::optional<LayerTraffic> traffic;
      for (std::uint64_t seed = 9; seed < 200 && !traffic; ++seed) {
        traffic = build_unless_hot_set_rejected(cluster, make_options(16, 400, 16, 4, routing, limit, seed));
      }
      ASSERT_TRUE(traffic.has_value());
      for (const EpGroupTraffic& group : traffic->groups) EXPECT_EQ(group.tokens_to_rank, group.copies_to_rank);
      expect_invariants(*traffic, cluster);
    }
  }
}

TEST(LayerTraffic, DeviceLimitHoldsForEveryToken) {
  // One token per rank, so the ranks a source reaches are the ranks of one token. 2 nodes of 4 GPUs, one group of
  // 8 ranks with 8 experts each, top-8 over at most 3 ranks (24 experts), for every distribution and 40 seeds
  // (hot routing: those whose hot set the limit accepts, at least half of them).
  const auto cluster = shape(2, 4);
  const int limit = 3;
  for (const char* routing : kAllDistributions) {
    SCOPED_TRACE(routing);
    int most_ranks = 0;
    int num_seeds = 0;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
      const auto traffic = build_unless_hot_set_rejected(cluster, make_options(8, 1, 64, 8, routing, 0, seed, limit));
      if (!traffic) continue;
      ++num_seeds;
      for (int src = 0; src < 8; ++src) {
        const int reached = ranks_reached(traffic->groups[0], src);
        EXPECT_LE(reached, limit) << "seed " << seed << " src " << src;
        most_ranks = std::max(most_ranks, reached);
      }
      expect_invariants(*traffic, cluster);
    }
    EXPECT_GE(num_seeds, 20);
    // The limit binds: without it, the same tokens spread further.
    EXPECT_EQ(most_ranks, limit);
    const LayerTraffic unlimited = build_layer_traffic(cluster, make_options(8, 1, 64, 8, routing, 0, 1));
    int most_unlimited = 0;
    for (int src = 0; src < 8; ++src)
      most_unlimited = std::max(most_unlimited, ranks_reached(unlimited.groups[0], src));
    EXPECT_GT(most_unlimited, limit);
  }
}

TEST(LayerTraffic, NodeAndDeviceLimitsHoldTogether) {
  // 4 nodes of 2 GPUs, one group of 8 ranks with 8 experts each (16 per node), top-8 over at most 2 nodes and 3
  // ranks: both limits must hold for every token, and both must be reached by some token.
  const auto cluster = shape(4, 2);
  for (const char* routing : kAllDistributions) {
    SCOPED_TRACE(routing);
    int most_nodes = 0;
    int most_ranks = 0;
    int num_seeds = 0;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
      const auto traffic = build_unless_hot_set_rejected(cluster, make_options(8, 1, 64, 8, routing, 2, seed, 3));
      if (!traffic) continue;
      ++num_seeds;
      for (int src = 0; src < 8; ++src) {
        const int nodes = nodes_reached(traffic->groups[0], src);
        const int ranks = ranks_reached(traffic->groups[0], src);
        EXPECT_LE(nodes, 2) << "seed " << seed << " src " << src;
        EXPECT_LE(ranks, 3) << "seed " << seed << " src " << src;
        most_nodes = std::max(most_nodes, nodes);
        most_ranks = std::max(most_ranks, ranks);
      }
      expect_invariants(*traffic, cluster);
    }
    EXPECT_GE(num_seeds, 20);
    EXPECT_EQ(most_nodes, 2);
    EXPECT_EQ(most_ranks, 3);
  }
}

// Hot experts picked by the token of each source rank of group 0, with one expert per rank and one token per rank.
std::vector<int> hot_picks_per_token(const LayerTraffic& traffic) {
  const TrafficOptions& o = traffic.options;
  const std::vector<int> hot = hot_experts(o.routing, o.num_experts, o.seed);
  std::vector<int> counts;
  for (int src = 0; src < o.ep; ++src) {
    int n = 0;
    for (const int e : hot) n += static_cast<int>(traffic.groups[0].copies_to_rank[cell(src, o.ep, e)]);
    counts.push_back(n);
  }
  return counts;
}

TEST(LayerTraffic, HotCountPerTokenIsFloorOrCeilOfKP) {
  // hot:6:0.45 with top-5: k P = 2.25, so every token makes 2 or 3 hot picks (3 with probability 1/4), with or
  // without a node limit. One expert per rank, one token per rank, so each source row is one token's experts.
  // 4 nodes of 8 GPUs, node limit 2 (16 experts); seeds whose hot set the limit cannot accommodate are skipped.
  const auto cluster = shape(4, 8);
  for (const int limit : {0, 2}) {
    SCOPED_TRACE("node limit " + std::to_string(limit));
    int num_tokens = 0;
    int num_with_3 = 0;
    for (std::uint64_t seed = 0; seed < 100; ++seed) {
      const auto traffic =
          build_unless_hot_set_rejected(cluster, make_options(32, 1, 32, 5, "hot:6:0.45", limit, seed));
      if (!traffic) continue;
      for (const int n : hot_picks_per_token(*traffic)) {
        EXPECT_TRUE(n == 2 || n == 3) << "seed " << seed << ": " << n << " hot picks";
        num_with_3 += n == 3 ? 1 : 0;
        ++num_tokens;
      }
    }
    // Both counts occur (3 in about a quarter of the tokens).
    EXPECT_GT(num_tokens, 1000);
    EXPECT_GT(num_with_3, 0);
    EXPECT_LT(num_with_3, num_tokens);
  }
}

TEST(LayerTraffic, IntegerKPFixesTheHotCount) {
  // hot:4:0.5 with top-4: k P = 2 exactly, so every token makes exactly 2 hot picks (and draws no coin).
  const auto cluster = shape(2, 8);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(16, 1, 16, 4, "hot:4:0.5", 0, 3));
  for (const int n : hot_picks_per_token(traffic)) EXPECT_EQ(n, 2);
  // 0.3 x 10 is 3.0000000000000004 in doubles; it must still count as exactly 3 hot picks of 3 hot experts.
  const LayerTraffic tenth = build_layer_traffic(cluster, make_options(16, 1, 16, 10, "hot:3:0.3", 0, 3));
  for (const int n : hot_picks_per_token(tenth)) EXPECT_EQ(n, 3);
}

TEST(LayerTraffic, NewDistributionsDoNotDependOnTheThreadCount) {
  // As ThreadCountDoesNotChangeTheResult, for the new distributions with both limits binding (node limit 1 of
  // 2 nodes, device limit 2 of 8 ranks of 4 experts).
  const auto cluster = shape(4, 4);
  for (const char* routing : {"dirichlet:0.3", "lognormal:2", "hot:12:0.5", "hot:9:0.3"}) {
    SCOPED_TRACE(routing);
    const TrafficOptions options = make_options(8, 8192, 32, 4, routing, 1, 3, 2);
    const LayerTraffic one = build_layer_traffic(cluster, options, 1);
    for (const int threads : {2, 3, 5, 8}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      expect_same(one, build_layer_traffic(cluster, options, threads));
    }
  }
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

TEST(LayerTrafficValidation, DeviceLimitNotNegative) {
  EXPECT_EQ(error_of(shape(1, 8), make_options(8, 1, 8, 2, "uniform", 0, 1, -1)), "device_limit: must be >= 0, got -1");
}

TEST(LayerTrafficValidation, DeviceLimitMustAllowTopk) {
  // One expert per rank: 3 ranks cannot supply 4 distinct experts, 4 can, and a limit of ep ranks never binds.
  EXPECT_EQ(error_of(shape(2, 8), make_options(16, 1, 16, 4, "zipf:1", 0, 1, 3)),
            "device_limit: 3 ranks may hold only 3 experts (1 per rank), fewer than num_topk 4; raise the device limit "
            "or lower ep");
  EXPECT_NO_THROW(build_layer_traffic(shape(2, 8), make_options(16, 1, 16, 4, "zipf:1", 0, 1, 4)));
  EXPECT_NO_THROW(build_layer_traffic(shape(2, 8), make_options(16, 1, 16, 16, "zipf:1", 0, 1, 16)));
}

TEST(LayerTrafficValidation, HotShareMustBeReachable) {
  // hot:2:0.5 with top-8 would need 4 distinct hot experts per token, of 2.
  EXPECT_EQ(error_of(shape(2, 8), make_options(16, 1, 16, 8, "hot:2:0.5")),
            "routing: hot:2:0.5: P must be <= H / num_topk = 2 / 8 (a token cannot pick more than H distinct hot "
            "experts)");
  // hot:12:0.1 with top-8 over 16 experts would need 7.2 cold picks per token on average, of 4 cold experts.
  EXPECT_EQ(error_of(shape(2, 8), make_options(16, 1, 16, 8, "hot:12:0.1")),
            "routing: hot:12:0.1: 1 - P must be <= (E - H) / num_topk = 4 / 8 (a token cannot pick more than E - H "
            "distinct cold experts)");
  EXPECT_EQ(error_of(shape(2, 8), make_options(16, 1, 16, 2, "hot:16:0.5")),
            "routing: hot:16:0.5: H must be >= 1 and < num_experts 16");
  // The bounds themselves are allowed: 2 hot picks of 2 hot experts, 6 cold of 6... and 14 cold.
  EXPECT_NO_THROW(build_layer_traffic(shape(2, 8), make_options(16, 1, 16, 8, "hot:2:0.25")));
  EXPECT_NO_THROW(build_layer_traffic(shape(1, 8), make_options(8, 1, 8, 8, "hot:2:0.25")));
}

TEST(LayerTrafficValidation, HotLimitsAreValidatedAgainstThePlacement) {
  // 2 nodes of 4 GPUs, one expert per rank, top-4, node limit 1. Whether a token can always finish depends on
  // where the seeded hot set falls, so the test finds seeds of each kind through hot_experts().
  const auto cluster = shape(2, 4);
  auto node_of = [](int e) { return e / 4; };
  // hot:2:0.5: 2 hot picks. With the hot experts on different nodes, a token that picked one of them is confined to
  // its node, which holds no second hot expert: rejected. On one node, every token stays there: accepted.
  int num_split = 0;
  int num_together = 0;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    const TrafficOptions options = make_options(8, 50, 8, 4, "hot:2:0.5", 1, seed);
    const std::vector<int> hot = hot_experts(options.routing, 8, seed);
    if (node_of(hot[0]) != node_of(hot[1])) {
      ++num_split;
      const std::string error = error_of(cluster, options);
      EXPECT_EQ(error.rfind("node_limit: 1 nodes of EP group 0 may hold only 1 hot experts of hot:2:0.5", 0), 0u)
          << error;
      EXPECT_NE(error.find("fewer than the 2 hot picks a token can make"), std::string::npos) << error;
    } else {
      ++num_together;
      const LayerTraffic traffic = build_layer_traffic(cluster, options);
      expect_invariants(traffic, cluster);
      for (int src = 0; src < 8; ++src) {
        EXPECT_EQ(traffic.groups[0].tokens_to_node[cell(src, 2, node_of(hot[0]))], 50);  // every token is there
      }
    }
  }
  EXPECT_GT(num_split, 0);
  EXPECT_GT(num_together, 0);
  // hot:4:0.5: 2 hot and 2 cold picks. A hot set filling one node leaves a token on that node no cold expert.
  bool found = false;
  for (std::uint64_t seed = 0; seed < 2000 && !found; ++seed) {
    const TrafficOptions options = make_options(8, 50, 8, 4, "hot:4:0.5", 1, seed);
    const std::vector<int> hot = hot_experts(options.routing, 8, seed);
    if (node_of(hot[0]) != node_of(hot[3])) continue;
    found = true;
    const std::string error = error_of(cluster, options);
    EXPECT_NE(error.find("may hold only 0 cold experts"), std::string::npos) << error;
    EXPECT_NE(error.find("fewer than the 2 cold picks a token can make"), std::string::npos) << error;
  }
  EXPECT_TRUE(found);
}

TEST(LayerTrafficValidation, HotDeviceLimitFollowsThePlacement) {
  // One expert per rank, top-4, hot:2:0.5 (2 hot, 2 cold picks). A device limit of 4 ranks binds only after the
  // last pick, so any placement passes. 3 ranks can never hold 4 experts; for hot routing the message names the
  // class that runs short: the 2 hot picks take 2 of the 3 ranks, which leaves 1 cold expert for 2 cold picks.
  const auto cluster = shape(2, 4);
  EXPECT_NO_THROW(build_layer_traffic(cluster, make_options(8, 50, 8, 4, "hot:2:0.5", 0, 1, 4)));
  const std::string error = error_of(cluster, make_options(8, 50, 8, 4, "hot:2:0.5", 0, 1, 3));
  EXPECT_EQ(error.rfind("device_limit: 3 ranks may hold only 1 cold experts of hot:2:0.5", 0), 0u) << error;
}

TEST(LayerTrafficValidation, ZipfExponentMustBePositive) {
  TrafficOptions options = make_options(8, 1, 8, 2);
  options.routing.kind = RoutingSpec::Kind::kZipf;
  options.routing.zipf_exponent = 0.0;
  EXPECT_NE(error_of(shape(1, 8), options).find("routing: zipf exponent must be finite and > 0"), std::string::npos);
}

}  // namespace
}  // namespace moesim::workloads

namespace moesim::workloads {
namespace {

TEST(Placement, ContiguousAndRoundRobinPutExpertsWhereTheyShould) {
  // 8 experts on 4 ranks: contiguous gives ranks 0,0,1,1,2,2,3,3; round-robin gives 0,1,2,3,0,1,2,3.
  EXPECT_EQ(place_experts(Placement::kContiguous, 8, 4), (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
  EXPECT_EQ(place_experts(Placement::kRoundRobin, 8, 4), (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(parse_placement("round-robin"), Placement::kRoundRobin);
  EXPECT_STREQ(placement_name(parse_placement("contiguous")), "contiguous");
  EXPECT_THROW(parse_placement("striped"), std::invalid_argument);
}

TEST(Placement, CopiesReachTheRankThatHoldsTheExpert) {
  // One EP group of 4 ranks on 2 nodes, top-1 over 8 experts: with top-1 every token is one copy, so the copies
  // each rank receives are exactly the tokens of the experts placed on it, for either placement; and the same
  // seed draws the same experts, so only where they land differs.
  const std::vector<int> node_of_gpu = {0, 0, 1, 1};
  for (Placement placement : {Placement::kContiguous, Placement::kRoundRobin}) {
    TrafficOptions options;
    options.ep = 4;
    options.tokens_per_rank = 1000;
    options.num_experts = 8;
    options.num_topk = 1;
    options.routing = parse_routing("zipf:1.0");
    options.seed = 5;
    options.placement = placement;
    const LayerTraffic traffic = build_layer_traffic(node_of_gpu, options, 1);
    const std::vector<int> rank_of = place_experts(placement, 8, 4);
    std::vector<std::int64_t> expected(4, 0), received(4, 0);
    for (int e = 0; e < 8; ++e)
      expected[static_cast<std::size_t>(rank_of[static_cast<std::size_t>(e)])] +=
          traffic.tokens_per_expert[static_cast<std::size_t>(e)];
    const auto& g = traffic.groups.front();
    for (std::size_t s = 0; s < 4; ++s) {
      for (std::size_t d = 0; d < 4; ++d) received[d] += g.copies_to_rank[s * 4 + d];
    }
    EXPECT_EQ(received, expected) << placement_name(placement);
  }
}

}  // namespace
}  // namespace moesim::workloads
