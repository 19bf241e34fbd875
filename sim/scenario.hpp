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
//
// Keys of `moesim step` and `moesim plan` (the command-line flag of the same name, with - for _, overrides each;
// the other commands reject them, naming the file and key):
//   seq_len: 4096              # tokens per sequence
//   precision: fp8             # GEMM precision: bf16 | fp8
//   zero: 1                    # ZeRO stage 0..3
//   profile: h.yaml            # cost profile YAML [built in]
//   memoize: true              # reuse clean measurements of repeated collectives
//   comm_sms: 20               # SMs each GPU gives its communication kernels [0: none reserved]
//   routing_samples: 1         # routings sampled per MoE layer; micro-batch m uses sample m mod this
//   layout: dp=8,pp=2,ep=8,mbs=1,gbs=64   # step only: the parallel layout
//   schedule: 1f1b             # step only: 1f1b | interleaved | gpipe
//   mode: train                # step only: train | prefill | decode
//   context: 4096              # step only, decode: tokens already in each sequence's KV cache
//   recompute: full            # none | selective | full (plan: [the lightest that fits])
//   gbs: 256                   # plan only: global batch in sequences
//   mbs: [1, 2]                # plan only: micro-batch sizes to try
//   vpp: [1, 2]                # plan only: model chunks per stage to try
//   max_tp: 8                  # plan only: largest TP and expert-TP
//   etp: false                 # plan only: also try expert tensor parallelism
//   top: 10                    # plan only: layouts to rank
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

// The keys of `moesim step` and `moesim plan`, as written (validated where they are read, except the layout, which
// needs the cluster). `set` lists "FILE:LINE: key" for each key given, for the commands that take none of them.
struct StepKeys {
  std::optional<std::int64_t> seq_len;
  std::optional<std::string> precision;
  std::optional<int> zero;
  std::optional<std::string> profile;
  std::optional<bool> memoize;
  std::optional<int> comm_sms;
  std::optional<int> routing_samples;
  std::optional<std::string> layout;
  std::optional<std::string> schedule;
  std::optional<std::string> mode;
  std::optional<std::int64_t> context;
  std::optional<std::string> recompute;
  std::optional<std::int64_t> gbs;
  std::optional<std::vector<int>> mbs;
  std::optional<std::vector<int>> vpp;
  std::optional<int> max_tp;
  std::optional<bool> etp;
  std::optional<int> top;
  std::vector<std::pair<std::string, std::string>> set;  // (key, "FILE:LINE: key") for each key given
};

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
  StepKeys step_keys;
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

// Throws for the first step or plan key of `spec` that `command` does not take ("layout" for moesim plan, any of
// them for moesim a2a and capacity), naming the file, line and key. `allowed` lists the keys it does take.
void reject_step_keys(const ScenarioSpec& spec, const std::string& command, const std::vector<std::string>& allowed);

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
