#include "sim/scenario.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "common/config.hpp"
#include "workloads/capacity.hpp"
#include "workloads/routing.hpp"
#include "workloads/routing_file.hpp"

namespace moesim::sim {

const char* const kDefaultScenarioYaml =
    R"(# moesim's embedded default: one DeepSeek-V3 MoE layer on 32 nodes (256 GPUs) of h800,
# 64-way expert parallelism as in DeepSeek-V3's training, node-limited routing (at most 4 nodes per token)
# over a Zipf(0.5)-skewed expert popularity, and DeepEP-style rail forwarding.
cluster: h800
nodes: 32
model: deepseek-v3
tokens_per_rank: 4096
ep: 64
routing: zipf:0.5
node_limit: 4
algorithm: rail
token_dedup: true
seed: 1
)";

std::vector<std::string> capacity_policy_names() {
  std::vector<std::string> names;
  for (const auto policy : {workloads::CapacityPolicy::kDropless, workloads::CapacityPolicy::kDropPosition,
                            workloads::CapacityPolicy::kDropScore, workloads::CapacityPolicy::kReroute,
                            workloads::CapacityPolicy::kPadded}) {
    names.emplace_back(workloads::capacity_policy_name(policy));
  }
  return names;
}

ScenarioSpec default_scenario() {
  return apply_scenario(ScenarioSpec{}, load_yaml_text(kDefaultScenarioYaml, "<default scenario>"),
                        "<default scenario>");
}

namespace {

// An integer in [1, max], or a list of them: `mbs: 2` or `mbs: [1, 2]`.
std::vector<int> int_list(const ConfigMap& map, std::string_view key, int max) {
  const YAML::Node node = map.raw(key);
  std::vector<int> values;
  auto read = [&](const YAML::Node& item) {
    long long value = 0;
    if (!item.IsScalar() || !YAML::convert<long long>::decode(item, value) || value < 1 || value > max) {
      map.fail(key, "expected an integer in [1, " + std::to_string(max) + "] or a list of them");
    }
    values.push_back(static_cast<int>(value));
  };
  if (node.IsSequence()) {
    for (const YAML::Node& item : node) read(item);
    if (values.empty()) map.fail(key, "expected at least one value");
  } else {
    read(node);
  }
  return values;
}

void apply_step_keys(StepKeys& keys, const ConfigMap& map) {
  const std::vector<std::string> names = {
      "seq_len", "precision", "zero",      "profile", "memoize", "comm_sms", "routing_samples", "layout", "schedule",
      "mode",    "context",   "recompute", "gbs",     "mbs",     "vpp",      "max_tp",          "etp",    "top"};
  for (const std::string& name : names) {
    if (map.has(name)) keys.set.emplace_back(name, map.where(name));
  }
  if (map.has("seq_len")) keys.seq_len = map.integer("seq_len", std::nullopt, 1, 1 << 24);
  if (map.has("precision")) keys.precision = map.choice("precision", {"bf16", "fp8"});
  if (map.has("zero")) keys.zero = static_cast<int>(map.integer("zero", std::nullopt, 0, 3));
  if (map.has("profile")) keys.profile = map.string("profile");
  if (map.has("memoize")) keys.memoize = map.boolean("memoize");
  if (map.has("comm_sms")) keys.comm_sms = static_cast<int>(map.integer("comm_sms", std::nullopt, 0, 1'000'000));
  if (map.has("routing_samples")) {
    keys.routing_samples = static_cast<int>(map.integer("routing_samples", std::nullopt, 1, 1'000'000));
  }
  if (map.has("layout")) keys.layout = map.string("layout");
  if (map.has("schedule")) keys.schedule = map.choice("schedule", {"1f1b", "interleaved", "gpipe"});
  if (map.has("mode")) keys.mode = map.choice("mode", {"train", "prefill", "decode"});
  if (map.has("context")) keys.context = map.integer("context", std::nullopt, 1, 1LL << 30);
  if (map.has("recompute")) keys.recompute = map.choice("recompute", {"none", "selective", "full"});
  if (map.has("gbs")) keys.gbs = map.integer("gbs", std::nullopt, 1, 1LL << 40);
  if (map.has("mbs")) keys.mbs = int_list(map, "mbs", 1 << 20);
  if (map.has("vpp")) keys.vpp = int_list(map, "vpp", 1 << 10);
  if (map.has("max_tp")) keys.max_tp = static_cast<int>(map.integer("max_tp", std::nullopt, 1, 1'000'000));
  if (map.has("etp")) keys.etp = map.boolean("etp");
  if (map.has("top")) keys.top = static_cast<int>(map.integer("top", std::nullopt, 1, 1'000'000));
}

}  // namespace

void reject_step_keys(const ScenarioSpec& spec, const std::string& command, const std::vector<std::string>& allowed) {
  for (const auto& [key, where] : spec.step_keys.set) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string message = where;
      message += ": not a key of moesim ";
      message += command;
      throw std::invalid_argument(message);
    }
  }
}

ScenarioSpec apply_scenario(ScenarioSpec spec, const YAML::Node& node, const std::string& source) {
  const ConfigMap map(node, source);
  apply_step_keys(spec.step_keys, map);
  if (map.has("cluster")) {
    const YAML::Node c = map.raw("cluster");
    if (c.IsMap()) {
      spec.cluster_inline = c;
      spec.cluster_source = source + ": cluster";
      spec.cluster.clear();
    } else {
      spec.cluster = map.string("cluster");
      spec.cluster_inline = YAML::Node();
    }
    spec.nodes.reset();  // a new cluster brings its own node count unless this mapping sets one
  }
  if (map.has("nodes")) spec.nodes = static_cast<int>(map.integer("nodes", std::nullopt, 1, 1'000'000));
  if (map.has("model")) {
    const YAML::Node m = map.raw("model");
    if (m.IsMap()) {
      spec.model_inline = m;
      spec.model_source = source + ": model";
      spec.model.clear();
    } else {
      spec.model = map.string("model");
      spec.model_inline = YAML::Node();
    }
  }
  if (map.has("bytes_per_rank")) spec.bytes_per_rank = map.size("bytes_per_rank");
  if (map.has("tokens_per_rank")) spec.tokens_per_rank = map.integer("tokens_per_rank", std::nullopt, 0, 1LL << 40);
  spec.ep = static_cast<int>(map.integer("ep", spec.ep, 0, 1'000'000));
  spec.routing = map.string("routing", spec.routing);
  spec.node_limit = static_cast<int>(map.integer("node_limit", spec.node_limit, 0, 1'000'000));
  spec.device_limit = static_cast<int>(map.integer("device_limit", spec.device_limit, 0, 1'000'000));
  if (map.has("routing_file")) spec.routing_file = map.string("routing_file");
  spec.expert_groups = static_cast<int>(map.integer("expert_groups", spec.expert_groups, 0, 1'000'000));
  spec.group_limit = static_cast<int>(map.integer("group_limit", spec.group_limit, 0, 1'000'000));
  spec.drift = map.number("drift", spec.drift, 0.0, 100.0);
  if (map.has("layer")) spec.layer = static_cast<int>(map.integer("layer", std::nullopt, 0, 1'000'000));
  spec.step = static_cast<int>(map.integer("step", spec.step, 0, 1'000'000'000));
  if (map.has("capacity_policy")) spec.capacity_policy = map.choice("capacity_policy", capacity_policy_names());
  if (map.has("capacity_factor")) spec.capacity_factor = map.number("capacity_factor", std::nullopt, 1e-6, 1e6);
  spec.min_capacity = map.integer("min_capacity", spec.min_capacity, 0, 1LL << 40);
  spec.replica_slots = static_cast<int>(map.integer("replica_slots", spec.replica_slots, 0, 1'000'000));
  spec.placement = map.choice("placement", {"contiguous", "round-robin"}, spec.placement);
  spec.algorithm = map.choice("algorithm", collectives::algorithm_names(), spec.algorithm);
  spec.token_dedup = map.boolean("token_dedup", spec.token_dedup);
  spec.seed = static_cast<std::uint64_t>(map.integer("seed", static_cast<std::int64_t>(spec.seed), 0));
  spec.epsilon = map.number("epsilon", spec.epsilon, 0.0, 1.0);
  // Validate the routing text here too, so the error names the file and key.
  try {
    workloads::parse_routing(spec.routing);
  } catch (const std::invalid_argument& e) {
    map.fail("routing", e.what());
  }
  map.reject_unknown();
  return spec;
}

workloads::MoeModel resolve_model(const ScenarioSpec& spec) {
  if (spec.model_inline.IsDefined() && !spec.model_inline.IsNull()) {
    return workloads::parse_model(spec.model_inline, spec.model_source);
  }
  if (spec.model.empty()) throw std::invalid_argument("model: missing (a preset name, a model YAML or a config.json)");
  return workloads::load_model(spec.model);
}

std::int64_t resolve_tokens_per_rank(const ScenarioSpec& spec, const workloads::MoeModel& model) {
  constexpr std::int64_t kDefaultTokensPerRank = 4096;
  return spec.tokens_per_rank.value_or(model.tokens_per_rank.value_or(kDefaultTokensPerRank));
}

workloads::RoutingSpec resolve_routing(const ScenarioSpec& spec) {
  workloads::RoutingSpec routing = workloads::parse_routing(spec.routing);
  routing.node_limit = spec.node_limit;
  routing.device_limit = spec.device_limit;
  routing.expert_groups = spec.expert_groups;
  routing.group_limit = spec.group_limit;
  routing.drift = spec.drift;
  return routing;
}

std::shared_ptr<const workloads::RecordedRouting> resolve_replay(const ScenarioSpec& spec,
                                                                 const workloads::MoeModel& model) {
  if (spec.routing_file.empty()) return nullptr;
  return std::make_shared<const workloads::RecordedRouting>(
      workloads::read_routing_file(spec.routing_file, model.num_experts));
}

ScenarioSpec load_scenario_file(ScenarioSpec base, const std::string& path) {
  return apply_scenario(std::move(base), load_yaml_file(path), path);
}

ResolvedScenario resolve(const ScenarioSpec& spec) {
  ResolvedScenario out;
  if (spec.cluster_inline.IsDefined() && !spec.cluster_inline.IsNull()) {
    out.cluster = topologies::parse_cluster(spec.cluster_inline, spec.cluster_source, spec.nodes);
  } else {
    if (spec.cluster.empty()) throw std::invalid_argument("cluster: missing (a preset name or a cluster YAML file)");
    out.cluster = topologies::load_cluster(spec.cluster, spec.nodes);
  }
  A2aConfig& a = out.a2a;
  a.cluster_name = out.cluster.name;
  if (spec.bytes_per_rank) {
    a.bytes_per_rank = *spec.bytes_per_rank;
    if (!(a.bytes_per_rank > 0.0)) throw std::invalid_argument("bytes_per_rank: must be > 0");
    if (!spec.routing_file.empty()) {
      throw std::invalid_argument("routing_file: replaying routing needs a model, not bytes_per_rank");
    }
  } else {
    a.model = resolve_model(spec);
    a.tokens_per_rank = resolve_tokens_per_rank(spec, *a.model);
    a.replay = resolve_replay(spec, *a.model);
  }
  a.ep = spec.ep;
  a.routing = resolve_routing(spec);
  a.placement = workloads::parse_placement(spec.placement);
  a.algorithm = collectives::parse_algorithm(spec.algorithm);
  a.token_dedup = spec.token_dedup;
  a.seed = spec.seed;
  a.epsilon = spec.epsilon;
  a.layer = spec.layer.value_or(0);
  a.step = spec.step;
  a.capacity.policy = workloads::parse_capacity_policy(spec.capacity_policy.value_or("dropless"));
  a.capacity.factor = spec.capacity_factor.value_or(1.0);
  a.capacity.min_capacity = spec.min_capacity;
  a.replica_slots = spec.replica_slots;
  return out;
}

}  // namespace moesim::sim
