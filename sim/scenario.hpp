// A scenario bundles what one `moesim a2a` run needs: cluster, model, routing and options. It comes from a
// scenario file (--scenario), then command-line flags, over the neutral defaults of ScenarioSpec; the embedded
// default scenario runs when nothing names a cluster or a workload.
//
//   cluster: h800              # preset name, cluster YAML path, or an inline mapping in the cluster schema
//   nodes: 32                  # node count (overrides the preset's or file's)
//   model: deepseek-v3         # preset, model YAML, HF config.json, or an inline mapping
//   tokens_per_rank: 4096      # [the model file's tokens_per_rank, else 4096]
//   ep: 64                     # EP group size (default: gcd(GPUs, experts))
//   placement: contiguous      # contiguous | round-robin: experts over the ranks of a group
//   routing: zipf:1.0          # uniform | zipf:S | dirichlet:A | lognormal:CV | hot:H:P
//   routing_file: r.csv        # replay recorded routing instead (format: workloads/routing_file.hpp)
//   node_limit: 4              # at most this many nodes per token (0: no limit)
//   device_limit: 0            # at most this many EP ranks per token (0: no limit)
//   expert_groups: 8           # group-limited routing: experts in this many groups ...
//   group_limit: 4             # ... and each token's experts from its best this many groups (0: none)
//   drift: 0.05                # per-step standard deviation of the log popularity (0: none)
//   layer: 0                   # which MoE layer (each has its own popularity, or its rows of a file)
//   step: 0                    # which training step (drift)
//   capacity_policy: dropless  # dropless | drop-position | drop-score | reroute | padded
//   capacity_factor: 1.25      # C = ceil(tokens x top_k / experts x factor) per rank and expert [1.0]
//   min_capacity: 0            # C is never below this
//   replica_slots: 0           # EPLB what-if: extra expert slots per rank for replicas of hot experts
//   algorithm: rail            # direct | pairwise | hierarchical | rail
//   token_dedup: true          # a token bound for several experts on one rank (node) travels once
//   seed: 1
//   epsilon: 0.01              # completion window of the network (see sim/network/network.hpp)
//   bytes_per_rank: 64 MiB     # instead of a model: a plain all-to-all, each rank's send buffer
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "sim/a2a.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::sim {

// The scenario before resolution: names and values as written, so later layers can override them.
// NOLINTNEXTLINE(bugprone-exception-escape): copying a YAML::Node allocates; a failure there is fatal anyway.
struct ScenarioSpec {
  std::string cluster;  // preset or path; ignored when cluster_inline is set
  YAML::Node cluster_inline;
  std::string cluster_source;  // for messages about an inline cluster
  std::optional<int> nodes;
  std::string model;
  YAML::Node model_inline;
  std::string model_source;
  std::optional<double> bytes_per_rank;
  std::optional<std::int64_t> tokens_per_rank;  // unset: the model file's, else 4096
  int ep = 0;
  std::string routing = "uniform";
  std::string routing_file;  // empty: sample `routing`
  int node_limit = 0;
  int device_limit = 0;
  int expert_groups = 0;
  int group_limit = 0;
  double drift = 0.0;
  std::optional<int> layer;  // unset: the command's default (a2a: 0; capacity: every layer)
  int step = 0;
  std::optional<std::string> capacity_policy;  // unset: the command's default (a2a: dropless; capacity: drop-position)
  std::optional<double> capacity_factor;       // unset: the command's default (a2a: 1.0; capacity: a list)
  std::int64_t min_capacity = 0;
  int replica_slots = 0;
  std::string placement = "contiguous";
  std::string algorithm = "direct";
  bool token_dedup = true;
  std::uint64_t seed = 1;
  double epsilon = network::kDefaultEpsilon;
};

// "dropless", "drop-position", ...: the capacity policies, for key validation and help.
std::vector<std::string> capacity_policy_names();

// The embedded default: one DeepSeek-V3 MoE layer on 32 nodes of h800.
ScenarioSpec default_scenario();
extern const char* const kDefaultScenarioYaml;

// Applies a scenario mapping on top of `base`. `source` names the file in messages.
ScenarioSpec apply_scenario(ScenarioSpec base, const YAML::Node& node, const std::string& source);
ScenarioSpec load_scenario_file(ScenarioSpec base, const std::string& path);

struct ResolvedScenario {
  topologies::ClusterConfig cluster;
  A2aConfig a2a;
};

// Loads cluster and model and checks every value; throws std::invalid_argument naming what is wrong.
ResolvedScenario resolve(const ScenarioSpec& spec);

// The workload half of resolve(), for commands that need no cluster. The model (a preset, file or inline
// mapping; throws if none is named), the tokens per rank (the spec's, else the model's, else 4096), the routing
// spec with its limits, groups and drift, and the replayed routing file (null when sampling).
workloads::MoeModel resolve_model(const ScenarioSpec& spec);
std::int64_t resolve_tokens_per_rank(const ScenarioSpec& spec, const workloads::MoeModel& model);
workloads::RoutingSpec resolve_routing(const ScenarioSpec& spec);
std::shared_ptr<const workloads::RecordedRouting> resolve_replay(const ScenarioSpec& spec,
                                                                 const workloads::MoeModel& model);

}  // namespace moesim::sim
