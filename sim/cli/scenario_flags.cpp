#include "sim/cli/scenario_flags.hpp"

#include <limits>
#include <stdexcept>
#include <string>

#include "common/units.hpp"
#include "sim/network/network.hpp"
#include "workloads/capacity.hpp"

namespace moesim::sim::cli {

void declare_scenario_flags(Args& args) {
  args.option("scenario", "FILE", "scenario YAML bundling cluster, model, routing and options");
  args.option("cluster", "C", "cluster preset (dgx-h100, dgx-a100, h800, gb200-nvl72) or cluster YAML");
  args.option("nodes", "N", "node count (overrides the preset's default)");
  args.option("model", "M",
              "model preset (mixtral-8x7b, deepseek-v3, qwen3-30b-a3b, switch-base-128),\nmodel YAML or Hugging Face "
              "config.json");
  args.option("tokens-per-rank", "T", "tokens routed by each rank (default 4096)");
  args.option("ep", "N", "expert-parallel group size (default gcd(GPUs, experts)); groups run at once");
  args.option("placement", "P", "contiguous (rank r holds experts [rE/ep, (r+1)E/ep)) | round-robin (e on e % ep)");
  args.option("routing", "R",
              "expert popularity (default uniform):\n"
              "  uniform       every expert equally likely\n"
              "  zipf:S        Zipf with exponent S > 0 over a seeded ranking of the experts\n"
              "  dirichlet:A   popularity drawn from Dirichlet(A, ..., A), A > 0 (small A: few hot experts)\n"
              "  lognormal:CV  log-normal per-expert load with coefficient of variation CV > 0\n"
              "  hot:H:P       H hot experts receive a fraction P of all expert choices");
  args.option("node-limit", "M", "at most M nodes per token, DeepSeek-V3 style (0: no limit)");
  args.option("device-limit", "M", "at most M EP ranks per token, DeepSeek-V2 style (0: no limit)");
  args.option("routing-file", "FILE",
              "replay recorded routing (CSV: layer,token,e0..e{k-1}[,s0..s{k-1}]; see README)\ninstead of sampling");
  args.option("expert-groups", "G", "group-limited routing (DeepSeek-V3): experts in G groups of E/G ...");
  args.option("group-limit", "g", "... and each token's experts from its g best groups (0: none)");
  args.option("drift", "SIGMA", "per-step standard deviation of the log popularity (0: none)");
  args.option("layer", "L", "which MoE layer (each has its own popularity, or its rows of a file; default 0)");
  args.option("step", "S", "which training step, for --drift (default 0)");
  args.option("policy", "P",
              "capacity policy: dropless | drop-position | drop-score | reroute | padded\n(default: dropless for a2a, "
              "drop-position for capacity)");
  args.option("min-capacity", "C", "expert capacity is never below C (default 0)");
  args.option("replica-slots", "N",
              "EPLB what-if: N extra expert slots per rank for replicas of hot experts;\nreports the layer with and "
              "without them");
}

void declare_network_flags(Args& args) {
  args.option("algorithm", "A", "direct | pairwise | hierarchical | rail");
  args.option("token-dedup", "on|off",
              "a token bound for several experts on one rank (node) travels once (on)\nor once per expert (off)");
  args.option("bytes-per-rank", "B",
              "plain all-to-all instead of a layer: each rank's send buffer (e.g. 64MiB),\nsplit evenly over the "
              "group, as nccl-tests' alltoall");
  args.option("epsilon", "E",
              "network completion window, relative (default " + std::to_string(network::kDefaultEpsilon).substr(0, 4) +
                  "; 0 = exact, slower)");
}

ScenarioSpec scenario_from_flags(const Args& args, bool allow_default) {
  const bool names_something =
      args.has("scenario") || args.has("cluster") || args.has("model") || args.has("bytes-per-rank");
  ScenarioSpec spec = names_something || !allow_default ? ScenarioSpec{} : default_scenario();
  if (auto path = args.get("scenario")) spec = load_scenario_file(std::move(spec), *path);
  if (auto v = args.get("cluster")) {
    spec.cluster = *v;
    spec.cluster_inline = YAML::Node();
    if (!args.has("nodes")) spec.nodes.reset();  // a new cluster brings its own default node count
  }
  if (auto v = args.get_int("nodes", 1, 1'000'000)) spec.nodes = static_cast<int>(*v);
  if (auto v = args.get("model")) {
    spec.model = *v;
    spec.model_inline = YAML::Node();
    spec.bytes_per_rank.reset();
  }
  if (auto v = args.get_int("tokens-per-rank", 0, 1LL << 40)) spec.tokens_per_rank = *v;
  if (auto v = args.get_int("ep", 1, 1'000'000)) spec.ep = static_cast<int>(*v);
  if (auto v = args.get("routing")) spec.routing = *v;
  if (auto v = args.get("placement")) spec.placement = *v;
  if (auto v = args.get_int("node-limit", 0, 1'000'000)) spec.node_limit = static_cast<int>(*v);
  if (auto v = args.get_int("device-limit", 0, 1'000'000)) spec.device_limit = static_cast<int>(*v);
  if (auto v = args.get("routing-file")) spec.routing_file = *v;
  if (auto v = args.get_int("expert-groups", 0, 1'000'000)) spec.expert_groups = static_cast<int>(*v);
  if (auto v = args.get_int("group-limit", 0, 1'000'000)) spec.group_limit = static_cast<int>(*v);
  if (auto v = args.get_double("drift", 0.0, 100.0)) spec.drift = *v;
  if (auto v = args.get_int("layer", 0, 1'000'000)) spec.layer = static_cast<int>(*v);
  if (auto v = args.get_int("step", 0, 1'000'000'000)) spec.step = static_cast<int>(*v);
  if (auto v = args.get("policy")) {
    workloads::parse_capacity_policy(*v);  // throws, naming the policies
    spec.capacity_policy = *v;
  }
  if (auto v = args.get_int("min-capacity", 0, 1LL << 40)) spec.min_capacity = *v;
  if (auto v = args.get_int("replica-slots", 0, 1'000'000)) spec.replica_slots = static_cast<int>(*v);
  if (auto v = args.get("algorithm")) spec.algorithm = *v;
  if (auto v = args.get("token-dedup")) {
    if (*v != "on" && *v != "off") throw std::invalid_argument("--token-dedup: expected on or off, got '" + *v + "'");
    spec.token_dedup = *v == "on";
  }
  if (auto v = args.get("bytes-per-rank")) {
    try {
      spec.bytes_per_rank = v->find_first_not_of("0123456789") == std::string::npos ? std::stod(*v) : parse_size(*v);
    } catch (const std::exception& e) {
      throw std::invalid_argument("--bytes-per-rank: " + std::string(e.what()));
    }
  }
  if (auto v = args.get_int("seed", 0, std::numeric_limits<long long>::max()))
    spec.seed = static_cast<std::uint64_t>(*v);
  if (auto v = args.get_double("epsilon", 0.0, 1.0)) spec.epsilon = *v;

  return spec;
}

}  // namespace moesim::sim::cli
