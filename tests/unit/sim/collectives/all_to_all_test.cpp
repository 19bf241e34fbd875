#include "sim/collectives/all_to_all.hpp"

#include <stdexcept>

#include <gtest/gtest.h>

#include "common/rng.hpp"

namespace moesim::sim::collectives {
namespace {

// Two nodes of four ranks; rank r is GPU 10 + r and sits on node r / 4 at position r % 4. Demand is random
// per pair of ranks; node_units is what rail sends over RDMA per destination node (here: a made-up value
// below the sum of the node's rank units, as deduplication would give).
A2aDemand two_node_demand() {
  A2aDemand d;
  const int n = 8;
  d.num_nodes = 2;
  Rng rng(3);
  for (int r = 0; r < n; ++r) {
    d.gpus.push_back(10 + r);
    d.node_of_rank.push_back(r / 4);
  }
  d.rank_units.resize(n * n);
  for (auto& u : d.rank_units) u = static_cast<double>(rng.below(100));
  d.node_units.assign(n * 2, 0.0);
  for (int s = 0; s < n; ++s) {
    for (int t = 0; t < n; ++t) d.node_units[s * 2 + t / 4] += d.rank_units[s * n + t] * 0.75;
  }
  return d;
}

int node_of_gpu(int gpu) {
  return (gpu - 10) / 4;
}
int position_of_gpu(int gpu) {
  return (gpu - 10) % 4;
}

double total_units(const TransferGraph& g) {
  double sum = 0.0;
  for (const auto& n : g.nodes()) sum += n.src_gpu >= 0 ? n.units : 0.0;
  return sum;
}

TEST(AllToAll, DirectSendsEveryOffDiagonalPairOnce) {
  const A2aDemand d = two_node_demand();
  TransferGraph g;
  build_all_to_all(g, d, A2aAlgorithm::kDirect);
  double expected = 0.0;
  for (int s = 0; s < 8; ++s) {
    for (int t = 0; t < 8; ++t) expected += s == t ? 0.0 : d.rank_units[s * 8 + t];
  }
  EXPECT_DOUBLE_EQ(total_units(g), expected);
  EXPECT_TRUE(g.edges().empty());
}

TEST(AllToAll, PairwiseHasOneSendPerRankPerRound) {
  // n - 1 rounds of n sends: 8 * 7 transfers carrying the off-diagonal demand.
  const A2aDemand d = two_node_demand();
  TransferGraph g;
  build_all_to_all(g, d, A2aAlgorithm::kPairwise);
  int transfers = 0;
  for (std::uint32_t i = 0; i < g.size(); ++i) transfers += g.is_transfer(i) ? 1 : 0;
  EXPECT_EQ(transfers, 8 * 7);
  double expected = 0.0;
  for (int s = 0; s < 8; ++s) {
    for (int t = 0; t < 8; ++t) expected += s == t ? 0.0 : d.rank_units[s * 8 + t];
  }
  EXPECT_DOUBLE_EQ(total_units(g), expected);
}

TEST(AllToAll, HierarchicalAlignsIntraNodeThenExchangesOnRails) {
  // Phase 1 stays inside a node and carries, for each source, everything bound for another position.
  // Phase 2 crosses nodes only between equal positions and carries all inter-node demand.
  const A2aDemand d = two_node_demand();
  TransferGraph g;
  build_all_to_all(g, d, A2aAlgorithm::kHierarchical);
  double intra = 0.0, inter = 0.0, expected_intra = 0.0, expected_inter = 0.0;
  for (const auto& n : g.nodes()) {
    if (n.src_gpu < 0) continue;
    if (node_of_gpu(n.src_gpu) == node_of_gpu(n.dst_gpu)) {
      intra += n.units;
    } else {
      EXPECT_EQ(position_of_gpu(n.src_gpu), position_of_gpu(n.dst_gpu)) << "inter-node hops stay on a rail";
      inter += n.units;
    }
  }
  for (int s = 0; s < 8; ++s) {
    for (int t = 0; t < 8; ++t) {
      if (s % 4 != t % 4) expected_intra += d.rank_units[s * 8 + t];
      if (s / 4 != t / 4) expected_inter += d.rank_units[s * 8 + t];
    }
  }
  EXPECT_DOUBLE_EQ(intra, expected_intra);
  EXPECT_DOUBLE_EQ(inter, expected_inter);
}

TEST(AllToAll, RailSendsNodeDeduplicatedCopiesThenFansOut) {
  // RDMA: one transfer per (source, remote node) to the source's rail peer, carrying node_units.
  // NVLink: the own node's demand directly, and each remote rank's demand from its node's forwarder.
  const A2aDemand d = two_node_demand();
  TransferGraph g;
  build_all_to_all(g, d, A2aAlgorithm::kRail);
  double rdma = 0.0, nvlink = 0.0, expected_rdma = 0.0, expected_nvlink = 0.0;
  for (const auto& n : g.nodes()) {
    if (node_of_gpu(n.src_gpu) != node_of_gpu(n.dst_gpu)) {
      EXPECT_EQ(position_of_gpu(n.src_gpu), position_of_gpu(n.dst_gpu));
      rdma += n.units;
    } else {
      nvlink += n.units;
    }
  }
  for (int s = 0; s < 8; ++s) {
    expected_rdma += d.node_units[s * 2 + (1 - s / 4)];
    for (int t = 0; t < 8; ++t) {
      if (s == t) continue;
      if (s / 4 == t / 4 || s % 4 != t % 4) expected_nvlink += d.rank_units[s * 8 + t];
    }
  }
  EXPECT_DOUBLE_EQ(rdma, expected_rdma);
  EXPECT_DOUBLE_EQ(nvlink, expected_nvlink);
  // Every fan-out waits for exactly one RDMA transfer.
  EXPECT_FALSE(g.edges().empty());
  for (const auto& [a, b] : g.edges()) {
    EXPECT_NE(node_of_gpu(g.nodes()[a].src_gpu), node_of_gpu(g.nodes()[a].dst_gpu));
    EXPECT_EQ(g.nodes()[a].dst_gpu, g.nodes()[b].src_gpu);
  }
}

TEST(AllToAll, HierarchicalNeedsWholeNodesOfEqualSize) {
  A2aDemand d = two_node_demand();
  d.node_of_rank[3] = 1;  // node 0 now has 3 ranks, node 1 has 5
  TransferGraph g;
  EXPECT_THROW(build_all_to_all(g, d, A2aAlgorithm::kHierarchical), std::invalid_argument);
  EXPECT_THROW(build_all_to_all(g, d, A2aAlgorithm::kRail), std::invalid_argument);
}

TEST(AllToAll, ParsesAlgorithmNames) {
  for (const auto& name : algorithm_names()) EXPECT_EQ(algorithm_name(parse_algorithm(name)), name);
  EXPECT_THROW(parse_algorithm("ring"), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim::collectives
