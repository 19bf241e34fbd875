#include "sim/network/maxmin.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace moesim::sim::network {
namespace {

// A hand-written flow/link system in the shape MaxMinSolver expects.
struct System {
  std::vector<double> capacities;
  std::vector<std::vector<std::uint32_t>> paths;    // by flow
  std::vector<std::vector<std::uint32_t>> on_link;  // by link

  System(std::vector<double> caps, std::vector<std::vector<std::uint32_t>> flow_paths)
      : capacities(std::move(caps)), paths(std::move(flow_paths)), on_link(capacities.size()) {
    for (std::uint32_t f = 0; f < paths.size(); ++f) {
      for (std::uint32_t l : paths[f]) on_link[l].push_back(f);
    }
  }
  double capacity(std::uint32_t l) const { return capacities[l]; }
  const std::vector<std::uint32_t>& flows_on(std::uint32_t l) const { return on_link[l]; }
  const std::vector<std::uint32_t>& links_of(std::uint32_t f) const { return paths[f]; }
  double rate(std::uint32_t f) const { return kept_rates.at(f); }
  std::vector<double> kept_rates;  // rates of flows a partial solve leaves alone

  std::vector<double> solve() const {
    std::vector<std::uint32_t> flows(paths.size()), links(capacities.size());
    std::iota(flows.begin(), flows.end(), 0u);
    std::iota(links.begin(), links.end(), 0u);
    std::vector<double> rates;
    MaxMinSolver solver;
    solver.solve_system(*this, flows, links, rates);
    rates.resize(paths.size());
    return rates;
  }
};

TEST(MaxMin, TwoFlowsOnOneLinkShareItEqually) {
  // One link of capacity 10 and two flows: each gets 10 / 2 = 5.
  const System s({10.0}, {{0}, {0}});
  EXPECT_EQ(s.solve(), (std::vector<double>{5.0, 5.0}));
}

TEST(MaxMin, BottleneckElsewhereFreesCapacityForTheOthers) {
  // Link A (capacity 10) carries flows 0 and 1; link B (capacity 4) carries flows 1 and 2.
  // B is the bottleneck: its share is 4 / 2 = 2 < 10 / 2, so flows 1 and 2 get 2. Flow 0 then gets what
  // is left of A: 10 - 2 = 8.
  const System s({10.0, 4.0}, {{0}, {0, 1}, {1}});
  const auto r = s.solve();
  EXPECT_DOUBLE_EQ(r[0], 8.0);
  EXPECT_DOUBLE_EQ(r[1], 2.0);
  EXPECT_DOUBLE_EQ(r[2], 2.0);
}

TEST(MaxMin, ParkingLotGivesEveryFlowHalf) {
  // Three unit links in series; one long flow crosses all three and one short flow sits on each link.
  // Every link has two flows, so every flow gets 1 / 2, and every link is exactly full.
  const System s({1.0, 1.0, 1.0}, {{0, 1, 2}, {0}, {1}, {2}});
  for (double r : s.solve()) EXPECT_DOUBLE_EQ(r, 0.5);
}

TEST(MaxMin, UnequalCapacitiesFillInOrder) {
  // Link A (1) carries flows 0 and 1; link B (10) carries flows 1 and 2. A's share 0.5 is the smallest, so
  // flows 0 and 1 get 0.5; flow 2 gets the rest of B: 10 - 0.5 = 9.5.
  const System s({1.0, 10.0}, {{0}, {0, 1}, {1}});
  const auto r = s.solve();
  EXPECT_DOUBLE_EQ(r[0], 0.5);
  EXPECT_DOUBLE_EQ(r[1], 0.5);
  EXPECT_DOUBLE_EQ(r[2], 9.5);
}

TEST(MaxMin, ResultIsFeasibleAndEveryFlowHasASaturatedBottleneck) {
  // The defining property on a larger random system: no link over capacity, and every flow crosses a
  // saturated link on which it is among the fastest (so it cannot grow without slowing a slower flow).
  std::vector<double> caps;
  for (int l = 0; l < 20; ++l) caps.push_back(1.0 + (l * 7) % 5);
  std::vector<std::vector<std::uint32_t>> paths;
  for (std::uint32_t f = 0; f < 60; ++f) paths.push_back({f % 20, (f * 3 + 1) % 20, (f * 7 + 5) % 20});
  for (auto& p : paths) {
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
  }
  const System s(caps, paths);
  const auto r = s.solve();
  std::vector<double> load(caps.size(), 0.0);
  for (std::uint32_t f = 0; f < paths.size(); ++f) {
    for (auto l : paths[f]) load[l] += r[f];
  }
  for (std::size_t l = 0; l < caps.size(); ++l) EXPECT_LE(load[l], caps[l] * (1 + 1e-12));
  for (std::uint32_t f = 0; f < paths.size(); ++f) {
    bool has_bottleneck = false;
    for (auto l : paths[f]) {
      if (load[l] < caps[l] * (1 - 1e-9)) continue;
      bool fastest = true;
      for (auto g : s.on_link[l]) fastest = fastest && r[g] <= r[f] * (1 + 1e-9);
      has_bottleneck = has_bottleneck || fastest;
    }
    EXPECT_TRUE(has_bottleneck) << "flow " << f;
  }
}

TEST(MaxMin, AfterADepartureOnlyFlowsAtLeastAsFastAsItNeedSolving) {
  // Links A (cap 2), B (cap 10), C (cap 6). Flows: 0 on A, 1 on A+B, 2 on B, 3 on B+C, 4 on C.
  // Full solve: A's share 1 fixes flows 0 and 1 at 1; then C's share 3 < B's (10 - 1) / 2 = 4.5 fixes 3 and 4
  // at 3; flow 2 gets what is left of B: 10 - 1 - 3 = 6.
  const System full({2.0, 10.0, 6.0}, {{0}, {0, 1}, {1}, {1, 2}, {2}});
  const auto before = full.solve();
  EXPECT_EQ(before, (std::vector<double>{1.0, 1.0, 6.0, 3.0, 3.0}));
  // Flow 4 (rate 3) leaves. Flows slower than 3 (flows 0 and 1, at 1) keep their rates; solving only flows 2
  // and 3 on the residual capacities must equal a full solve without flow 4: B's remaining 9 shared by 2 and 3
  // gives 4.5 each, within C's capacity 6.
  System reduced({2.0, 10.0, 6.0}, {{0}, {0, 1}, {1}, {1, 2}});
  const auto expected = reduced.solve();
  reduced.kept_rates = before;
  std::vector<double> rates = before;
  MaxMinSolver solver;
  solver.solve_system(reduced, {2, 3}, {0, 1, 2}, rates);
  rates.resize(4);
  EXPECT_EQ(expected, (std::vector<double>{1.0, 1.0, 4.5, 4.5}));
  for (int f = 0; f < 4; ++f) EXPECT_DOUBLE_EQ(rates[f], expected[f]) << "flow " << f;
}

}  // namespace
}  // namespace moesim::sim::network
