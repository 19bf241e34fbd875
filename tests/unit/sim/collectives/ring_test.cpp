#include "sim/collectives/ring.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <vector>

#include "../test_clusters.hpp"
#include "sim/a2a.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::collectives {
namespace {

// n GPUs on one crossbar, 100 GB/s ports, 0.5 us per hop: every transfer pays 1 us and its bytes / 100 GB/s, and
// every ring hop i -> i + 1 has links of its own (GPU i's uplink, GPU i + 1's downlink).
double ring_time_us(RingCollective kind, int n, double bytes) {
  const topologies::Cluster cluster(moesim::testing::crossbar_config(n, "100 GB/s", "0.5 us"));
  std::vector<int> gpus(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) gpus[static_cast<std::size_t>(i)] = i;
  TransferGraph graph;
  build_ring(graph, kind, gpus, bytes);
  return run_collective(cluster, graph, 1.0, 0.0, "ring", bytes, n).time_us();
}

TEST(Ring, AllReduceTakesTwoNMinusOneStepsOfAChunk) {
  // Closed form: 2 (n - 1) x (1 us + (S / n) / 100 GB/s). 4 ranks, 4 MB: 6 x (1 + 10) = 66 us.
  for (const int n : {2, 4, 8}) {
    const double bytes = 4e6;
    const double expected = 2.0 * (n - 1) * (1.0 + bytes / n / 100e9 * 1e6);
    const double simulated = ring_time_us(RingCollective::kAllReduce, n, bytes);
    std::printf("  all-reduce of %.0f B on %d ranks: closed form %.4f us, simulated %.4f us\n", bytes, n, expected,
                simulated);
    EXPECT_NEAR(simulated, expected, 1e-6) << n;
  }
}

TEST(Ring, AllGatherAndReduceScatterTakeNMinusOneSteps) {
  // (n - 1) x (1 us + (S / n) / 100 GB/s): 4 ranks, 4 MB: 3 x 11 = 33 us.
  for (const RingCollective kind : {RingCollective::kAllGather, RingCollective::kReduceScatter}) {
    EXPECT_NEAR(ring_time_us(kind, 4, 4e6), 33.0, 1e-6);
    EXPECT_NEAR(ring_time_us(kind, 8, 8e6), 7.0 * 11.0, 1e-6);
  }
}

TEST(Ring, StructureAndDegenerateGroups) {
  TransferGraph graph;
  build_ring(graph, RingCollective::kAllReduce, {3, 1, 2}, 300.0);
  int transfers = 0;
  for (TransferGraph::NodeIdx i = 0; i < graph.size(); ++i) {
    if (!graph.is_transfer(i)) continue;
    ++transfers;
    EXPECT_DOUBLE_EQ(graph.nodes()[i].units, 100.0);  // a third of the buffer per step
  }
  EXPECT_EQ(transfers, 2 * 2 * 3);  // 2 (n - 1) steps of n transfers
  // The ring follows the order given: 3 -> 1 -> 2 -> 3.
  EXPECT_EQ(graph.nodes()[1].src_gpu, 3);
  EXPECT_EQ(graph.nodes()[1].dst_gpu, 1);

  TransferGraph single;
  build_ring(single, RingCollective::kAllReduce, {5}, 1e6);
  for (TransferGraph::NodeIdx i = 0; i < single.size(); ++i) EXPECT_FALSE(single.is_transfer(i));
  EXPECT_THROW(build_ring(single, RingCollective::kAllGather, {}, 1.0), std::invalid_argument);
  EXPECT_THROW(build_ring(single, RingCollective::kAllGather, {1, 1}, 1.0), std::invalid_argument);
  EXPECT_THROW(build_ring(single, RingCollective::kAllGather, {1, 2}, -1.0), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim::collectives
