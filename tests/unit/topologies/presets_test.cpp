#include "topologies/presets.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "common/units.hpp"
#include "topologies/cluster.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::topologies {
namespace {

struct Counts {
  int gpus = 0;
  int nvswitches = 0;
  int nics = 0;
  int switches = 0;
  int links = 0;
};

Counts count(const Cluster& cluster) {
  Counts counts;
  for (std::uint32_t v = 0; v < cluster.num_vertices(); ++v) {
    switch (cluster.vertex(v).kind) {
      case VertexKind::kGpu:
        ++counts.gpus;
        break;
      case VertexKind::kNvSwitch:
        ++counts.nvswitches;
        break;
      case VertexKind::kNic:
        ++counts.nics;
        break;
      case VertexKind::kSwitch:
        ++counts.switches;
        break;
    }
  }
  counts.links = static_cast<int>(cluster.num_links());
  return counts;
}

void expect_counts(const Counts& actual, const Counts& expected) {
  EXPECT_EQ(actual.gpus, expected.gpus);
  EXPECT_EQ(actual.nvswitches, expected.nvswitches);
  EXPECT_EQ(actual.nics, expected.nics);
  EXPECT_EQ(actual.switches, expected.switches);
  EXPECT_EQ(actual.links, expected.links);
}

// Each physical link is two directed links; per GPU there is one NVLink port, one PCIe link and one NIC cable.
int directed_links(int gpus, int leaves, int leaf_up) {
  return 2 * (3 * gpus + leaves * leaf_up);
}

TEST(Presets, ListsTheFourShippedClustersWithTheirDefaultSizes) {
  const std::vector<PresetInfo> presets = cluster_presets();
  ASSERT_EQ(presets.size(), 4u);
  // Default sizes: a 32-node DGX H100 scalable unit, a 20-node DGX A100 unit, 32 H800 nodes, 4 NVL72 racks of 18
  // compute trays.
  EXPECT_EQ(presets[0].name, "dgx-h100");
  EXPECT_EQ(presets[0].default_nodes, 32);
  EXPECT_EQ(presets[1].name, "dgx-a100");
  EXPECT_EQ(presets[1].default_nodes, 20);
  EXPECT_EQ(presets[2].name, "h800");
  EXPECT_EQ(presets[2].default_nodes, 32);
  EXPECT_EQ(presets[3].name, "gb200-nvl72");
  EXPECT_EQ(presets[3].default_nodes, 4 * 18);
  for (const PresetInfo& preset : presets) {
    EXPECT_FALSE(preset.summary.empty());
    EXPECT_TRUE(preset_yaml(preset.name).has_value());
    // Loading without a node count gives the listed default, and the graph builds.
    const ClusterConfig config = load_cluster(preset.name);
    EXPECT_EQ(config.num_nodes, preset.default_nodes);
    EXPECT_EQ(config.name, preset.name);
    EXPECT_EQ(config.source, "preset " + preset.name);
    EXPECT_NO_THROW(Cluster{config});
  }
  EXPECT_FALSE(preset_yaml("DGX-H100").has_value());  // names match exactly
}

TEST(Presets, DgxH100MatchesTheDatasheets) {
  const ClusterConfig config = load_cluster("dgx-h100");
  EXPECT_EQ(config.gpus_per_node, 8);
  EXPECT_DOUBLE_EQ(config.gpu.bf16_tflops, 989.4);
  EXPECT_DOUBLE_EQ(config.gpu.fp8_tflops, 1978.9);
  EXPECT_DOUBLE_EQ(config.gpu.hbm_bandwidth_bps, 3.35e12);
  EXPECT_DOUBLE_EQ(config.nvlink.bandwidth_bps, bytes_per_s_from_GBps(450));
  EXPECT_EQ(config.nvlink.domain_gpus, 8);
  EXPECT_DOUBLE_EQ(config.pcie.bandwidth_bps, bytes_per_s_from_GBps(64));
  EXPECT_EQ(config.nic.per_node, 8);
  EXPECT_DOUBLE_EQ(config.nic.bandwidth_bps, bytes_per_s_from_gbps(400));
  EXPECT_TRUE(config.fabric.rail_optimized);
  EXPECT_EQ(config.fabric.leaf.down, 32);
  EXPECT_EQ(config.fabric.leaf.up, 32);
  EXPECT_EQ(config.fabric.spine->down, 64);
  // The placeholder latencies the brief fixes until calibration.
  EXPECT_EQ(config.nvlink.latency_ps, time_from_ns(150));
  EXPECT_EQ(config.nvlink.overhead_ps, time_from_us(2));
  EXPECT_EQ(config.pcie.latency_ps, time_from_ns(250));
  EXPECT_EQ(config.nic.latency_ps, time_from_ns(500));
  EXPECT_EQ(config.nic.overhead_ps, time_from_us(3));
  EXPECT_EQ(config.fabric.link.latency_ps, time_from_ns(150));
}

TEST(Presets, DgxH100GraphHasOneLeafPerRailAndEnoughSpines) {
  // 2 nodes: 16 GPUs, 2 NVSwitches, 16 NICs; both nodes fit one 32-node unit, so 8 leaves (one per rail), and
  // ceil(8 leaves * 32 uplinks / 64 spine ports) = 4 spines.
  const Cluster small(load_cluster("dgx-h100", 2));
  expect_counts(count(small), {16, 2, 16, 8 + 4, directed_links(16, 8, 32)});
  // 40 nodes: 2 units, so 16 leaves and ceil(16 * 32 / 64) = 8 spines.
  const Cluster two_units(load_cluster("dgx-h100", 40));
  expect_counts(count(two_units), {320, 40, 320, 16 + 8, directed_links(320, 16, 32)});
}

TEST(Presets, DgxA100IsOneTwentyNodeUnit) {
  const ClusterConfig config = load_cluster("dgx-a100");
  EXPECT_DOUBLE_EQ(config.gpu.bf16_tflops, 312);
  EXPECT_DOUBLE_EQ(config.gpu.fp8_tflops, 0);  // no FP8 tensor cores
  EXPECT_DOUBLE_EQ(config.gpu.hbm_bandwidth_bps, 2.039e12);
  EXPECT_DOUBLE_EQ(config.nvlink.bandwidth_bps, bytes_per_s_from_GBps(300));
  EXPECT_DOUBLE_EQ(config.pcie.bandwidth_bps, bytes_per_s_from_GBps(32));
  EXPECT_DOUBLE_EQ(config.nic.bandwidth_bps, bytes_per_s_from_gbps(200));
  // 20 nodes fill one unit: 8 leaves of 20 NICs, and ceil(8 * 20 / 40) = 4 spines.
  const Cluster cluster(config);
  expect_counts(count(cluster), {160, 20, 160, 8 + 4, directed_links(160, 8, 20)});
}

TEST(Presets, H800HasEightPlanesAndSlowerNvLink) {
  const ClusterConfig config = load_cluster("h800", 2);
  EXPECT_EQ(config.fabric.planes, 8);
  EXPECT_DOUBLE_EQ(config.nvlink.bandwidth_bps, bytes_per_s_from_GBps(200));
  EXPECT_DOUBLE_EQ(config.nvlink.efficiency, 0.8);
  EXPECT_DOUBLE_EQ(config.gpu.bf16_tflops, load_cluster("dgx-h100").gpu.bf16_tflops);
  // Each plane holds one rail: 2 NICs on one leaf, whose 32 uplinks need ceil(32 / 64) = 1 spine.
  const Cluster cluster(config);
  expect_counts(count(cluster), {16, 2, 16, 8 * (1 + 1), directed_links(16, 8, 32)});
  // An NVLink port's capacity is what DeepSeek measured: 200 GB/s x 0.8 = 160 GB/s.
  EXPECT_DOUBLE_EQ(cluster.link(0).capacity_bps, bytes_per_s_from_GBps(160));
  // The 2048-GPU DeepSeek-V3 cluster: 256 nodes, 8 leaves per plane and ceil(8 * 32 / 64) = 4 spines per plane.
  const Cluster deepseek(load_cluster("h800", 256));
  expect_counts(count(deepseek), {2048, 256, 2048, 8 * (8 + 4), directed_links(2048, 8 * 8, 32)});
}

TEST(Presets, Gb200Nvl72HasRackWideDomains) {
  const ClusterConfig config = load_cluster("gb200-nvl72", 18);
  EXPECT_EQ(config.gpus_per_node, 4);
  EXPECT_EQ(config.nvlink.domain_gpus, 72);
  EXPECT_DOUBLE_EQ(config.gpu.bf16_tflops, 2500);
  EXPECT_DOUBLE_EQ(config.gpu.fp8_tflops, 5000);
  EXPECT_DOUBLE_EQ(config.gpu.hbm_bandwidth_bps, 8e12);
  EXPECT_DOUBLE_EQ(config.nvlink.bandwidth_bps, bytes_per_s_from_GBps(900));
  // One rack: 72 GPUs on one NVSwitch vertex, 72 NICs on 4 rails of one unit, ceil(4 * 32 / 64) = 2 spines.
  const Cluster cluster(config);
  expect_counts(count(cluster), {72, 1, 72, 4 + 2, directed_links(72, 4, 32)});
  // Trays come by the rack: 20 trays are 80 GPUs, which 72-GPU domains cannot tile.
  try {
    load_cluster("gb200-nvl72", 20);
    ADD_FAILURE() << "20 trays accepted";
  } catch (const std::invalid_argument& e) {
    // The message names the preset and says where the node count came from.
    EXPECT_EQ(std::string(e.what()),
              "preset gb200-nvl72: nvlink.domain_gpus: must divide the GPU count 80, got 72 (with 20 nodes given in "
              "place of the file's 72)");
  }
}

}  // namespace
}  // namespace moesim::topologies
