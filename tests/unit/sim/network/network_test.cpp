#include "sim/network/network.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "../test_clusters.hpp"
#include "sim/core/simulator.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::network {
namespace {

// Records when each tagged flow finished.
struct Recorder final : FlowListener {
  explicit Recorder(Simulator& s) : sim(s) {}
  void on_flow_done(std::uint64_t tag) override {
    if (finish.size() <= tag) finish.resize(tag + 1, -1);
    finish[tag] = sim.now();
  }
  Simulator& sim;
  std::vector<TimePs> finish;
};

// 100 GB/s ports, 1 us per hop: a GPU-to-GPU path has two hops (GPU -> crossbar -> GPU), so 2 us of latency.
constexpr double kBandwidth = 100e9;
constexpr TimePs kPathLatency = 2 * kPsPerUs;
constexpr TimePs transfer_ps(double bytes) {
  return static_cast<TimePs>(bytes / kBandwidth * 1e12 + 0.5);
}

class NetworkTest : public ::testing::Test {
 protected:
  NetworkTest() : cluster_(moesim::testing::crossbar_config(4, "100 GB/s", "1 us")) {}
  topologies::Cluster cluster_;
};

TEST_F(NetworkTest, OneFlowTakesLatencyPlusSizeOverBandwidth) {
  // 1 MB over 100 GB/s is 10 us, after 2 us of latency: 12 us.
  Simulator sim;
  Network net(sim, cluster_, {0.0});
  Recorder rec(sim);
  net.start_flow(0, 1, 1e6, 0, &rec, 0);
  sim.run();
  const TimePs expected = kPathLatency + transfer_ps(1e6);
  std::printf("Expectation: %lld ps / Actual result: %lld ps\n", static_cast<long long>(expected),
              static_cast<long long>(rec.finish[0]));
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(expected), 1.0);
}

TEST_F(NetworkTest, TwoFlowsIntoOneGpuEachGetHalf) {
  // Flows 0 -> 2 and 1 -> 2 share the crossbar's port into GPU 2: each runs at 50 GB/s, so 1 MB each takes
  // 20 us after the latency, and both finish together.
  Simulator sim;
  Network net(sim, cluster_, {0.0});
  Recorder rec(sim);
  net.start_flow(0, 2, 1e6, 0, &rec, 0);
  net.start_flow(1, 2, 1e6, 0, &rec, 1);
  sim.run();
  const TimePs expected = kPathLatency + 2 * transfer_ps(1e6);
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(expected), 1.0);
  EXPECT_EQ(rec.finish[0], rec.finish[1]);
}

TEST_F(NetworkTest, ShortFlowLeavesAndTheLongOneSpeedsUp) {
  // 1 MB and 3 MB into GPU 2. Both run at 50 GB/s until the short one is done (2 MB moved in 20 us); the long
  // one then has 2 MB left at 100 GB/s (20 us). Finish times: L + 20 us and L + 40 us = L + 4 MB / 100 GB/s.
  Simulator sim;
  Network net(sim, cluster_, {0.0});
  Recorder rec(sim);
  net.start_flow(0, 2, 1e6, 0, &rec, 0);
  net.start_flow(1, 2, 3e6, 0, &rec, 1);
  sim.run();
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(kPathLatency + transfer_ps(2e6)), 1.0);
  EXPECT_NEAR(static_cast<double>(rec.finish[1]), static_cast<double>(kPathLatency + transfer_ps(4e6)), 1.0);
}

TEST_F(NetworkTest, IndependentFlowsDoNotSlowEachOther) {
  // 0 -> 1 and 2 -> 3 share no link: each runs at full speed.
  Simulator sim;
  Network net(sim, cluster_, {0.0});
  Recorder rec(sim);
  net.start_flow(0, 1, 1e6, 0, &rec, 0);
  net.start_flow(2, 3, 1e6, 0, &rec, 1);
  sim.run();
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(kPathLatency + transfer_ps(1e6)), 1.0);
  EXPECT_EQ(rec.finish[0], rec.finish[1]);
}

TEST_F(NetworkTest, CountsBytesAndBusyTimePerLink) {
  // 1 MB then, after it finished, another 1 MB from the same source: the source's uplink carried 2 MB and was
  // busy for two transfer times (not during the latencies in between).
  Simulator sim;
  Network net(sim, cluster_, {0.0});
  struct Chain final : FlowListener {
    Network* net = nullptr;
    int done = 0;
    void on_flow_done(std::uint64_t) override {
      if (++done == 1) net->start_flow(0, 2, 1e6, 0, this, 1);
    }
  } chain;
  chain.net = &net;
  net.start_flow(0, 1, 1e6, 0, &chain, 0);
  sim.run();
  EXPECT_EQ(chain.done, 2);
  std::vector<std::uint32_t> path;
  cluster_.route(0, 1, 0, path);
  const std::uint32_t uplink = path.front();
  EXPECT_DOUBLE_EQ(net.link_counters()[uplink].bytes, 2e6);
  EXPECT_NEAR(static_cast<double>(net.link_counters()[uplink].busy_ps), 2.0 * transfer_ps(1e6), 2.0);
  EXPECT_EQ(net.stats().num_flows, 2u);
}

TEST_F(NetworkTest, SelfTransferFinishesAtOnceWithoutTouchingLinks) {
  Simulator sim;
  Network net(sim, cluster_, {0.0});
  Recorder rec(sim);
  net.start_flow(3, 3, 1e9, 0, &rec, 0);
  sim.run();
  EXPECT_EQ(rec.finish[0], 0);
  for (const auto& c : net.link_counters()) EXPECT_EQ(c.bytes, 0.0);
}

TEST_F(NetworkTest, CompletionWindowErrsLateButStaysClose) {
  // Flows of many sizes into one GPU finish at many instants. With a window, each flow may finish late (it
  // holds its share until the window closes), never early, and the last finish moves by at most a few windows.
  auto run = [&](double epsilon) {
    Simulator sim;
    Network net(sim, cluster_, {epsilon});
    Recorder rec(sim);
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < 50; ++k)
        net.start_flow(i, 3, 1e5 * (1 + k + i * 0.37), 0, &rec, static_cast<std::uint64_t>(i * 50 + k));
    }
    sim.run();
    return std::make_pair(rec.finish, net.stats().num_recomputations);
  };
  const auto [exact, exact_events] = run(0.0);
  const auto [windowed, windowed_events] = run(0.01);
  const TimePs exact_last = *std::max_element(exact.begin(), exact.end());
  const TimePs windowed_last = *std::max_element(windowed.begin(), windowed.end());
  std::printf("exact: %llu recomputations, last finish %lld ps; epsilon 0.01: %llu, %lld ps\n",
              static_cast<unsigned long long>(exact_events), static_cast<long long>(exact_last),
              static_cast<unsigned long long>(windowed_events), static_cast<long long>(windowed_last));
  EXPECT_LT(windowed_events, exact_events);
  // All bytes go through GPU 3's port, so the exact last finish is latency + total bytes / bandwidth, and the
  // windowed run can never beat it.
  EXPECT_GE(windowed_last, exact_last - 1);
  EXPECT_LE(static_cast<double>(windowed_last), static_cast<double>(exact_last) * 1.02);
}

// The communication kernels' bandwidth limit: a per-GPU cap on the total send and the total receive rate.
constexpr double kLimit = 40e9;  // below the 100 GB/s ports
TimePs limited_ps(double bytes) {
  return std::llround(bytes / kLimit * 1e12);
}

TEST_F(NetworkTest, ALimitBelowTheLinksSetsTheRate) {
  // 1 MB from GPU 0 to GPU 1 with a 40 GB/s limit: the links could carry 100 GB/s, the kernel drives 40, so the
  // transfer takes 1 MB / 40 GB/s = 25 us after the same 2 us of latency (the limit adds none).
  Simulator sim;
  Network net(sim, cluster_, {0.0, kLimit});
  Recorder rec(sim);
  net.start_flow(0, 1, 1e6, 0, &rec, 0);
  sim.run();
  const TimePs expected = kPathLatency + limited_ps(1e6);
  std::printf("Expectation: %lld ps / Actual result: %lld ps\n", static_cast<long long>(expected),
              static_cast<long long>(rec.finish[0]));
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(expected), 1.0);
  // The virtual links come after the cluster's and are not counted.
  EXPECT_EQ(net.num_links(), cluster_.num_links() + std::size_t{2} * 4);  // two per GPU
  EXPECT_EQ(net.link_counters().size(), cluster_.num_links());
}

TEST_F(NetworkTest, FlowsFromOneGpuShareItsLimitWhateverLinksTheyTake) {
  // 0 -> 1 and 0 -> 2, 1 MB each, 40 GB/s limit: GPU 0's uplink (100 GB/s) could give each 50, but the limit is
  // on GPU 0's total send rate, so each gets 20 GB/s: 1 MB / 20 GB/s = 50 us, both finishing together.
  Simulator sim;
  Network net(sim, cluster_, {0.0, kLimit});
  Recorder rec(sim);
  net.start_flow(0, 1, 1e6, 0, &rec, 0);
  net.start_flow(0, 2, 1e6, 0, &rec, 1);
  sim.run();
  const TimePs expected = kPathLatency + limited_ps(2e6);
  std::printf("Expectation: %lld ps / Actual result: %lld ps\n", static_cast<long long>(expected),
              static_cast<long long>(rec.finish[0]));
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(expected), 1.0);
  EXPECT_EQ(rec.finish[0], rec.finish[1]);
}

TEST_F(NetworkTest, FlowsIntoOneGpuShareItsReceiveLimit) {
  // 0 -> 2 and 1 -> 2 with the limit: GPU 2 receives 40 GB/s in all, 20 each, while 2 -> 3 at the same time
  // sends alone at the full 40 (sending and receiving are separate limits).
  Simulator sim;
  Network net(sim, cluster_, {0.0, kLimit});
  Recorder rec(sim);
  net.start_flow(0, 2, 1e6, 0, &rec, 0);
  net.start_flow(1, 2, 1e6, 0, &rec, 1);
  net.start_flow(2, 3, 1e6, 0, &rec, 2);
  sim.run();
  EXPECT_NEAR(static_cast<double>(rec.finish[0]), static_cast<double>(kPathLatency + limited_ps(2e6)), 1.0);
  EXPECT_EQ(rec.finish[0], rec.finish[1]);
  EXPECT_NEAR(static_cast<double>(rec.finish[2]), static_cast<double>(kPathLatency + limited_ps(1e6)), 1.0);
}

TEST_F(NetworkTest, ALimitAboveTheLinksOrZeroChangesNothing) {
  // The same skewed traffic with no limit, a zero limit and a limit above every port: identical trajectories.
  auto run = [&](double limit) {
    Simulator sim;
    Network net(sim, cluster_, {0.0, limit});
    Recorder rec(sim);
    for (int i = 0; i < 4; ++i) {
      for (int k = 0; k < 5; ++k) {
        net.start_flow(i, (i + k) % 4, 1e5 * (1 + k), 0, &rec, static_cast<std::uint64_t>(i) * 5 + k);
      }
    }
    sim.run();
    return std::make_pair(rec.finish, net.stats().fingerprint);
  };
  const auto none = run(0.0);
  EXPECT_EQ(run(0.0), none);
  EXPECT_EQ(run(1e15), none);
  Simulator sim;
  EXPECT_EQ(Network(sim, cluster_, {0.0, 0.0}).num_links(), cluster_.num_links());
}

TEST_F(NetworkTest, RouteAppendsTheVirtualLinksOnlyWithALimit) {
  Simulator sim;
  std::vector<std::uint32_t> physical;
  cluster_.route(1, 3, 0, physical);
  std::vector<std::uint32_t> path;
  Network(sim, cluster_, {0.0, 0.0}).route(1, 3, 0, path);
  EXPECT_EQ(path, physical);
  path.clear();
  const Network limited(sim, cluster_, {0.0, kLimit});
  limited.route(1, 3, 0, path);
  ASSERT_EQ(path.size(), physical.size() + 2);
  const auto base = static_cast<std::uint32_t>(cluster_.num_links());
  EXPECT_EQ(path[path.size() - 2], base + 2 * 1);      // GPU 1's egress
  EXPECT_EQ(path[path.size() - 1], base + 2 * 3 + 1);  // GPU 3's ingress
  EXPECT_TRUE(limited.is_virtual(path.back()));
  EXPECT_FALSE(limited.is_virtual(path.front()));
  path.clear();
  limited.route(2, 2, 0, path);
  EXPECT_TRUE(path.empty());
}

TEST_F(NetworkTest, ANegativeOrInfiniteLimitIsAnError) {
  Simulator sim;
  EXPECT_THROW(Network(sim, cluster_, {0.0, -1.0}), std::invalid_argument);
  EXPECT_THROW(Network(sim, cluster_, {0.0, std::numeric_limits<double>::infinity()}), std::invalid_argument);
  EXPECT_THROW(Network(sim, cluster_, {0.0, std::numeric_limits<double>::quiet_NaN()}), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim::network
