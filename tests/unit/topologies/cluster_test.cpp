#include "topologies/cluster.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/config.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::topologies {
namespace {

constexpr const char* kGpu = "gpu: {name: g, bf16_tflops: 100, hbm_bandwidth: 1 TB/s, hbm_capacity: 16 GiB}\n";

ClusterConfig parse_text(const std::string& text, const std::string& source = "test.yaml") {
  return parse_cluster(load_yaml_text(text, source), source, std::nullopt);
}

std::vector<std::uint32_t> route(const Cluster& cluster, int src, int dst, std::uint64_t salt = 0) {
  std::vector<std::uint32_t> path;
  cluster.route(src, dst, salt, path);
  return path;
}

std::vector<LinkKind> kinds(const Cluster& cluster, const std::vector<std::uint32_t>& path) {
  std::vector<LinkKind> out;
  for (std::uint32_t link_idx : path) out.push_back(cluster.link(link_idx).kind);
  return out;
}

std::string describe(const Cluster& cluster, const std::vector<std::uint32_t>& path) {
  std::string out;
  for (std::uint32_t link_idx : path) out += "\n  " + cluster.link_name(link_idx);
  return out;
}

// A route is a chain of links from the source GPU to the destination GPU that visits no vertex twice and passes
// through at most one other GPU: the PXN proxy, reached by the first two (NVLink) links.
void expect_valid_route(const Cluster& cluster, int src, int dst, const std::vector<std::uint32_t>& path) {
  ASSERT_FALSE(path.empty()) << src << " -> " << dst;
  EXPECT_EQ(cluster.link(path.front()).src, cluster.gpu_vertex(src));
  EXPECT_EQ(cluster.link(path.back()).dst, cluster.gpu_vertex(dst));
  std::set<std::uint32_t> seen{cluster.link(path.front()).src};
  for (std::size_t i = 0; i < path.size(); ++i) {
    const Link& link = cluster.link(path[i]);
    if (i + 1 < path.size()) {
      EXPECT_EQ(link.dst, cluster.link(path[i + 1]).src) << "broken chain" << describe(cluster, path);
      const bool is_gpu = cluster.vertex(link.dst).kind == VertexKind::kGpu;
      EXPECT_TRUE(!is_gpu || (i == 1 && link.kind == LinkKind::kNvLink)) << "GPU transit" << describe(cluster, path);
    }
    EXPECT_TRUE(seen.insert(link.dst).second) << "loop" << describe(cluster, path);
  }
}

TEST(Cluster, VerticesComeInOrderWithReadableNames) {
  // dgx-h100, 2 nodes: 16 GPUs, then 2 NVSwitches, then 16 NICs, then 8 leaves and 4 spines.
  const Cluster cluster(load_cluster("dgx-h100", 2));
  EXPECT_EQ(cluster.num_gpus(), 16);
  EXPECT_EQ(cluster.vertex(cluster.gpu_vertex(11)).name, "n1.gpu3");
  EXPECT_EQ(cluster.vertex(cluster.gpu_vertex(11)).gpu_idx, 11);
  EXPECT_EQ(cluster.vertex(16).name, "nvl0");
  EXPECT_EQ(cluster.vertex(17).kind, VertexKind::kNvSwitch);
  EXPECT_EQ(cluster.vertex(18).name, "n0.nic0");
  EXPECT_EQ(cluster.vertex(18 + 8 + 2).name, "n1.nic2");
  EXPECT_EQ(cluster.vertex(34).name, "leaf0");
  EXPECT_EQ(cluster.vertex(34 + 8 + 3).name, "spine3");
  EXPECT_EQ(cluster.num_vertices(), 34u + 8 + 4);
  EXPECT_EQ(cluster.link_name(0), "n0.gpu0 -> nvl0");
  EXPECT_EQ(cluster.node_of(11), 1);
  EXPECT_EQ(cluster.local_idx(11), 3);
  EXPECT_EQ(cluster.domain_of(11), 1);
  // With several planes, switch names carry their plane.
  const Cluster h800(load_cluster("h800", 2));
  EXPECT_EQ(h800.vertex(34).name, "p0.leaf0");
  EXPECT_EQ(h800.vertex(34 + 2 * 2).name, "p2.leaf0");
  EXPECT_EQ(h800.vertex(34 + 2 * 2 + 1).name, "p2.spine0");
}

TEST(Cluster, LinksComeInReversePairsWithTheirSpecs) {
  const ClusterConfig config = load_cluster("h800", 2);
  const Cluster cluster(config);
  ASSERT_EQ(cluster.num_links() % 2, 0u);
  int per_kind[kNumLinkKinds] = {};
  for (std::uint32_t k = 0; k < cluster.num_links(); k += 2) {
    const Link& forward = cluster.link(k);
    const Link& reverse = cluster.link(k + 1);
    EXPECT_EQ(forward.src, reverse.dst);
    EXPECT_EQ(forward.dst, reverse.src);
    EXPECT_EQ(forward.kind, reverse.kind);
    EXPECT_DOUBLE_EQ(forward.capacity_bps, reverse.capacity_bps);
    per_kind[static_cast<int>(forward.kind)] += 2;
  }
  // Every GPU has one NVLink port and one PCIe link; every NIC one cable to its leaf; 8 planes x 1 leaf x 32
  // uplinks.
  EXPECT_EQ(per_kind[static_cast<int>(LinkKind::kNvLink)], 2 * 16);
  EXPECT_EQ(per_kind[static_cast<int>(LinkKind::kPcie)], 2 * 16);
  EXPECT_EQ(per_kind[static_cast<int>(LinkKind::kNic)], 2 * 16);
  EXPECT_EQ(per_kind[static_cast<int>(LinkKind::kFabric)], 2 * 8 * 32);
  // Each link carries its kind's spec; capacity is bandwidth x efficiency.
  for (const Link& link : cluster.links()) {
    EXPECT_DOUBLE_EQ(link.capacity_bps, link.bandwidth_bps * link.efficiency);
    const LinkSpec& spec = link.kind == LinkKind::kNvLink ? static_cast<const LinkSpec&>(config.nvlink)
                           : link.kind == LinkKind::kPcie ? config.pcie
                           : link.kind == LinkKind::kNic  ? static_cast<const LinkSpec&>(config.nic)
                                                          : config.fabric.link;
    EXPECT_DOUBLE_EQ(link.bandwidth_bps, spec.bandwidth_bps);
    EXPECT_EQ(link.latency_ps, spec.latency_ps);
    EXPECT_EQ(link.overhead_ps, spec.overhead_ps);
  }
  EXPECT_STREQ(link_kind_name(LinkKind::kNvLink), "nvlink");
  EXPECT_STREQ(link_kind_name(LinkKind::kFabric), "fabric");
}

TEST(Cluster, RailOptimisedLeavesTakeOneRailAndEveryLeafReachesEverySpine) {
  // dgx-h100, 2 nodes: NIC i of both nodes sits on leaf i; 32 uplinks over 4 spines are 8 parallel links each.
  const Cluster cluster(load_cluster("dgx-h100", 2));
  std::vector<std::vector<int>> leaf_to_spine(8, std::vector<int>(4, 0));
  for (const Link& link : cluster.links()) {
    const Vertex& src = cluster.vertex(link.src);
    const Vertex& dst = cluster.vertex(link.dst);
    if (link.kind == LinkKind::kNic && src.kind == VertexKind::kNic) {
      const std::string rail = src.name.substr(src.name.find(".nic") + 4);
      EXPECT_EQ(dst.name, "leaf" + rail) << src.name;
    }
    if (link.kind == LinkKind::kFabric && src.name.starts_with("leaf")) {
      ++leaf_to_spine[std::stoul(src.name.substr(4))][std::stoul(dst.name.substr(5))];
    }
  }
  for (const auto& spines : leaf_to_spine) {
    for (int parallel : spines) EXPECT_EQ(parallel, 32 / 4);
  }
}

TEST(Cluster, NonRailOptimisedNicsFillLeavesNodeMajor) {
  // 4 nodes x 2 NICs on leaves of 4 ports: n0 and n1 share leaf0, n2 and n3 leaf1; one spine joins them.
  const Cluster cluster(parse_text(std::string("nodes: 4\ngpus_per_node: 2\n") + kGpu +
                                   "nvlink: {bandwidth: 100 GB/s}\npcie: {bandwidth: 32 GB/s}\n"
                                   "nic: {bandwidth: 100 Gb/s}\n"
                                   "fabric: {rail_optimized: false, leaf: {down: 4, up: 2}, spine: {down: 4}}\n"));
  for (const Link& link : cluster.links()) {
    const Vertex& src = cluster.vertex(link.src);
    if (link.kind != LinkKind::kNic || src.kind != VertexKind::kNic) continue;
    const int node_idx = std::stoi(src.name.substr(1));
    EXPECT_EQ(cluster.vertex(link.dst).name, node_idx < 2 ? "leaf0" : "leaf1") << src.name;
  }
}

TEST(Cluster, SharedAndMultipleNicsGetOnePcieLinkPerGpu) {
  const std::string head = std::string("nodes: 2\ngpus_per_node: 8\n") + kGpu +
                           "nvlink: {bandwidth: 100 GB/s}\npcie: {bandwidth: 32 GB/s}\n";
  const std::string fabric = "fabric: {rail_optimized: false, leaf: {down: 32}}\n";
  // 2 NICs per 8 GPUs: GPUs 0-3 share NIC 0, GPUs 4-7 NIC 1.
  const Cluster shared(parse_text(head + "nic: {per_node: 2, bandwidth: 400 Gb/s}\n" + fabric));
  std::multiset<std::string> pcie;
  for (const Link& link : shared.links()) {
    if (link.kind == LinkKind::kPcie && link.src < 8) pcie.insert(shared.link_name(&link - shared.links().data()));
  }
  EXPECT_EQ(pcie.size(), 8u);
  EXPECT_EQ(pcie.count("n0.gpu3 -> n0.nic0"), 1u);
  EXPECT_EQ(pcie.count("n0.gpu4 -> n0.nic1"), 1u);
  // 16 NICs per 8 GPUs: GPU l uses NICs 2l and 2l + 1.
  const Cluster doubled(parse_text(head + "nic: {per_node: 16, bandwidth: 400 Gb/s}\n" + fabric));
  pcie.clear();
  for (const Link& link : doubled.links()) {
    if (link.kind == LinkKind::kPcie && link.src == 3) pcie.insert(doubled.link_name(&link - doubled.links().data()));
  }
  EXPECT_EQ(pcie, (std::multiset<std::string>{"n0.gpu3 -> n0.nic6", "n0.gpu3 -> n0.nic7"}));
  // Routing still works: across nodes a GPU uses one of its own NICs, never a neighbour's through a NIC.
  for (const Cluster* cluster : {&shared, &doubled}) {
    for (int src = 0; src < cluster->num_gpus(); ++src) {
      for (int dst = 0; dst < cluster->num_gpus(); ++dst) {
        if (src != dst) expect_valid_route(*cluster, src, dst, route(*cluster, src, dst));
      }
    }
  }
}

TEST(Cluster, RejectsADisconnectedCluster) {
  // Two 8-GPU nodes, each its own NVLink domain, and no network between them.
  const ClusterConfig config = parse_text(
      std::string("nodes: 2\n") + kGpu + "nvlink: {bandwidth: 100 GB/s}\nfabric: {kind: none}\n", "islands.yaml");
  try {
    Cluster cluster(config);
    ADD_FAILURE() << "a disconnected cluster was accepted";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_TRUE(message.starts_with("islands.yaml: fabric: the cluster is not connected")) << message;
    EXPECT_NE(message.find("n1.gpu0 cannot reach n0.gpu0"), std::string::npos) << message;
  }
}

TEST(Cluster, SameNodeRoutesCrossTheNvSwitch) {
  // GPU -> NVSwitch -> GPU: exactly two NVLink links, whatever the salt.
  const Cluster cluster(load_cluster("dgx-h100", 2));
  for (std::uint64_t salt = 0; salt < 4; ++salt) {
    const std::vector<std::uint32_t> path = route(cluster, 1, 6, salt);
    EXPECT_EQ(kinds(cluster, path), (std::vector<LinkKind>{LinkKind::kNvLink, LinkKind::kNvLink}));
    EXPECT_EQ(cluster.vertex(cluster.link(path[0]).dst).name, "nvl0");
    expect_valid_route(cluster, 1, 6, path);
  }
  EXPECT_TRUE(route(cluster, 5, 5).empty());
}

TEST(Cluster, SameRailAcrossNodesStaysOnTheRailLeaf) {
  // n0.gpu3 -> n1.gpu3 in one unit: GPU -> NIC -> leaf3 -> NIC -> GPU, four links.
  const Cluster cluster(load_cluster("dgx-h100", 2));
  const std::vector<std::uint32_t> path = route(cluster, 3, 8 + 3);
  EXPECT_EQ(kinds(cluster, path),
            (std::vector<LinkKind>{LinkKind::kPcie, LinkKind::kNic, LinkKind::kNic, LinkKind::kPcie}))
      << describe(cluster, path);
  EXPECT_EQ(cluster.vertex(cluster.link(path[1]).dst).name, "leaf3");
  expect_valid_route(cluster, 3, 8 + 3, path);
}

TEST(Cluster, PxnCrossesNvLinkToTheDestinationsRail) {
  // n0.gpu0 -> n1.gpu3: the source's own NIC would need a spine (6 hops), the rail-3 GPU of its node is 4 hops
  // away, so the route first crosses NVLink to n0.gpu3: 2 + 4 = 6 links, through leaf3 only.
  const Cluster cluster(load_cluster("dgx-h100", 2));
  const std::vector<std::uint32_t> path = route(cluster, 0, 8 + 3);
  EXPECT_EQ(kinds(cluster, path), (std::vector<LinkKind>{LinkKind::kNvLink, LinkKind::kNvLink, LinkKind::kPcie,
                                                         LinkKind::kNic, LinkKind::kNic, LinkKind::kPcie}))
      << describe(cluster, path);
  EXPECT_EQ(cluster.link(path[1]).dst, cluster.gpu_vertex(3));
  expect_valid_route(cluster, 0, 8 + 3, path);
}

TEST(Cluster, WithoutPxnCrossRailTrafficClimbsToASpine) {
  // Same pair with fabric.pxn off: GPU -> NIC0 -> leaf0 -> spine -> leaf3 -> NIC3 -> GPU.
  ClusterConfig config = load_cluster("dgx-h100", 2);
  config.fabric.pxn = false;
  const Cluster cluster(config);
  const std::vector<std::uint32_t> path = route(cluster, 0, 8 + 3);
  EXPECT_EQ(kinds(cluster, path), (std::vector<LinkKind>{LinkKind::kPcie, LinkKind::kNic, LinkKind::kFabric,
                                                         LinkKind::kFabric, LinkKind::kNic, LinkKind::kPcie}))
      << describe(cluster, path);
  EXPECT_TRUE(cluster.vertex(cluster.link(path[2]).dst).name.starts_with("spine"));
  expect_valid_route(cluster, 0, 8 + 3, path);
}

TEST(Cluster, MultiPlaneCrossRailForwardsThroughTheProxyGpu) {
  // h800: n0.gpu0 has no path to plane 3, so it crosses NVLink to n0.gpu3, which reaches n1.gpu3 on plane 3's
  // leaf: 2 NVLink links, then PCIe, NIC, NIC, PCIe. That holds with PXN off too: there is no other way.
  for (const bool pxn : {true, false}) {
    ClusterConfig config = load_cluster("h800", 2);
    config.fabric.pxn = pxn;
    const Cluster cluster(config);
    const std::vector<std::uint32_t> path = route(cluster, 0, 8 + 3);
    EXPECT_EQ(kinds(cluster, path), (std::vector<LinkKind>{LinkKind::kNvLink, LinkKind::kNvLink, LinkKind::kPcie,
                                                           LinkKind::kNic, LinkKind::kNic, LinkKind::kPcie}))
        << describe(cluster, path);
    EXPECT_EQ(cluster.link(path[1]).dst, cluster.gpu_vertex(3));
    EXPECT_EQ(cluster.vertex(cluster.link(path[3]).dst).name, "p3.leaf0");
    expect_valid_route(cluster, 0, 8 + 3, path);
  }
}

TEST(Cluster, EcmpIsDeterministicAndSpreadsOverSpines) {
  // dgx-h100, 40 nodes: n0.gpu0 and n35.gpu0 share rail 0 but sit in different 32-node units, so the route is
  // GPU -> NIC -> leaf -> spine -> leaf -> NIC -> GPU, with a choice among 4 spines x 8 parallel links.
  const Cluster cluster(load_cluster("dgx-h100", 40));
  const int src = 0;
  const int dst = 35 * 8;
  std::set<std::uint32_t> spines;
  std::set<std::uint32_t> uplinks;
  for (std::uint64_t salt = 0; salt < 64; ++salt) {
    const std::vector<std::uint32_t> path = route(cluster, src, dst, salt);
    ASSERT_EQ(path.size(), 6u) << describe(cluster, path);
    expect_valid_route(cluster, src, dst, path);
    EXPECT_EQ(path, route(cluster, src, dst, salt));  // same salt, same route
    spines.insert(cluster.link(path[2]).dst);
    uplinks.insert(path[2]);
  }
  EXPECT_GT(spines.size(), 1u);
  EXPECT_GT(uplinks.size(), spines.size());  // parallel links are separate choices too
}

TEST(Cluster, PathLatencyAddsHopsAndTheLargestOverhead) {
  const ClusterConfig config = load_cluster("dgx-h100", 2);
  const Cluster cluster(config);
  // Over NVLink: two NVLink hops and one NVLink message overhead.
  const std::vector<std::uint32_t> local = route(cluster, 0, 1);
  EXPECT_EQ(cluster.path_latency(local.data(), local.size()), 2 * config.nvlink.latency_ps + config.nvlink.overhead_ps);
  // Same rail across nodes: two PCIe and two NIC hops; the NIC overhead (3 us) exceeds none other on the path.
  const std::vector<std::uint32_t> remote = route(cluster, 3, 11);
  EXPECT_EQ(cluster.path_latency(remote.data(), remote.size()),
            2 * config.pcie.latency_ps + 2 * config.nic.latency_ps + config.nic.overhead_ps);
  EXPECT_EQ(cluster.path_latency(nullptr, 0), 0);
}

TEST(Cluster, ThreeTierFabricRoutesThroughCores) {
  // 8 single-GPU nodes, 2 NICs per leaf: 4 leaves in 2 pods of 2, each pod with ceil(2 * 2 / 2) = 2 spines; one
  // core group per spine position, each of ceil(2 pods * 2 uplinks / 4 ports) = 1 core: 2 cores.
  const Cluster cluster(parse_text(std::string("nodes: 8\ngpus_per_node: 1\n") + kGpu +
                                   "nvlink: {domain_gpus: 1}\npcie: {bandwidth: 32 GB/s}\n"
                                   "nic: {bandwidth: 100 Gb/s}\n"
                                   "fabric:\n  rail_optimized: false\n  leaf: {down: 2, up: 2}\n"
                                   "  spine: {down: 2, up: 2}\n  core: {down: 4}\n  pod_leaves: 2\n"));
  EXPECT_EQ(cluster.num_vertices(), 8u + 8 + 4 + 4 + 2);
  EXPECT_EQ(cluster.num_links(), 2u * (8 + 8 + 4 * 2 + 4 * 2));
  // Core i joins spine position i of both pods (spines 0 and 2, or 1 and 3), with both uplinks of each.
  std::multiset<std::string> core_links;
  for (std::uint32_t link_idx = 0; link_idx < cluster.num_links(); ++link_idx) {
    if (cluster.vertex(cluster.link(link_idx).dst).name.starts_with("core"))
      core_links.insert(cluster.link_name(link_idx));
  }
  EXPECT_EQ(core_links,
            (std::multiset<std::string>{"spine0 -> core0", "spine0 -> core0", "spine2 -> core0", "spine2 -> core0",
                                        "spine1 -> core1", "spine1 -> core1", "spine3 -> core1", "spine3 -> core1"}));
  // Same leaf: 4 links; same pod: up to a spine, 6; other pod: up to a core, 8.
  EXPECT_EQ(route(cluster, 0, 1).size(), 4u);
  EXPECT_EQ(route(cluster, 0, 2).size(), 6u);
  const std::vector<std::uint32_t> far = route(cluster, 0, 7);
  EXPECT_EQ(far.size(), 8u) << describe(cluster, far);
  EXPECT_TRUE(cluster.vertex(cluster.link(far[3]).dst).name.starts_with("core")) << describe(cluster, far);
  for (int src = 0; src < 8; ++src) {
    for (int dst = 0; dst < 8; ++dst) {
      if (src != dst) expect_valid_route(cluster, src, dst, route(cluster, src, dst, 7));
    }
  }
}

// An oracle written independently of the routing tables: hops from GPU `src` to every GPU over the network alone,
// by a plain breadth-first search over (vertex, side) states. No GPU is crossed, and a NIC entered from its GPU
// leaves to the fabric while a NIC entered from the fabric leaves to a GPU. Unreachable GPUs get -1.
std::vector<int> network_hops_from(const Cluster& cluster, int src) {
  const std::size_t num_v = cluster.num_vertices();
  std::vector<std::vector<std::uint32_t>> out(num_v);
  for (const Link& link : cluster.links()) out[link.src].push_back(link.dst);
  std::vector<int> dist(2 * num_v, -1);  // state = vertex * 2 + (entered from the fabric ? 1 : 0)
  std::vector<std::size_t> queue{2 * cluster.gpu_vertex(src)};
  dist[queue[0]] = 0;
  for (std::size_t head = 0; head < queue.size(); ++head) {
    const std::size_t state = queue[head];
    const std::uint32_t v = static_cast<std::uint32_t>(state / 2);
    const VertexKind kind = cluster.vertex(v).kind;
    if (kind == VertexKind::kGpu && v != cluster.gpu_vertex(src)) continue;
    for (std::uint32_t next : out[v]) {
      const VertexKind next_kind = cluster.vertex(next).kind;
      bool allowed = false;
      if (kind == VertexKind::kGpu) allowed = next_kind == VertexKind::kNic;
      if (kind == VertexKind::kNic) {
        allowed = state % 2 == 0 ? next_kind == VertexKind::kSwitch : next_kind == VertexKind::kGpu;
      }
      if (kind == VertexKind::kSwitch) allowed = next_kind == VertexKind::kSwitch || next_kind == VertexKind::kNic;
      const std::size_t next_state = 2 * next + (kind == VertexKind::kSwitch && next_kind == VertexKind::kNic ? 1 : 0);
      if (allowed && dist[next_state] < 0) {
        dist[next_state] = dist[state] + 1;
        queue.push_back(next_state);
      }
    }
  }
  std::vector<int> hops(static_cast<std::size_t>(cluster.num_gpus()));
  for (int gpu_idx = 0; gpu_idx < cluster.num_gpus(); ++gpu_idx) {
    hops[static_cast<std::size_t>(gpu_idx)] = dist[2 * cluster.gpu_vertex(gpu_idx)];
  }
  hops[static_cast<std::size_t>(src)] = 0;
  return hops;
}

// Every ordered pair of GPUs of a small multi-node cluster of each preset has a valid route, large enough for the
// presets' spine tier to carry traffic (two units, or two NVL72 racks), and as short as the oracle says it must be:
// 2 NVLink hops in one domain; otherwise the source's own network distance where it has one and PXN is off, and
// else the nearest GPU of its domain (itself on a tie) plus 2 NVLink hops to reach it if that is another GPU.
struct PresetSize {
  const char* name;
  int nodes;
  bool pxn;
};

class EveryPair : public testing::TestWithParam<PresetSize> {};

TEST_P(EveryPair, IsRoutableOverAShortestPath) {
  ClusterConfig config = load_cluster(GetParam().name, GetParam().nodes);
  config.fabric.pxn = GetParam().pxn;
  const Cluster cluster(config);
  const int num_gpus = cluster.num_gpus();
  std::vector<std::vector<int>> hops;
  for (int src = 0; src < num_gpus; ++src) hops.push_back(network_hops_from(cluster, src));
  const auto network = [&](int src, int dst) {
    const int d = hops[static_cast<std::size_t>(src)][static_cast<std::size_t>(dst)];
    return d < 0 ? 1 << 20 : d;
  };
  const int domain_gpus = config.nvlink.domain_gpus;
  std::vector<std::uint32_t> path;
  for (int src = 0; src < num_gpus; ++src) {
    for (int dst = 0; dst < num_gpus; ++dst) {
      if (src == dst) continue;
      path.clear();
      cluster.route(src, dst, static_cast<std::uint64_t>(src * 31 + dst), path);
      expect_valid_route(cluster, src, dst, path);
      int expected = 2;
      if (cluster.domain_of(src) != cluster.domain_of(dst)) {
        int nearest = network(src, dst);
        const int first = cluster.domain_of(src) * domain_gpus;
        for (int p = first; p < first + domain_gpus; ++p) nearest = std::min(nearest, network(p, dst));
        const bool direct = !config.fabric.pxn && network(src, dst) < (1 << 20);
        expected = direct ? network(src, dst) : nearest + (network(src, dst) == nearest ? 0 : 2);
      }
      EXPECT_EQ(static_cast<int>(path.size()), expected) << src << " -> " << dst << describe(cluster, path);
      if (testing::Test::HasFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, EveryPair,
                         testing::Values(PresetSize{"dgx-h100", 34, true}, PresetSize{"dgx-h100", 34, false},
                                         PresetSize{"dgx-a100", 22, true}, PresetSize{"h800", 34, true},
                                         PresetSize{"h800", 34, false}, PresetSize{"gb200-nvl72", 36, true}),
                         [](const testing::TestParamInfo<PresetSize>& param_info) {
                           std::string name = param_info.param.name;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name + (param_info.param.pxn ? "_pxn" : "_direct");
                         });

TEST(Cluster, ThousandGpuCrossbarRoutesEveryPair) {
  // One 1024-GPU NVLink domain and no network: every route is GPU -> crossbar -> GPU.
  const Cluster cluster(parse_text(std::string("nodes: 1\ngpus_per_node: 1024\n") + kGpu +
                                   "nvlink: {bandwidth: 50 GB/s}\nfabric: {kind: none}\n"));
  EXPECT_EQ(cluster.num_vertices(), 1024u + 1);
  EXPECT_EQ(cluster.num_links(), 2u * 1024);
  std::vector<std::uint32_t> path;
  std::size_t total = 0;
  for (int src = 0; src < 1024; ++src) {
    for (int dst = 0; dst < 1024; ++dst) {
      path.clear();
      cluster.route(src, dst, 0, path);
      total += path.size();
      if (src != dst && (cluster.link(path[0]).src != cluster.gpu_vertex(src) ||
                         cluster.link(path[1]).dst != cluster.gpu_vertex(dst))) {
        FAIL() << src << " -> " << dst << describe(cluster, path);
      }
    }
  }
  EXPECT_EQ(total, 2u * 1024 * 1023);
}

TEST(Cluster, RoutesAgreeWhenTablesAreBuiltByManyThreads) {
  // Four threads route all pairs of a fresh cluster at once, racing to build the same tables; every route must
  // equal the one a single thread computes on another instance.
  const ClusterConfig config = load_cluster("dgx-h100", 34);
  const Cluster reference(config);
  const Cluster shared(config);
  const int num_gpus = reference.num_gpus();
  std::vector<std::vector<std::vector<std::uint32_t>>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int dst = 0; dst < num_gpus; ++dst) {
        for (int src = 0; src < num_gpus; src += 7)
          results[static_cast<std::size_t>(t)].push_back(route(shared, src, dst, 3));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::size_t i = 0;
  for (int dst = 0; dst < num_gpus; ++dst) {
    for (int src = 0; src < num_gpus; src += 7, ++i) {
      const std::vector<std::uint32_t> expected = route(reference, src, dst, 3);
      for (const auto& result : results) ASSERT_EQ(result[i], expected) << src << " -> " << dst;
    }
  }
}

TEST(Cluster, RouteRejectsGpusOutsideTheCluster) {
  const Cluster cluster(load_cluster("dgx-h100", 1));
  std::vector<std::uint32_t> path;
  EXPECT_THROW(cluster.route(0, 8, 0, path), std::out_of_range);
  EXPECT_THROW(cluster.route(-1, 0, 0, path), std::out_of_range);
}

}  // namespace
}  // namespace moesim::topologies
