#include "sim/step/executor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include <yaml-cpp/yaml.h>

#include "../test_clusters.hpp"
#include "topologies/cluster.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::sim::step {
namespace {

// Four GPUs on one crossbar, 100 GB/s ports, 0.5 us per hop: a transfer between two GPUs pays 1 us of latency,
// then 10 us per MB alone on its links.
const topologies::Cluster& crossbar() {
  static const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  return cluster;
}

constexpr TimePs kUs = 1'000'000;  // picoseconds per microsecond

// One transfer of `bytes` from `src` to `dst`.
int add_transfer(TaskGraph& graph, int src, int dst, double bytes) {
  CollectiveSpec spec;
  spec.signature = std::to_string(src) + "->" + std::to_string(dst) + ":" + std::to_string(bytes);
  spec.graph.add_transfer(src, dst, bytes);
  return graph.add_collective_spec(std::move(spec));
}

TEST(Executor, StreamsRunInOrderAndOverlapEachOther) {
  // Lane 0: compute A (10 us) then B (5 us) then D (2 us, also waiting for C); comm C, a 1 MB transfer
  // (1 + 10 = 11 us), runs beside A. D starts when both B (15 us) and C (11 us) are done: at 15 us.
  TaskGraph graph;
  const TaskId a = graph.add_compute(0, 0, "A", "compute", 10 * kUs);
  const TaskId b = graph.add_compute(0, 0, "B", "compute", 5 * kUs);
  const TaskId c = graph.add_collective(0, 1, "C", "comm", add_transfer(graph, 0, 1, 1e6));
  const TaskId d = graph.add_compute(0, 0, "D", "compute", 2 * kUs);
  graph.add_dependency(c, d);
  const ExecutionResult r = execute(crossbar(), graph);
  EXPECT_EQ(r.timings[a].start, 0);
  EXPECT_EQ(r.timings[b].start, 10 * kUs);
  EXPECT_EQ(r.timings[c].start, 0);
  EXPECT_EQ(r.timings[c].end, 11 * kUs);
  EXPECT_EQ(r.timings[d].start, 15 * kUs);
  EXPECT_EQ(r.makespan, 17 * kUs);
  // B released D (it finished last), A released B.
  EXPECT_EQ(r.critical_path, (std::vector<TaskId>{a, b, d}));
}

TEST(Executor, ADependencyThatFinishesLastIsOnTheCriticalPath) {
  // The same, with C made 3 MB (31 us): D now waits for C, and the chain is C then D.
  TaskGraph graph;
  graph.add_compute(0, 0, "A", "compute", 10 * kUs);
  graph.add_compute(0, 0, "B", "compute", 5 * kUs);
  const TaskId c = graph.add_collective(0, 1, "C", "comm", add_transfer(graph, 0, 1, 3e6));
  const TaskId d = graph.add_compute(0, 0, "D", "compute", 2 * kUs);
  graph.add_dependency(c, d);
  const ExecutionResult r = execute(crossbar(), graph);
  EXPECT_EQ(r.timings[d].start, 31 * kUs);
  EXPECT_EQ(r.makespan, 33 * kUs);
  EXPECT_EQ(r.critical_path, (std::vector<TaskId>{c, d}));
}

TEST(Executor, ConcurrentCollectivesShareLinks) {
  // Two lanes each send 1 MB from GPU 0 to GPU 1 at time 0: they share GPU 0's port, 50 GB/s each, so both take
  // 1 + 20 = 21 us instead of 11.
  for (const bool memoize : {true, false}) {
    TaskGraph graph;
    const int spec = add_transfer(graph, 0, 1, 1e6);
    const TaskId x = graph.add_collective(0, 1, "x", "comm", spec);
    const TaskId y = graph.add_collective(1, 1, "y", "comm", spec);
    ExecutorOptions options;
    options.memoize = memoize;
    const ExecutionResult r = execute(crossbar(), graph, options);
    EXPECT_EQ(r.timings[x].end, 21 * kUs) << memoize;
    EXPECT_EQ(r.timings[y].end, 21 * kUs) << memoize;
    EXPECT_EQ(r.num_collectives_memoized, 0);
  }
}

TEST(Executor, RepeatedCollectivesAreMemoizedWithTheSameTimes) {
  // Three identical transfers one after another on one stream: the first is played (11 us) and measured clean,
  // the others take its duration without touching the network. Playing all three gives the same times.
  ExecutionResult results[2];
  for (const bool memoize : {true, false}) {
    TaskGraph graph;
    const int spec = add_transfer(graph, 2, 3, 1e6);
    for (int i = 0; i < 3; ++i) graph.add_collective(0, 1, "t" + std::to_string(i), "comm", spec);
    ExecutorOptions options;
    options.memoize = memoize;
    results[memoize ? 0 : 1] = execute(crossbar(), graph, options);
  }
  EXPECT_EQ(results[0].makespan, 33 * kUs);
  EXPECT_EQ(results[1].makespan, 33 * kUs);
  EXPECT_EQ(results[0].num_collectives_played, 1);
  EXPECT_EQ(results[0].num_collectives_memoized, 2);
  EXPECT_EQ(results[1].num_collectives_played, 3);
  EXPECT_EQ(results[0].network.num_flows, 1u);
  for (TaskId t = 0; t < 3; ++t) EXPECT_EQ(results[0].timings[t].end, results[1].timings[t].end);
}

TEST(Executor, ACollectiveWhoseLinksAreBusyIsPlayedNotMemoized) {
  // Lane 0 sends 0 -> 1 twice (the second from the cache, 11 to 22 us); lane 1 sends 0 -> 1 at 12 us, while the
  // cached one holds those links: it must be played, not taken from the cache.
  TaskGraph graph;
  const int spec = add_transfer(graph, 0, 1, 1e6);
  graph.add_collective(0, 1, "first", "comm", spec);
  const TaskId second = graph.add_collective(0, 1, "second", "comm", spec);
  const TaskId wait = graph.add_compute(1, 0, "wait", "compute", 12 * kUs);
  const TaskId third = graph.add_collective(1, 1, "third", "comm", spec);
  graph.add_dependency(wait, third);
  const ExecutionResult r = execute(crossbar(), graph);
  EXPECT_TRUE(r.timings[second].memoized);
  EXPECT_FALSE(r.timings[third].memoized);
  EXPECT_EQ(r.timings[third].start, 12 * kUs);
}

TEST(Executor, CollectivesOnDisjointLinksAreCleanTogether) {
  // Lanes 0 and 1 send 0 -> 1 and 2 -> 3 twice each, all starting together: the two pairs share no link, so each
  // first run is a clean measurement although the network is never idle, and each repeat is memoised.
  TaskGraph graph;
  const int a = add_transfer(graph, 0, 1, 1e6);
  const int b = add_transfer(graph, 2, 3, 1e6);
  for (int i = 0; i < 2; ++i) {
    graph.add_collective(0, 1, "a", "comm", a);
    graph.add_collective(1, 1, "b", "comm", b);
  }
  const ExecutionResult r = execute(crossbar(), graph);
  EXPECT_EQ(r.num_collectives_played, 2);
  EXPECT_EQ(r.num_collectives_memoized, 2);
  EXPECT_EQ(r.makespan, 22 * kUs);
}

TEST(Executor, ExposedTimeIsTheStreamNotCoveredByTheOther) {
  // Compute [0, 10) us and comm [0, 11) us on lane 0: comm busy 11 us, of which 1 us not hidden by compute.
  TaskGraph graph;
  graph.add_compute(0, 0, "A", "compute", 10 * kUs);
  graph.add_collective(0, 1, "C", "comm", add_transfer(graph, 0, 1, 1e6));
  const ExecutionResult r = execute(crossbar(), graph);
  const StreamTime comm = stream_time(graph, r, 0, 1, 0);
  EXPECT_EQ(comm.busy, 11 * kUs);
  EXPECT_EQ(comm.exposed, 1 * kUs);
  const StreamTime compute = stream_time(graph, r, 0, 0, 1);
  EXPECT_EQ(compute.busy, 10 * kUs);
  EXPECT_EQ(compute.exposed, 0);
}

TEST(Executor, SameGraphSameTimings) {
  TaskGraph graph;
  const int spec = add_transfer(graph, 0, 3, 2e6);
  for (int lane = 0; lane < 3; ++lane) {
    const TaskId c = graph.add_compute(lane, 0, "c", "compute", (lane + 1) * kUs);
    const TaskId x = graph.add_collective(lane, 1, "x", "comm", spec);
    graph.add_dependency(c, x);
  }
  const ExecutionResult a = execute(crossbar(), graph);
  const ExecutionResult b = execute(crossbar(), graph);
  ASSERT_EQ(a.timings.size(), b.timings.size());
  for (std::size_t t = 0; t < a.timings.size(); ++t) {
    EXPECT_EQ(a.timings[t].start, b.timings[t].start);
    EXPECT_EQ(a.timings[t].end, b.timings[t].end);
  }
  EXPECT_EQ(a.network.fingerprint, b.network.fingerprint);
}

TEST(Executor, CyclesAndBadReferencesAreErrors) {
  TaskGraph cyclic;
  const TaskId a = cyclic.add_compute(0, 0, "a", "compute", kUs);
  const TaskId b = cyclic.add_compute(1, 0, "b", "compute", kUs);
  cyclic.add_dependency(a, b);
  cyclic.add_dependency(b, a);
  EXPECT_THROW(execute(crossbar(), cyclic), std::logic_error);

  TaskGraph graph;
  EXPECT_THROW(graph.add_collective(0, 1, "x", "comm", 0), std::invalid_argument);
  EXPECT_THROW(graph.add_compute(0, 0, "x", "compute", -1), std::invalid_argument);
  EXPECT_THROW(graph.add_dependency(0, 1), std::invalid_argument);
  const int far = add_transfer(graph, 0, 9, 1e6);  // GPU 9 of a 4-GPU cluster
  graph.add_collective(0, 1, "far", "comm", far);
  EXPECT_THROW(execute(crossbar(), graph), std::invalid_argument);
}

TEST(Executor, TheCommBandwidthLimitCapsEachGpusSendRate) {
  // With a 40 GB/s limit per GPU, a 1 MB transfer takes 1 us of latency + 1 MB / 40 GB/s = 26 us instead of 11;
  // two collectives sending from GPU 0 at once (to GPUs 1 and 2, on different lanes) share GPU 0's 40 GB/s,
  // 20 each: 1 + 50 = 51 us. The limit 0 is no limit.
  ExecutorOptions options;
  options.comm_bandwidth_limit_bps = 40e9;
  TaskGraph one;
  const TaskId alone = one.add_collective(0, 1, "alone", "comm", add_transfer(one, 0, 1, 1e6));
  EXPECT_EQ(execute(crossbar(), one, options).timings[alone].end, 26 * kUs);
  options.comm_bandwidth_limit_bps = 0;
  EXPECT_EQ(execute(crossbar(), one, options).timings[alone].end, 11 * kUs);

  options.comm_bandwidth_limit_bps = 40e9;
  TaskGraph two;
  const TaskId x = two.add_collective(0, 1, "x", "comm", add_transfer(two, 0, 1, 1e6));
  const TaskId y = two.add_collective(1, 1, "y", "comm", add_transfer(two, 0, 2, 1e6));
  const ExecutionResult r = execute(crossbar(), two, options);
  EXPECT_EQ(r.timings[x].end, 51 * kUs);
  EXPECT_EQ(r.timings[y].end, 51 * kUs);
}

// Two nodes of two GPUs (NVLink inside a node, a NIC per GPU on one leaf between nodes): GPU 0 reaches GPU 1 over
// NVLink and GPU 2 over PCIe and the network, so those two routes share no link.
const topologies::Cluster& two_nodes() {
  static const topologies::Cluster cluster(topologies::parse_cluster(YAML::Load(R"(name: two-nodes
nodes: 2
gpus_per_node: 2
gpu: {name: test-gpu, bf16_tflops: 100, hbm_bandwidth: 1 TB/s, hbm_capacity: 16 GiB}
nvlink: {bandwidth: 100 GB/s}
pcie: {bandwidth: 32 GB/s}
nic: {per_node: 2, bandwidth: 100 Gb/s}
fabric:
  rail_optimized: false
  leaf: {down: 4}
)"),
                                                                     "two_nodes.yaml", std::nullopt));
  return cluster;
}

TEST(Executor, CollectivesSharingOnlyAGpusLimitAreNotCleanMeasurements) {
  // Lanes 0 and 1 send 0 -> 1 and 0 -> 2 twice each, all starting together. Without a limit the two share no link:
  // each first run is clean and each repeat memoised. With a 10 GB/s limit they share GPU 0's: neither first run is
  // a clean measurement, every run is played, and the times are those of playing everything.
  TaskGraph graph;
  const int a = add_transfer(graph, 0, 1, 1e6);
  const int b = add_transfer(graph, 0, 2, 1e6);
  for (int i = 0; i < 2; ++i) {
    graph.add_collective(0, 1, "a", "comm", a);
    graph.add_collective(1, 1, "b", "comm", b);
  }
  ExecutorOptions options;
  EXPECT_EQ(execute(two_nodes(), graph, options).num_collectives_memoized, 2);
  options.comm_bandwidth_limit_bps = 10e9;
  const ExecutionResult limited = execute(two_nodes(), graph, options);
  EXPECT_EQ(limited.num_collectives_memoized, 0);
  options.memoize = false;
  const ExecutionResult played = execute(two_nodes(), graph, options);
  for (TaskId t = 0; t < graph.size(); ++t) EXPECT_EQ(limited.timings[t].end, played.timings[t].end);
  // Each pair shares 10 GB/s, 5 each, so 1 MB takes at least 200 us per run.
  EXPECT_GE(limited.makespan, 400 * kUs);
}

TEST(Executor, RecordsTheBytesEachCollectiveSpecPutsOnEachLink) {
  // A spec of two transfers, 0 -> 1 (1 MB) and 0 -> 2 (2 MB), run twice (the second memoised): GPU 0's uplink
  // carries 3 MB per run, the switch's ports to GPUs 1 and 2 carry 1 and 2 MB. The record is per spec, by link.
  TaskGraph graph;
  CollectiveSpec spec;
  spec.signature = "fan-out";
  spec.graph.add_transfer(0, 1, 1.0);
  spec.graph.add_transfer(0, 2, 2.0);
  spec.bytes_per_unit = 1e6;
  const int s = graph.add_collective_spec(std::move(spec));
  graph.add_collective(0, 1, "first", "comm", s);
  const TaskId second = graph.add_collective(0, 1, "second", "comm", s);
  const int unused = add_transfer(graph, 2, 3, 1e6);
  ExecutorOptions options;
  options.comm_bandwidth_limit_bps = 1e15;  // virtual links must not show up in the record
  EXPECT_TRUE(execute(crossbar(), graph, options).link_bytes.empty()) << "not recorded unless asked";
  options.record_link_bytes = true;
  const ExecutionResult r = execute(crossbar(), graph, options);
  EXPECT_TRUE(r.timings[second].memoized);
  ASSERT_EQ(r.link_bytes.size(), 2u);
  EXPECT_TRUE(r.link_bytes[static_cast<std::size_t>(unused)].empty());
  std::vector<std::uint32_t> to1;
  std::vector<std::uint32_t> to2;
  crossbar().route(0, 1, 0, to1);
  crossbar().route(0, 2, 0, to2);
  ASSERT_EQ(to1.front(), to2.front());  // GPU 0's uplink
  std::vector<LinkBytes> expected = {{to1.front(), 3e6}, {to1.back(), 1e6}, {to2.back(), 2e6}};
  std::sort(expected.begin(), expected.end(), [](const LinkBytes& a, const LinkBytes& b) { return a.link < b.link; });
  const std::vector<LinkBytes>& got = r.link_bytes[static_cast<std::size_t>(s)];
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].link, expected[i].link);
    EXPECT_DOUBLE_EQ(got[i].bytes, expected[i].bytes);
  }
}

}  // namespace
}  // namespace moesim::sim::step
