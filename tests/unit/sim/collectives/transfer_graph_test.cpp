#include "sim/collectives/transfer_graph.hpp"

#include <gtest/gtest.h>

#include "../test_clusters.hpp"
#include "sim/core/simulator.hpp"

namespace moesim::sim::collectives {
namespace {

TEST(TransferGraph, ReversedTurnsTransfersAndEdgesAround) {
  TransferGraph g;
  const auto a = g.add_transfer(0, 1, 5.0, 3);
  const auto j = g.add_join();
  const auto b = g.add_transfer(1, 2, 7.0);
  g.add_edge(a, j);
  g.add_edge(j, b);
  const TransferGraph r = g.reversed();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r.nodes()[a].src_gpu, 1);
  EXPECT_EQ(r.nodes()[a].dst_gpu, 0);
  EXPECT_EQ(r.nodes()[a].units, 5.0);
  EXPECT_EQ(r.nodes()[a].salt, 3u);
  EXPECT_FALSE(r.is_transfer(j));
  EXPECT_EQ(r.edges(), (std::vector<std::pair<TransferGraph::NodeIdx, TransferGraph::NodeIdx>>{{j, a}, {b, j}}));
}

TEST(TransferRunner, ChainRunsInOrderAndSumsLatencies) {
  // Two 1 MB transfers in sequence on 100 GB/s ports with 2 us of path latency each take 2 + 10 us: the chain
  // ends at 24 us. A join between them costs nothing.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "1 us"));
  Simulator sim;
  network::Network net(sim, cluster, {0.0});
  TransferGraph g;
  const auto a = g.add_transfer(0, 1, 1.0);
  const auto j = g.add_join();
  const auto b = g.add_transfer(1, 2, 1.0);
  g.add_edge(a, j);
  g.add_edge(j, b);
  TransferRunner runner(net, g, 1e6);
  runner.start();
  sim.run();
  EXPECT_TRUE(runner.finished());
  EXPECT_NEAR(static_cast<double>(runner.end_time()), 24e6, 2.0);
  EXPECT_DOUBLE_EQ(runner.bytes_delivered(), 2e6);
}

TEST(TransferRunner, JoinsAndEmptyTransfersFinishAtOnce) {
  const topologies::Cluster cluster(moesim::testing::crossbar_config(2, "100 GB/s", "1 us"));
  Simulator sim;
  network::Network net(sim, cluster, {0.0});
  TransferGraph g;
  const auto j = g.add_join();
  const auto empty = g.add_transfer(0, 1, 0.0);
  const auto self = g.add_transfer(1, 1, 9.0);
  g.add_edge(j, empty);
  g.add_edge(empty, self);
  TransferRunner runner(net, g, 1.0);
  runner.start();
  sim.run();
  EXPECT_TRUE(runner.finished());
  EXPECT_EQ(runner.end_time(), 0);
}

}  // namespace
}  // namespace moesim::sim::collectives
