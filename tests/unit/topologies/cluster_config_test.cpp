#include "topologies/cluster_config.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>
#include <string>

#include "common/config.hpp"
#include "common/units.hpp"
#include "tests/test_support.hpp"

namespace moesim::topologies {
namespace {

using test::contains;

// Two 8-GPU nodes whose 16 NICs share one leaf: the smallest file with a network, every optional key left out.
constexpr const char* kTiny = R"(name: tiny
nodes: 2
gpus_per_node: 8
gpu: {name: test-gpu, bf16_tflops: 100, hbm_bandwidth: 1 TB/s, hbm_capacity: 16 GiB}
nvlink: {bandwidth: 100 GB/s}
pcie: {bandwidth: 32 GB/s}
nic: {bandwidth: 100 Gb/s}
fabric:
  rail_optimized: false
  leaf: {down: 16}
)";

// `text` with the first `from` replaced by `to` (which must occur).
std::string edit(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("test text has no '" + from + "'");
  return text.replace(at, from.size(), to);
}

std::string tiny_with(const std::string& from, const std::string& to) {
  return edit(kTiny, from, to);
}

ClusterConfig parse_text(const std::string& text, std::optional<int> nodes = std::nullopt) {
  return parse_cluster(load_yaml_text(text, "tiny.yaml"), "tiny.yaml", nodes);
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

// The message of the std::invalid_argument that `f` throws, or "(no error)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

std::string parse_error(const std::string& text) {
  return error_of([&] { parse_text(text); });
}

TEST(ClusterConfig, MinimalFileTakesDefaults) {
  const ClusterConfig config = parse_text(kTiny);
  // What the file says.
  EXPECT_EQ(config.name, "tiny");
  EXPECT_EQ(config.source, "tiny.yaml");
  EXPECT_EQ(config.num_nodes, 2);
  EXPECT_EQ(config.gpus_per_node, 8);
  EXPECT_EQ(config.gpu.name, "test-gpu");
  EXPECT_DOUBLE_EQ(config.gpu.bf16_tflops, 100.0);
  EXPECT_DOUBLE_EQ(config.gpu.hbm_bandwidth_bps, 1e12);
  EXPECT_DOUBLE_EQ(config.gpu.hbm_capacity_bytes, 16.0 * 1024 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(config.nvlink.bandwidth_bps, bytes_per_s_from_GBps(100));
  EXPECT_DOUBLE_EQ(config.nic.bandwidth_bps, bytes_per_s_from_gbps(100));
  EXPECT_EQ(config.fabric.leaf.down, 16);
  EXPECT_FALSE(config.fabric.rail_optimized);
  // Defaults: no FP8, one NVLink domain per node, one NIC per GPU, one plane, PXN on, no spine, switch links as
  // fast as the NICs, placeholder latencies, efficiency 1.
  EXPECT_DOUBLE_EQ(config.gpu.fp8_tflops, 0.0);
  EXPECT_EQ(config.nvlink.domain_gpus, config.gpus_per_node);
  EXPECT_EQ(config.nic.per_node, config.gpus_per_node);
  EXPECT_EQ(config.fabric.kind, FabricSpec::Kind::kFatTree);
  EXPECT_EQ(config.fabric.planes, 1);
  EXPECT_TRUE(config.fabric.pxn);
  EXPECT_EQ(config.fabric.leaf.up, 0);
  EXPECT_FALSE(config.fabric.spine.has_value());
  EXPECT_FALSE(config.fabric.core.has_value());
  EXPECT_DOUBLE_EQ(config.fabric.link.bandwidth_bps, config.nic.bandwidth_bps);
  EXPECT_EQ(config.nvlink.latency_ps, time_from_ns(150));
  EXPECT_EQ(config.nvlink.overhead_ps, time_from_us(2));
  EXPECT_EQ(config.pcie.latency_ps, time_from_ns(250));
  EXPECT_EQ(config.nic.latency_ps, time_from_ns(500));
  EXPECT_EQ(config.nic.overhead_ps, time_from_us(3));
  EXPECT_EQ(config.fabric.link.latency_ps, time_from_ns(150));
  EXPECT_DOUBLE_EQ(config.nvlink.efficiency, 1.0);
}

TEST(ClusterConfig, NodesArgumentOverridesTheFile) {
  // The file says 2 nodes; the argument wins, and may even stand in for a missing `nodes:`.
  EXPECT_EQ(parse_text(kTiny, 1).num_nodes, 1);
  EXPECT_EQ(parse_text(tiny_with("nodes: 2\n", ""), 1).num_nodes, 1);
  EXPECT_TRUE(contains(parse_error(tiny_with("nodes: 2\n", "")), "nodes: missing"));
  EXPECT_TRUE(contains(error_of([] { parse_text(kTiny, 0); }), "nodes: must be >= 1, got 0"));
}

TEST(ClusterConfig, UnknownKeyNamesFileLineAndKeyPath) {
  // A typo three levels down is reported with the file, its line (10) and the full key path.
  const std::string path = write_file("typo.yaml", tiny_with("leaf: {down: 16}", "leaf: {down: 16, upp: 4}"));
  const std::string message = error_of([&] { load_cluster(path); });
  EXPECT_TRUE(contains(message, path + ":10: fabric.leaf.upp: unknown key")) << message;
  // At the top level too, listing the keys that are known there.
  const std::string top = parse_error(std::string(kTiny) + "colour: blue\n");
  EXPECT_TRUE(contains(top, "tiny.yaml:11: colour: unknown key")) << top;
  EXPECT_TRUE(contains(top, "gpus_per_node")) << top;
}

TEST(ClusterConfig, BandwidthMustBePositiveAndCarryAUnit) {
  const std::string zero = parse_error(tiny_with("nic: {bandwidth: 100 Gb/s}", "nic: {bandwidth: 0 Gb/s}"));
  EXPECT_TRUE(contains(zero, "tiny.yaml:7: nic.bandwidth: must be > 0")) << zero;
  const std::string negative = parse_error(tiny_with("pcie: {bandwidth: 32 GB/s}", "pcie: {bandwidth: -32 GB/s}"));
  EXPECT_TRUE(contains(negative, "pcie.bandwidth")) << negative;
  EXPECT_TRUE(contains(negative, "non-negative")) << negative;
  // "400" alone could be bits or bytes: a unit is required.
  const std::string bare = parse_error(tiny_with("nic: {bandwidth: 100 Gb/s}", "nic: {bandwidth: 400}"));
  EXPECT_TRUE(contains(bare, "nic.bandwidth")) << bare;
  EXPECT_TRUE(contains(bare, "with a unit")) << bare;
}

TEST(ClusterConfig, EfficiencyMustBeInZeroOne) {
  for (const char* bad : {"0", "1.5", "-0.2"}) {
    const std::string message = parse_error(tiny_with(
        "nvlink: {bandwidth: 100 GB/s}", "nvlink: {bandwidth: 100 GB/s, efficiency: " + std::string(bad) + "}"));
    EXPECT_TRUE(contains(message, "nvlink.efficiency: must be in (0, 1], got " + std::string(bad))) << message;
  }
}

TEST(ClusterConfig, CountsMustBeAtLeastOne) {
  EXPECT_TRUE(contains(parse_error(tiny_with("gpus_per_node: 8", "gpus_per_node: 0")), "gpus_per_node: must be >= 1"));
  EXPECT_TRUE(
      contains(parse_error(tiny_with("leaf: {down: 16}", "leaf: {down: 0}")), "fabric.leaf.down: must be >= 1"));
  EXPECT_TRUE(contains(parse_error(tiny_with("nic: {", "nic: {per_node: 0, ")), "nic.per_node: must be >= 1"));
}

TEST(ClusterConfig, DomainMustDivideTheGpuCount) {
  // 5 trays of 4 GPUs are 20 GPUs, which 8-GPU NVLink domains (2 trays each) cannot tile.
  const std::string text = edit(tiny_with("nodes: 2\ngpus_per_node: 8", "nodes: 5\ngpus_per_node: 4"), "nvlink: {",
                                "nvlink: {domain_gpus: 8, ");
  const std::string message = parse_error(text);
  EXPECT_TRUE(contains(message, "nvlink.domain_gpus: must divide the GPU count 20, got 8")) << message;
  // A domain that splits a node (3 of 8 GPUs) is refused even where the count would divide.
  const std::string split = parse_error(tiny_with("nvlink: {", "nvlink: {domain_gpus: 3, "));
  EXPECT_TRUE(contains(split, "nvlink.domain_gpus: must divide gpus_per_node 8 or be a multiple of it, got 3"))
      << split;
}

TEST(ClusterConfig, NicAndPlaneCountsMustFitTheNode) {
  const std::string nics = parse_error(tiny_with("nic: {", "nic: {per_node: 3, "));
  EXPECT_TRUE(contains(nics, "nic.per_node: must divide gpus_per_node 8 or be a multiple of it, got 3")) << nics;
  const std::string planes = parse_error(tiny_with("fabric:\n", "fabric:\n  planes: 3\n"));
  EXPECT_TRUE(contains(planes, "fabric.planes: must divide nic.per_node 8, got 3")) << planes;
  // Without NVLink, two GPUs sharing a NIC could never talk: GPUs do not forward and NICs do not loop back.
  const std::string no_nvlink = tiny_with("nvlink: {", "nvlink: {domain_gpus: 1, ");
  EXPECT_EQ(parse_error(no_nvlink), "(no error)");  // one NIC per GPU: fine
  const std::string shared_nic = parse_error(edit(no_nvlink, "nic: {", "nic: {per_node: 4, "));
  EXPECT_TRUE(contains(shared_nic, "nic.per_node: each NIC would serve 2 GPUs")) << shared_nic;
}

TEST(ClusterConfig, EachDomainNeedsANicOnEveryPlane) {
  // Domains of 2 GPUs with one NIC per GPU on 8 planes reach only 2 planes each: GPUs elsewhere would be unreachable.
  const std::string text =
      edit(tiny_with("nvlink: {", "nvlink: {domain_gpus: 2, "), "fabric:\n", "fabric:\n  planes: 8\n");
  const std::string message = parse_error(text);
  EXPECT_TRUE(contains(message, "fabric.planes: the GPUs of NVLink domain 0 have no NIC on plane 2 of 8")) << message;
}

TEST(ClusterConfig, TiersMustBeConsistent) {
  // 16 NICs on rails of 2 nodes: rail-optimised, that is 8 leaves, which need a spine tier.
  const std::string no_spine = parse_error(tiny_with("  rail_optimized: false\n", ""));
  EXPECT_TRUE(contains(no_spine, "fabric.spine: missing")) << no_spine;
  EXPECT_TRUE(contains(no_spine, "set fabric.rail_optimized: false")) << no_spine;
  // Uplinks without a tier above, a tier above without uplinks, pods without a core.
  EXPECT_TRUE(contains(parse_error(tiny_with("leaf: {down: 16}", "leaf: {down: 16, up: 4}")),
                       "fabric.leaf.up: must be 0 without a spine tier"));
  EXPECT_TRUE(contains(parse_error(tiny_with("leaf: {down: 16}", "leaf: {down: 16}\n  spine: {down: 4}")),
                       "fabric.leaf.up: must be >= 1 with a spine tier"));
  EXPECT_TRUE(contains(parse_error(tiny_with("leaf: {down: 16}", "leaf: {down: 16}\n  pod_leaves: 2")),
                       "fabric.pod_leaves: only applies with a core tier"));
  // A spine that cannot reach every leaf: 4 leaves of 4 NICs, spines with 2 down ports.
  const std::string narrow = parse_error(tiny_with("leaf: {down: 16}", "leaf: {down: 4, up: 2}\n  spine: {down: 2}"));
  EXPECT_TRUE(contains(narrow, "fabric.spine.down: a spine must reach all 4 leaves of its plane, got 2")) << narrow;
}

TEST(ClusterConfig, FabricNoneNeedsNoNetworkSections) {
  // One node of 8 GPUs on NVLink only: no NICs, so pcie and nic can be left out.
  const ClusterConfig config = parse_text(
      "nodes: 1\ngpu: {name: g, bf16_tflops: 1, hbm_bandwidth: 1 TB/s, hbm_capacity: 1 GiB}\n"
      "nvlink: {bandwidth: 50 GB/s}\nfabric: {kind: none}\n");
  EXPECT_EQ(config.fabric.kind, FabricSpec::Kind::kNone);
  EXPECT_EQ(config.name, "tiny.yaml");  // no name: the source names it
  // Fat-tree keys under kind none are a mistake, not something to ignore.
  const std::string message = parse_error(tiny_with("fabric:\n", "fabric:\n  kind: none\n"));
  EXPECT_TRUE(contains(message, "has no meaning with fabric.kind none")) << message;
}

TEST(ClusterConfig, BaseStartsFromAPresetAndMergesMappings) {
  // Override the node count, one fabric flag and the NVLink efficiency; the rest of each mapping stays the preset's.
  const std::string path = write_file("based.yaml",
                                      "base: dgx-h100\nname: my-h100\nnodes: 4\nnvlink: {efficiency: 0.9}\n"
                                      "fabric: {pxn: false}\n");
  const ClusterConfig config = load_cluster(path);
  const ClusterConfig preset = load_cluster("dgx-h100");
  EXPECT_EQ(config.name, "my-h100");
  EXPECT_EQ(config.source, path);
  EXPECT_EQ(config.num_nodes, 4);
  EXPECT_DOUBLE_EQ(config.nvlink.efficiency, 0.9);
  EXPECT_DOUBLE_EQ(config.nvlink.bandwidth_bps, preset.nvlink.bandwidth_bps);
  EXPECT_FALSE(config.fabric.pxn);
  EXPECT_EQ(config.fabric.leaf.down, preset.fabric.leaf.down);
  EXPECT_EQ(config.fabric.spine->down, preset.fabric.spine->down);
  EXPECT_EQ(config.gpu.name, preset.gpu.name);
  // A mistake in an override is still reported at its line of the user's file.
  const std::string bad = write_file("based-bad.yaml", "base: h800\nnodes: 4\nnic: {bandwidth: 400}\n");
  EXPECT_TRUE(contains(error_of([&] { load_cluster(bad); }), bad + ":3: nic.bandwidth"));
  // Only presets can be bases.
  const std::string unknown = error_of([] { parse_text("base: dgx-z9\n"); });
  EXPECT_TRUE(contains(unknown, "base: expected one of dgx-h100, dgx-a100, h800, gb200-nvl72, got 'dgx-z9'"))
      << unknown;
}

TEST(ClusterConfig, ParsingLeavesTheCallersTreeUntouched) {
  // A scenario hands its own `cluster:` mapping in: neither merging a base nor locating an error may rewrite it.
  const YAML::Node based = load_yaml_text("base: dgx-h100\nnodes: 3\nnic: {per_node: 3}\n", "scenario.yaml");
  EXPECT_THROW(parse_cluster(based, "scenario.yaml", std::nullopt), std::invalid_argument);
  EXPECT_EQ(YAML::Dump(based), "base: dgx-h100\nnodes: 3\nnic: {per_node: 3}");
  const YAML::Node plain = load_yaml_text(tiny_with("fabric:\n", "fabric:\n  planes: 3\n"), "scenario.yaml");
  const std::string before = YAML::Dump(plain);
  EXPECT_THROW(parse_cluster(plain, "scenario.yaml", std::nullopt), std::invalid_argument);
  EXPECT_EQ(YAML::Dump(plain), before);
}

TEST(ClusterConfig, LoadsFilesAndRejectsUnknownNames) {
  const std::string path = write_file("tiny.yaml", kTiny);
  EXPECT_EQ(load_cluster(path).name, "tiny");
  EXPECT_EQ(load_cluster(path, 1).num_nodes, 1);
  EXPECT_EQ(error_of([] { load_cluster("dgx-h101"); }),
            "unknown cluster 'dgx-h101': not a preset (dgx-h100, dgx-a100, h800, gb200-nvl72) and no such file");
  // A YAML syntax error names the file and the line.
  const std::string broken = write_file("broken.yaml", "nodes: 2\ngpu: {name: x\n");
  EXPECT_TRUE(contains(error_of([&] { load_cluster(broken); }), broken + ":"))
      << error_of([&] { load_cluster(broken); });
  EXPECT_TRUE(contains(error_of([&] { load_cluster(broken); }), "YAML syntax error"));
}

TEST(ClusterConfig, ValidateChecksDescriptionsBuiltInCode) {
  // A preset edited in code gets the same checks, reported against its source.
  ClusterConfig config = load_cluster("dgx-h100", 2);
  EXPECT_NO_THROW(validate_cluster(config));
  config.fabric.planes = 3;
  EXPECT_EQ(error_of([&] { validate_cluster(config); }),
            "preset dgx-h100: fabric.planes: must divide nic.per_node 8, got 3");
  config.fabric.planes = 1;
  config.nic.efficiency = 0.0;
  EXPECT_EQ(error_of([&] { validate_cluster(config); }), "preset dgx-h100: nic.efficiency: must be in (0, 1], got 0");
}

}  // namespace
}  // namespace moesim::topologies
