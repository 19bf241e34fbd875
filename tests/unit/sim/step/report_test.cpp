#include "sim/step/report.hpp"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../test_clusters.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::step {
namespace {

// Four GPUs on one crossbar, 100 GB/s ports, 0.5 us per hop: a transfer between two GPUs crosses two NVLink links
// (GPU -> switch -> GPU), pays 1 us of latency, then 10 us per MB alone on its links.
const topologies::Cluster& crossbar() {
  static const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  return cluster;
}

constexpr TimePs kUs = 1'000'000;  // picoseconds per microsecond
constexpr double kCapacity = 100e9;

// The trace's counters as points (time in ps, value), by track name, for the process named `process`.
using Points = std::vector<std::pair<TimePs, double>>;
std::map<std::string, Points> counters_of(const YAML::Node& events, const std::string& process) {
  int pid = -1;
  for (const auto& e : events) {
    if (e["ph"].as<std::string>() == "M" && e["name"].as<std::string>() == "process_name" &&
        e["args"]["name"].as<std::string>() == process) {
      pid = e["pid"].as<int>();
    }
  }
  std::map<std::string, Points> out;
  for (const auto& e : events) {
    if (e["ph"].as<std::string>() != "C" || e["pid"].as<int>() != pid) continue;
    const auto ps = static_cast<TimePs>(std::llround(e["ts"].as<double>() * 1e6));
    out[e["name"].as<std::string>()].emplace_back(ps, e["args"]["util"].as<double>());
  }
  return out;
}

// The step's result for `graph`, run with link bytes recorded; one stage of one GPU.
StepResult run(const TaskGraph& graph, bool record = true) {
  StepResult result;
  result.graph = graph;
  ExecutorOptions options;
  options.record_link_bytes = record;
  result.execution = execute(crossbar(), graph, options);
  result.step_time = result.execution.makespan;
  return result;
}

YAML::Node written(const StepResult& result) {
  // One file per test: ctest runs the tests of this file in parallel processes.
  const std::string path = ::testing::TempDir() + "moesim_step_trace_" +
                           ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".json";
  write_step_trace(crossbar(), StepConfig{}, result, path);
  const YAML::Node trace = YAML::LoadFile(path);  // also: the file is valid JSON
  std::filesystem::remove(path);
  return trace["traceEvents"];
}

int add_transfer(TaskGraph& graph, int src, int dst, double bytes) {
  CollectiveSpec spec;
  spec.signature = std::to_string(src) + "->" + std::to_string(dst) + ":" + std::to_string(bytes);
  spec.graph.add_transfer(src, dst, bytes);
  return graph.add_collective_spec(std::move(spec));
}

TEST(StepTrace, ALinkCarryingOneCollectiveShowsItsMeanUtilisationThenZero) {
  // 1 MB from GPU 0 to GPU 1 over [0, 11) us, then 9 us of compute: the step lasts 20 us, in 2,000 bins of 10 ns,
  // so 11 us is a bin edge. Both links of the route carried 1 MB in 11 us (latency included, the trace's stated
  // approximation): utilisation 1 MB / (100 GB/s x 11 us) = 0.909 from 0 to 11 us, then 0. The NVLink mean over
  // the two links that carried anything is the same.
  TaskGraph graph;
  const TaskId c = graph.add_collective(0, 1, "C", "comm", add_transfer(graph, 0, 1, 1e6));
  const TaskId d = graph.add_compute(0, 0, "D", "compute", 9 * kUs);
  graph.add_dependency(c, d);
  const StepResult result = run(graph);
  ASSERT_EQ(result.execution.timings[c].end, 11 * kUs);
  ASSERT_EQ(result.execution.makespan, 20 * kUs);

  const auto counters = counters_of(written(result), "network (link utilisation)");
  std::vector<std::uint32_t> route;
  crossbar().route(0, 1, 0, route);
  ASSERT_EQ(route.size(), 2u);
  const double expected = 1e6 / (kCapacity * 11e-6);
  std::printf("Expectation: %.12f / Actual result: %.12f\n", expected,
              counters.count("nvlink: mean of 2 links") ? counters.at("nvlink: mean of 2 links").front().second : -1.0);
  // Both links carried the same bytes; ties go to the lower link index.
  std::sort(route.begin(), route.end());
  const std::vector<std::string> names = {"nvlink: mean of 2 links", "busiest 1: " + crossbar().link_name(route[0]),
                                          "busiest 2: " + crossbar().link_name(route[1])};
  EXPECT_EQ(counters.size(), names.size());
  for (const std::string& name : names) {
    ASSERT_EQ(counters.count(name), 1u) << name;
    const Points& points = counters.at(name);
    ASSERT_EQ(points.size(), 2u) << name;
    EXPECT_EQ(points[0].first, 0);
    EXPECT_NEAR(points[0].second, expected, 1e-12) << name;
    EXPECT_EQ(points[1].first, 11 * kUs);
    EXPECT_EQ(points[1].second, 0.0);
  }
}

TEST(StepTrace, CountersKeepEveryLinksBytesWhateverTheBins) {
  // 300 collectives of 0.1 MB (2 us each; all but the first memoised) alternating with 0.7 us of compute on one
  // stream, and a 1 MB transfer 2 -> 3 at the start: bin edges (the step / 2,000) fall inside collectives. The
  // integral of each busiest link's counter times its capacity gives back its bytes; the 0 -> 1 links carried
  // 30 MB, the 2 -> 3 links 1 MB.
  TaskGraph graph;
  const int small = add_transfer(graph, 0, 1, 1e5);
  for (int i = 0; i < 300; ++i) {
    graph.add_collective(0, 1, "c", "comm", small);
    graph.add_compute(0, 1, "k", "compute", 700'000);
  }
  graph.add_collective(1, 1, "big", "comm", add_transfer(graph, 2, 3, 1e6));
  const StepResult result = run(graph);
  EXPECT_EQ(result.execution.num_collectives_memoized, 299);
  const auto counters = counters_of(written(result), "network (link utilisation)");
  int num_busiest = 0;
  for (const auto& [name, points] : counters) {
    ASSERT_FALSE(points.empty());
    EXPECT_LE(points.size(), static_cast<std::size_t>(kMaxTraceBins) + 1) << name;
    EXPECT_EQ(points.back().second, 0.0) << name << ": ends at 0";
    EXPECT_LE(points.back().first, result.execution.makespan) << name;
    double bytes = 0.0;
    for (std::size_t i = 0; i + 1 < points.size(); ++i) {
      EXPECT_LT(points[i].first, points[i + 1].first) << name;
      EXPECT_GE(points[i].second, 0.0) << name;
      EXPECT_LE(points[i].second, 1.0 + 1e-9) << name;
      bytes += points[i].second * kCapacity * static_cast<double>(points[i + 1].first - points[i].first) * 1e-12;
    }
    if (name.rfind("busiest", 0) != 0) continue;
    ++num_busiest;
    const double expected = name.rfind("busiest 1", 0) == 0 || name.rfind("busiest 2", 0) == 0 ? 3e7 : 1e6;
    EXPECT_NEAR(bytes, expected, expected * 1e-9) << name;
  }
  EXPECT_EQ(num_busiest, 4);  // every link that carried anything: two routes of two links
  EXPECT_EQ(counters.count("nvlink: mean of 4 links"), 1u);
}

TEST(StepTrace, NoNetworkProcessUnlessLinkBytesWereRecorded) {
  TaskGraph graph;
  graph.add_collective(0, 1, "C", "comm", add_transfer(graph, 0, 1, 1e6));
  auto has_network = [](const YAML::Node& events) {
    for (const auto& e : events) {
      if (e["ph"].as<std::string>() == "M" && e["name"].as<std::string>() == "process_name" &&
          e["args"]["name"].as<std::string>() == "network (link utilisation)") {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(has_network(written(run(graph))));
  EXPECT_FALSE(has_network(written(run(graph, false))));
}

}  // namespace
}  // namespace moesim::sim::step
