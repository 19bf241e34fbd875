#include "topologies/cluster_config.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "common/config.hpp"
#include "topologies/cluster_shape.hpp"
#include "topologies/presets.hpp"

namespace moesim::topologies {
namespace {

// Defaults for keys a file may leave out. The latencies and overheads are the same order-of-magnitude placeholders
// the presets use (see presets.cpp): no spec sheet gives them, calibration replaces them.
constexpr int kDefaultGpusPerNode = 8;
constexpr TimePs kDefaultNvLinkLatencyPs = 150 * kPsPerNs;
constexpr TimePs kDefaultNvLinkOverheadPs = 2 * kPsPerUs;
constexpr TimePs kDefaultPcieLatencyPs = 250 * kPsPerNs;
constexpr TimePs kDefaultNicLatencyPs = 500 * kPsPerNs;
constexpr TimePs kDefaultNicOverheadPs = 3 * kPsPerUs;
constexpr TimePs kDefaultSwitchLatencyPs = 150 * kPsPerNs;

// Vertex ids are 32-bit and routing tables are per GPU; far beyond any real cluster, but it keeps the arithmetic safe.
constexpr std::int64_t kMaxGpus = std::int64_t{1} << 22;

std::string format_number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", value);
  return buf;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// A section that may be absent reads as an empty mapping, so that its required keys are reported by their full path
// ("nic.bandwidth: missing") and its defaults apply.
ConfigMap section(const ConfigMap& parent, std::string_view key) {
  if (std::optional<ConfigMap> child = parent.optional_map(key)) return *child;
  const std::string path = parent.path().empty() ? std::string(key) : parent.path() + "." + std::string(key);
  return ConfigMap(YAML::Node(), parent.file(), path);
}

double read_efficiency(const ConfigMap& map) {
  const double efficiency = map.number("efficiency", 1.0);
  if (!(efficiency > 0.0 && efficiency <= 1.0))
    map.fail("efficiency", "must be in (0, 1], got " + format_number(efficiency));
  return efficiency;
}

// `bandwidth_fallback` empty means the bandwidth is required; `overhead` empty means the section has no such key.
LinkSpec read_link(const ConfigMap& map, std::optional<double> bandwidth_fallback, TimePs default_latency_ps,
                   std::optional<TimePs> default_overhead_ps) {
  LinkSpec spec;
  spec.bandwidth_bps = map.bandwidth("bandwidth", bandwidth_fallback);
  spec.latency_ps = map.duration("latency", default_latency_ps);
  if (default_overhead_ps) spec.overhead_ps = map.duration("overhead", *default_overhead_ps);
  spec.efficiency = read_efficiency(map);
  return spec;
}

int read_count(const ConfigMap& map, std::string_view key, std::optional<std::int64_t> fallback, std::int64_t min) {
  return static_cast<int>(map.integer(key, fallback, min, kMaxGpus));
}

TierSpec read_tier(const ConfigMap& map, bool has_up) {
  TierSpec tier;
  tier.down = read_count(map, "down", std::nullopt, 1);
  if (has_up) tier.up = read_count(map, "up", 0, 0);
  map.reject_unknown();
  return tier;
}

// The mapping to parse: `node` itself, or, when it names a `base:` preset, that preset with `node` merged over it.
// (Built by construction, never by assigning to a handle: assigning one YAML::Node to another rebinds the node it
// refers to, which would rewrite the caller's tree.)
YAML::Node with_base(const YAML::Node& node, const std::string& source) {
  const ConfigMap top(node, source);
  if (!top.has("base")) return node;
  const std::string base = top.choice("base", preset_names());
  YAML::Node merged = copy_without_marks(load_yaml_text(std::string(*preset_yaml(base)), preset_source(base)));
  merge_into(merged, node, "base");
  return merged;
}

struct Problem {
  std::string key;  // full key path
  std::string message;
};

std::optional<Problem> check_link(const LinkSpec& spec, const std::string& key) {
  if (!(spec.bandwidth_bps > 0.0))
    return Problem{key + ".bandwidth", "must be > 0, got " + format_number(spec.bandwidth_bps)};
  if (!(spec.efficiency > 0.0 && spec.efficiency <= 1.0)) {
    return Problem{key + ".efficiency", "must be in (0, 1], got " + format_number(spec.efficiency)};
  }
  if (spec.latency_ps < 0) return Problem{key + ".latency", "must be >= 0"};
  if (spec.overhead_ps < 0) return Problem{key + ".overhead", "must be >= 0"};
  return std::nullopt;
}

std::optional<Problem> check_fabric(const ClusterConfig& config) {
  const FabricSpec& fabric = config.fabric;
  const int gpus = config.gpus_per_node;
  const int domain_gpus = config.nvlink.domain_gpus;
  const int per_node = config.nic.per_node;
  const auto n = [](long long value) { return std::to_string(value); };

  if (per_node < 1) return Problem{"nic.per_node", "must be >= 1, got " + n(per_node)};
  if (gpus % per_node != 0 && per_node % gpus != 0) {
    return Problem{"nic.per_node",
                   "must divide gpus_per_node " + n(gpus) + " or be a multiple of it, got " + n(per_node)};
  }
  // A NIC that served two NVLink domains would leave them unable to talk: GPUs never forward traffic, and a NIC only
  // forwards between its host side and the fabric.
  if (per_node < gpus && domain_gpus < gpus && domain_gpus % (gpus / per_node) != 0) {
    return Problem{"nic.per_node", "each NIC would serve " + n(gpus / per_node) + " GPUs across NVLink domains of " +
                                       n(domain_gpus) + " GPUs, which could then not reach each other; need at least " +
                                       n(gpus / domain_gpus) + ", got " + n(per_node)};
  }
  if (auto problem = check_link(config.pcie, "pcie")) return problem;
  if (auto problem = check_link(config.nic, "nic")) return problem;
  if (auto problem = check_link(fabric.link, "fabric.link")) return problem;
  if (fabric.planes < 1) return Problem{"fabric.planes", "must be >= 1, got " + n(fabric.planes)};
  if (per_node % fabric.planes != 0) {
    return Problem{"fabric.planes", "must divide nic.per_node " + n(per_node) + ", got " + n(fabric.planes)};
  }
  if (fabric.leaf.down < 1) return Problem{"fabric.leaf.down", "must be >= 1, got " + n(fabric.leaf.down)};
  if (fabric.spine) {
    if (fabric.leaf.up < 1)
      return Problem{"fabric.leaf.up", "must be >= 1 with a spine tier, got " + n(fabric.leaf.up)};
    if (fabric.spine->down < 1) return Problem{"fabric.spine.down", "must be >= 1, got " + n(fabric.spine->down)};
  } else if (fabric.leaf.up != 0) {
    return Problem{"fabric.leaf.up", "must be 0 without a spine tier (fabric.spine), got " + n(fabric.leaf.up)};
  }
  if (fabric.core) {
    if (!fabric.spine) return Problem{"fabric.core", "needs a spine tier (fabric.spine)"};
    if (fabric.spine->up < 1)
      return Problem{"fabric.spine.up", "must be >= 1 with a core tier, got " + n(fabric.spine->up)};
    if (fabric.core->down < 1) return Problem{"fabric.core.down", "must be >= 1, got " + n(fabric.core->down)};
    if (fabric.pod_leaves < 0) return Problem{"fabric.pod_leaves", "must be >= 0, got " + n(fabric.pod_leaves)};
  } else {
    if (fabric.spine && fabric.spine->up != 0) {
      return Problem{"fabric.spine.up", "must be 0 without a core tier (fabric.core), got " + n(fabric.spine->up)};
    }
    if (fabric.pod_leaves != 0) return Problem{"fabric.pod_leaves", "only applies with a core tier (fabric.core)"};
  }

  const FatTreeShape shape = fat_tree_shape(config);
  if (!fabric.spine && shape.leaves > 1) {
    const long long plane_nics = static_cast<long long>(config.num_nodes) * shape.rails_per_plane;
    std::string nics = n(plane_nics) + " NICs";
    if (fabric.rail_optimized && shape.rails_per_plane > 1) nics += " on " + n(shape.rails_per_plane) + " rails";
    std::string message = "missing: without a spine tier a plane must be one leaf, but its " + nics + " need " +
                          n(shape.leaves) + " leaves of " + n(fabric.leaf.down) + " ports (fabric.leaf.down)";
    if (fabric.rail_optimized && plane_nics <= fabric.leaf.down) message += "; or set fabric.rail_optimized: false";
    return Problem{"fabric.spine", message};
  }
  // Each spine must reach every leaf of its pod, and each core every pod: otherwise some leaves would share no
  // spine, and the round-robin wiring would overload some switches' ports.
  if (fabric.spine && shape.leaves_per_pod > fabric.spine->down) {
    if (fabric.core) {
      return Problem{"fabric.pod_leaves", "a pod of " + n(shape.leaves_per_pod) + " leaves exceeds fabric.spine.down " +
                                              n(fabric.spine->down) + "; each spine must reach every leaf of its pod"};
    }
    return Problem{"fabric.spine.down", "a spine must reach all " + n(shape.leaves) + " leaves of its plane, got " +
                                            n(fabric.spine->down) +
                                            " (add a core tier with fabric.core and "
                                            "fabric.pod_leaves, or use larger switches)"};
  }
  if (fabric.core && shape.pods > fabric.core->down) {
    return Problem{"fabric.core.down",
                   "a core must reach all " + n(shape.pods) + " pods of its plane, got " + n(fabric.core->down)};
  }
  // Routes cross NVLink at most once, at the source (PXN), so a domain must own a NIC on every plane to reach
  // GPUs whose NICs are all on other planes.
  if (fabric.planes > 1) {
    const long long num_gpus = static_cast<long long>(config.num_nodes) * gpus;
    for (long long first = 0; first < num_gpus; first += domain_gpus) {
      std::vector<bool> covered(static_cast<std::size_t>(fabric.planes), false);
      for (long long gpu_idx = first; gpu_idx < first + domain_gpus; ++gpu_idx) {
        const NicRange nics = nics_of_gpu(config, static_cast<int>(gpu_idx % gpus));
        for (int i = nics.first; i < nics.first + nics.count; ++i)
          covered[static_cast<std::size_t>(i % fabric.planes)] = true;
      }
      for (int plane = 0; plane < fabric.planes; ++plane) {
        if (!covered[static_cast<std::size_t>(plane)]) {
          return Problem{"fabric.planes", "the GPUs of NVLink domain " + n(first / domain_gpus) +
                                              " have no NIC on plane " + n(plane) + " of " + n(fabric.planes) +
                                              ", so they could not reach GPUs on that plane (routes cross NVLink "
                                              "only at the source)"};
        }
      }
    }
  }
  return std::nullopt;
}

std::optional<Problem> find_problem(const ClusterConfig& config) {
  const auto n = [](long long value) { return std::to_string(value); };
  if (config.num_nodes < 1) return Problem{"nodes", "must be >= 1, got " + n(config.num_nodes)};
  if (config.gpus_per_node < 1) return Problem{"gpus_per_node", "must be >= 1, got " + n(config.gpus_per_node)};
  const long long num_gpus = static_cast<long long>(config.num_nodes) * config.gpus_per_node;
  if (num_gpus > kMaxGpus) {
    return Problem{"nodes",
                   "the cluster would have " + n(num_gpus) + " GPUs, more than the " + n(kMaxGpus) + " supported"};
  }
  const GpuSpec& gpu = config.gpu;
  if (!(gpu.bf16_tflops > 0.0)) return Problem{"gpu.bf16_tflops", "must be > 0, got " + format_number(gpu.bf16_tflops)};
  if (!(gpu.fp8_tflops >= 0.0)) return Problem{"gpu.fp8_tflops", "must be >= 0, got " + format_number(gpu.fp8_tflops)};
  if (!(gpu.hbm_bandwidth_bps > 0.0)) {
    return Problem{"gpu.hbm_bandwidth", "must be > 0, got " + format_number(gpu.hbm_bandwidth_bps)};
  }
  if (!(gpu.hbm_capacity_bytes > 0.0)) {
    return Problem{"gpu.hbm_capacity", "must be > 0, got " + format_number(gpu.hbm_capacity_bytes)};
  }

  const int domain_gpus = config.nvlink.domain_gpus;
  const int gpus = config.gpus_per_node;
  if (domain_gpus < 1) return Problem{"nvlink.domain_gpus", "must be >= 1, got " + n(domain_gpus)};
  // A domain is part of one node or a whole number of nodes: NVLink does not split a server.
  if (gpus % domain_gpus != 0 && domain_gpus % gpus != 0) {
    return Problem{"nvlink.domain_gpus",
                   "must divide gpus_per_node " + n(gpus) + " or be a multiple of it, got " + n(domain_gpus)};
  }
  if (num_gpus % domain_gpus != 0) {
    return Problem{"nvlink.domain_gpus", "must divide the GPU count " + n(num_gpus) + ", got " + n(domain_gpus)};
  }
  if (domain_gpus > 1) {
    if (auto problem = check_link(config.nvlink, "nvlink")) return problem;
  }
  if (config.fabric.kind == FabricSpec::Kind::kNone) return std::nullopt;
  return check_fabric(config);
}

// "FILE:LINE: key.path" for a key path of the parsed mapping, with the line of the deepest part that the file has.
// (Written out here rather than through ConfigMap::where, which assigns one YAML::Node handle to another and so
// rewrites the tree it reports on; the caller's tree must survive a failed parse.)
std::string locate(const YAML::Node& root, const std::string& source, const std::string& key_path) {
  YAML::Node at = root;
  int line = -1;  // the root mapping's own position (line 1) would say nothing
  std::size_t begin = 0;
  while (begin <= key_path.size()) {
    const std::size_t end = std::min(key_path.find('.', begin), key_path.size());
    if (!at.IsMap()) break;
    const YAML::Node child = static_cast<const YAML::Node&>(at)[key_path.substr(begin, end - begin)];
    if (!child.IsDefined()) break;
    at.reset(child);
    line = child.Mark().line >= 0 ? child.Mark().line : line;
    begin = end + 1;
  }
  return source + (line >= 0 ? ":" + std::to_string(line + 1) : "") + ": " + key_path;
}

}  // namespace

void validate_cluster(const ClusterConfig& config) {
  if (std::optional<Problem> problem = find_problem(config)) {
    throw std::invalid_argument(config.source + ": " + problem->key + ": " + problem->message);
  }
}

ClusterConfig parse_cluster(const YAML::Node& node, const std::string& source, std::optional<int> nodes) {
  if (nodes && *nodes < 1) {
    throw std::invalid_argument(source + ": nodes: must be >= 1, got " + std::to_string(*nodes) +
                                " (the node count given in place of the file's)");
  }
  const YAML::Node root = with_base(node, source);
  const ConfigMap top(root, source);
  ClusterConfig config;
  config.source = source;
  config.name = top.string("name", source);
  const std::optional<std::int64_t> nodes_fallback = nodes ? std::optional<std::int64_t>(*nodes) : std::nullopt;
  config.num_nodes = read_count(top, "nodes", nodes_fallback, 1);
  if (nodes) config.num_nodes = *nodes;
  config.gpus_per_node = read_count(top, "gpus_per_node", kDefaultGpusPerNode, 1);

  const ConfigMap gpu = top.map("gpu");
  config.gpu.name = gpu.string("name");
  config.gpu.bf16_tflops = gpu.number("bf16_tflops");
  if (!(config.gpu.bf16_tflops > 0.0))
    gpu.fail("bf16_tflops", "must be > 0, got " + format_number(config.gpu.bf16_tflops));
  config.gpu.fp8_tflops = gpu.number("fp8_tflops", 0.0, 0.0);
  config.gpu.hbm_bandwidth_bps = gpu.bandwidth("hbm_bandwidth");
  config.gpu.hbm_capacity_bytes = gpu.size("hbm_capacity");
  if (!(config.gpu.hbm_capacity_bytes > 0.0)) gpu.fail("hbm_capacity", "must be > 0");
  gpu.reject_unknown();

  // The fabric kind decides which other sections are required: without a network there are no NICs.
  const std::optional<ConfigMap> fabric = top.optional_map("fabric");
  const bool has_network = fabric && fabric->choice("kind", {"fat-tree", "none"}, "fat-tree") == "fat-tree";
  config.fabric.kind = has_network ? FabricSpec::Kind::kFatTree : FabricSpec::Kind::kNone;

  const ConfigMap nvlink = section(top, "nvlink");
  config.nvlink.domain_gpus = read_count(nvlink, "domain_gpus", config.gpus_per_node, 1);
  const bool has_nvlink = config.nvlink.domain_gpus > 1;
  static_cast<LinkSpec&>(config.nvlink) = read_link(nvlink, has_nvlink ? std::nullopt : std::optional<double>(0.0),
                                                    kDefaultNvLinkLatencyPs, kDefaultNvLinkOverheadPs);
  nvlink.reject_unknown();

  const std::optional<double> network_bandwidth = has_network ? std::nullopt : std::optional<double>(0.0);
  const ConfigMap pcie = section(top, "pcie");
  config.pcie = read_link(pcie, network_bandwidth, kDefaultPcieLatencyPs, std::nullopt);
  pcie.reject_unknown();

  const ConfigMap nic = section(top, "nic");
  config.nic.per_node = read_count(nic, "per_node", config.gpus_per_node, 1);
  static_cast<LinkSpec&>(config.nic) = read_link(nic, network_bandwidth, kDefaultNicLatencyPs, kDefaultNicOverheadPs);
  nic.reject_unknown();

  if (fabric && has_network) {
    FabricSpec& spec = config.fabric;
    spec.planes = read_count(*fabric, "planes", 1, 1);
    spec.rail_optimized = fabric->boolean("rail_optimized", true);
    spec.pxn = fabric->boolean("pxn", true);
    const ConfigMap link = section(*fabric, "link");
    spec.link = read_link(link, config.nic.bandwidth_bps, kDefaultSwitchLatencyPs, std::nullopt);
    link.reject_unknown();
    spec.leaf = read_tier(fabric->map("leaf"), true);
    if (std::optional<ConfigMap> spine = fabric->optional_map("spine")) spec.spine = read_tier(*spine, true);
    if (std::optional<ConfigMap> core = fabric->optional_map("core")) spec.core = read_tier(*core, false);
    spec.pod_leaves = read_count(*fabric, "pod_leaves", 0, 0);
  } else if (fabric) {
    for (const char* key : {"planes", "rail_optimized", "pxn", "link", "leaf", "spine", "core", "pod_leaves"}) {
      if (fabric->has(key)) fabric->fail(key, "has no meaning with fabric.kind none");
    }
  }
  if (fabric) fabric->reject_unknown();
  top.reject_unknown();

  if (std::optional<Problem> problem = find_problem(config)) {
    std::string message = locate(root, source, problem->key) + ": " + problem->message;
    if (nodes && top.has("nodes") && top.integer("nodes") != *nodes) {
      message += " (with " + std::to_string(*nodes) + " nodes given in place of the file's " +
                 std::to_string(top.integer("nodes")) + ")";
    }
    throw std::invalid_argument(message);
  }
  return config;
}

ClusterConfig load_cluster(const std::string& name_or_path, std::optional<int> nodes) {
  if (std::optional<std::string_view> text = preset_yaml(name_or_path)) {
    // Line numbers of the embedded text would mean nothing to a user: messages name the preset and the key only.
    const std::string source = preset_source(name_or_path);
    return parse_cluster(copy_without_marks(load_yaml_text(std::string(*text), source)), source, nodes);
  }
  std::error_code error;
  if (!std::filesystem::exists(name_or_path, error)) {
    throw std::invalid_argument("unknown cluster '" + name_or_path + "': not a preset (" + joined(preset_names()) +
                                ") and no such file");
  }
  return parse_cluster(load_yaml_file(name_or_path), name_or_path, nodes);
}

}  // namespace moesim::topologies
