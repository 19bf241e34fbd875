// Routing of one MoE layer: which experts each token chooses, sampled token by token.
//
// A distribution gives every expert a popularity p_e. Each token then picks num_topk distinct experts by
// successive sampling without replacement (pick e with probability p_e among the experts not yet picked), which
// is the law of the top-k of (log p_e + Gumbel noise): the Plackett-Luce model of a router's scores.
//   uniform   p_e = 1 / E
//   zipf:S    p_e proportional to 1 / rank(e)^S, where rank is a seeded random permutation of the experts, so
//             the hot experts land on arbitrary ranks
// A node limit M (DeepSeek-V3's node-limited routing) restricts each token to experts on at most M nodes: once
// a token has picked experts on M distinct nodes, experts elsewhere are no longer candidates.
//
// Sampling is seeded per (seed, EP group, rank), so results do not depend on thread count or order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moesim::workloads {

struct RoutingSpec {
  enum class Kind { kUniform, kZipf } kind = Kind::kUniform;
  double zipf_exponent = 0.0;
  int node_limit = 0;  // 0: no limit

  std::string describe() const;  // "zipf:1.2, node-limit 4"
};

// Parses "uniform" or "zipf:S" (S > 0); throws std::invalid_argument saying what was expected.
RoutingSpec parse_routing(const std::string& text);

// The popularity of each expert (sums to 1), with the seeded expert permutation applied.
std::vector<double> expert_popularity(const RoutingSpec& spec, int num_experts, std::uint64_t seed);

}  // namespace moesim::workloads
