#include "sim/scenario.hpp"

#include <stdexcept>

#include "common/config.hpp"
#include "workloads/routing.hpp"

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

ScenarioSpec default_scenario() {
  return apply_scenario(ScenarioSpec{}, load_yaml_text(kDefaultScenarioYaml, "<default scenario>"),
                        "<default scenario>");
}

ScenarioSpec apply_scenario(ScenarioSpec spec, const YAML::Node& node, const std::string& source) {
  const ConfigMap map(node, source);
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
  } else if (spec.model_inline.IsDefined() && !spec.model_inline.IsNull()) {
    a.model = workloads::parse_model(spec.model_inline, spec.model_source);
  } else {
    if (spec.model.empty())
      throw std::invalid_argument("model: missing (a preset name, a model YAML or a config.json)");
    a.model = workloads::load_model(spec.model);
  }
  constexpr std::int64_t kDefaultTokensPerRank = 4096;
  a.tokens_per_rank = spec.tokens_per_rank.value_or(a.model && a.model->tokens_per_rank ? *a.model->tokens_per_rank
                                                                                        : kDefaultTokensPerRank);
  a.ep = spec.ep;
  a.routing = workloads::parse_routing(spec.routing);
  a.routing.node_limit = spec.node_limit;
  a.routing.device_limit = spec.device_limit;
  a.placement = workloads::parse_placement(spec.placement);
  a.algorithm = collectives::parse_algorithm(spec.algorithm);
  a.token_dedup = spec.token_dedup;
  a.seed = spec.seed;
  a.epsilon = spec.epsilon;
  return out;
}

}  // namespace moesim::sim
