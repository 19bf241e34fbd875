// The cluster description: what a cluster YAML file (or a preset) says, after validation.
//
// Schema (unknown keys are rejected at every level; defaults in brackets, "required" where there is none):
//
//   base: dgx-h100                  # [none] start from a preset; the keys below override it, mappings merged
//   name: my-cluster                # [the source: the file's path, or "preset NAME"]
//   nodes: 32                       # required; servers (for NVL72: compute trays of 4 GPUs)
//   gpus_per_node: 8                # [8]
//   gpu:    {name, bf16_tflops, fp8_tflops [0], hbm_bandwidth: "3.35 TB/s", hbm_capacity: "80 GiB"}
//   nvlink: {domain_gpus [gpus_per_node], bandwidth: "450 GB/s" (required if domain_gpus > 1),
//            latency [150 ns], overhead [2 us], efficiency [1]}
//   pcie:   {bandwidth: "64 GB/s", latency [250 ns], efficiency [1]}
//   nic:    {per_node [gpus_per_node], bandwidth: "400 Gb/s", latency [500 ns], overhead [3 us], efficiency [1]}
//   fabric: {kind: fat-tree|none [fat-tree; none when the section is absent], planes [1], rail_optimized [true],
//            pxn [true], link: {bandwidth [nic.bandwidth], latency [150 ns], efficiency [1]},
//            leaf: {down, up [0]}, spine: {down, up [0]}, core: {down}, pod_leaves [0: one pod]}
//
// Bandwidths are per direction. A GPU's NVLink bandwidth is its total into the NVSwitch fabric. With fabric kind
// none there are no NICs, and pcie/nic may be left out. The rules that tie keys together (nvlink.domain_gpus
// dividing the GPU count, nic.per_node and gpus_per_node dividing one another, fabric.planes dividing
// nic.per_node, a spine tier exactly when leaves have uplinks, ...) are checked by validate_cluster.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/units.hpp"

namespace moesim::topologies {

struct GpuSpec {
  std::string name;
  double bf16_tflops = 0.0;  // dense peak
  double fp8_tflops = 0.0;   // dense peak; 0 when the GPU has no FP8 tensor cores
  double hbm_bandwidth_bps = 0.0;
  double hbm_capacity_bytes = 0.0;
};

struct LinkSpec {
  double bandwidth_bps = 0.0;  // bytes/s, per direction
  TimePs latency_ps = 0;       // per hop
  TimePs overhead_ps = 0;      // per message
  double efficiency = 1.0;     // in (0, 1]
};

struct NvLinkSpec : LinkSpec {
  int domain_gpus = 8;  // GPUs per NVLink domain; 1 means no NVLink
};

struct NicSpec : LinkSpec {
  int per_node = 8;  // NICs per node; GPU l uses NIC l * per_node / gpus_per_node (with more NICs than GPUs,
                     // NICs [l * k, (l + 1) * k), k = per_node / gpus_per_node)
};

struct TierSpec {
  int down = 0;  // ports toward the tier below (NICs for a leaf)
  int up = 0;    // ports toward the tier above (0 at the top tier)
};

struct FabricSpec {
  enum class Kind { kNone, kFatTree } kind = Kind::kFatTree;
  int planes = 1;              // independent fabrics; NIC index i belongs to plane i % planes
  bool rail_optimized = true;  // NIC i of every node in a scalable unit shares leaf i
  bool pxn = true;             // traffic to another NVLink domain first hops over NVLink to the GPU of the source's
                               // domain closest to the destination (its rail), as NCCL's PXN does
  LinkSpec link;               // switch-to-switch links
  TierSpec leaf;
  std::optional<TierSpec> spine;  // absent: no spine tier, so each plane must be a single leaf
  std::optional<TierSpec> core;   // third tier (needs a spine tier)
  int pod_leaves = 0;             // leaves per pod when there is a core tier (0: all leaves in one pod)
};

struct ClusterConfig {
  std::string source;  // file or preset the description came from, for messages
  std::string name;
  int num_nodes = 1;
  int gpus_per_node = 8;
  GpuSpec gpu;
  NvLinkSpec nvlink;
  LinkSpec pcie;
  NicSpec nic;
  FabricSpec fabric;
};

struct PresetInfo {
  std::string name;
  std::string summary;
  int default_nodes = 0;
};

// The shipped presets: dgx-h100, dgx-a100, h800, gb200-nvl72.
std::vector<PresetInfo> cluster_presets();

// `name_or_path` is a preset name or a YAML file. `nodes`, when given, overrides the node count (for files too).
// Throws std::invalid_argument naming the file, the key path and what was expected.
ClusterConfig load_cluster(const std::string& name_or_path, std::optional<int> nodes = std::nullopt);

// Reads and validates a cluster mapping (a parsed file, or an inline `cluster:` mapping of a scenario);
// `source` names it in messages.
ClusterConfig parse_cluster(const YAML::Node& node, const std::string& source, std::optional<int> nodes);

// Checks a description built or modified in code: value ranges and the rules that tie keys together. Throws
// std::invalid_argument "SOURCE: key.path: what was expected". parse_cluster and Cluster's constructor call it.
void validate_cluster(const ClusterConfig& config);

}  // namespace moesim::topologies
