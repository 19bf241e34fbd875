// Routing of one MoE layer: which experts each token chooses, sampled token by token.
//
// Most distributions give every expert a popularity p_e. Each token then picks num_topk distinct experts by
// successive sampling without replacement (pick e with probability p_e among the experts not yet picked), which
// is the law of the top-k of (log p_e + Gumbel noise): the Plackett-Luce model of a router's scores.
//   uniform       p_e = 1 / E
//   zipf:S        p_e proportional to 1 / rank(e)^S, where rank is a seeded random permutation of the experts, so
//                 the hot experts land on arbitrary ranks
//   dirichlet:A   p ~ Dirichlet(A, ..., A): p_e = G_e / sum G, G_e ~ Gamma(A, 1) independent; E[p_e] = 1/E and
//                 Var(p_e) = (1/E)(1 - 1/E) / (E A + 1), so small A concentrates the load on a few experts
//   lognormal:CV  p_e proportional to exp(sigma Z_e), Z_e standard normal, sigma = sqrt(ln(1 + CV^2)): the
//                 log-normal law whose coefficient of variation sqrt(exp(sigma^2) - 1) is CV, so the expected
//                 per-expert load has coefficient of variation CV across experts (exactly so under top-1; top-k
//                 without replacement flattens it, as the hot experts cannot be picked twice)
// `hot:H:P` is defined on the choices instead, because a popularity mass P on H experts does not give them a share
// P of the choices once k > 1 (a token cannot pick a hot expert twice, so the cold ones absorb the excess). Each
// token makes n_h hot picks, n_h = floor(k P) or ceil(k P), the latter with probability frac(k P), so E[n_h] = k P
// exactly; the hot picks are uniform without replacement among the H hot experts, the other k - n_h uniform
// without replacement among the E - H cold ones. The hot set is a seeded random choice of H experts. It needs
// k P <= H and k (1 - P) <= E - H, otherwise the share cannot be met.
//
// Limits, as in DeepSeek's routing: a node limit (V3, node-limited routing) restricts each token to experts on at
// most node_limit nodes (scale-up units), a device limit (V2, device-limited routing) to experts on at most
// device_limit EP ranks; both may be set. Once a token has touched the limit, experts on other nodes (ranks) are
// no longer candidates, and each later pick is drawn from the remaining candidates by the same law, so the limited
// routing is exact conditional sampling. A hot token makes its hot picks first (hot experts carry the highest
// router scores), then its cold ones.
//
// Group-limited routing, as in DeepSeek-V3: the experts form expert_groups groups of E / G consecutive ids; each
// token ranks the groups by the sum of their two best router scores, keeps the best group_limit of them, and takes
// its top-k among their experts. This is the router's own selection on scores (see "Scores" below), not the
// sequential conditional sampling of the node and device limits.
//
// Scores. A token's picks come with router scores: the logits l_e = log w_e + G_e (G_e standard Gumbel) whose
// top-k the successive sampling above realises. They are drawn top-down without drawing all E of them: the largest
// logit over a set of experts of total weight W is log W + Gumbel, its expert is e with probability w_e / W, and
// given the previous pick's logit m the next one is a Gumbel of location log(W - picked weight) truncated below m.
// So every pick costs O(1), and a token's ranked list can be continued past its top-k (the reroute policy).
//
// Layers and steps. Each layer draws its own popularity (a seeded permutation or draw per layer: layer 0 uses the
// seed as it is, layer l > 0 the seed mixed with l), so the hot experts differ between layers, as measured in real
// MoE models. With drift:SIGMA, the popularity moves between training steps: the log weight of every expert takes
// a random walk, log w_e(s) = log w_e(0) + SIGMA (Z_e,1 + ... + Z_e,s), Z standard normal drawn per (layer, step),
// so after s steps the log weights have moved by SIGMA sqrt(s) on average. Expert biases (auxiliary-loss-free
// balancing, workloads/balancing.hpp) add to the log weights in the same way.
//
// Sampling is seeded per (seed, layer, step, EP group, rank), so results do not depend on thread count or order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/rng.hpp"

namespace moesim::workloads {

struct RoutingSpec {
  enum class Kind { kUniform, kZipf, kDirichlet, kLognormal, kHot } kind = Kind::kUniform;
  double zipf_exponent = 0.0;    // S
  double dirichlet_alpha = 0.0;  // A
  double lognormal_cv = 0.0;     // CV
  int hot_experts = 0;           // H
  double hot_share = 0.0;        // P
  int node_limit = 0;            // 0: no limit
  int device_limit = 0;          // 0: no limit
  int expert_groups = 0;         // G, with group_limit: group-limited routing (0: none)
  int group_limit = 0;           // g: a token's experts come from its g best groups
  double drift = 0.0;            // SIGMA: per-step standard deviation of the log popularity (0: none)

  // "zipf:1.2, node-limit 4, device-limit 6, groups 8 top-4, drift 0.05"; the distribution part parses back to
  // the same spec.
  std::string describe() const;
};

// The seed of a layer's routing: the seed itself for layer 0 (so one-layer runs keep their streams), mixed with
// the layer index otherwise.
std::uint64_t layer_seed(std::uint64_t seed, int layer);

// drift:SIGMA only: the log-weight offset of each expert after `step` steps of the random walk (all zero at step 0
// or without drift), drawn from `seed` (a layer seed).
std::vector<double> drift_offsets(const RoutingSpec& spec, int num_experts, std::uint64_t seed, int step);

// Parses "uniform", "zipf:S" (S > 0), "dirichlet:A" (A > 0), "lognormal:CV" (CV > 0) or "hot:H:P" (integer H >= 1,
// 0 < P < 1); throws std::invalid_argument listing the forms. The bounds that need E and k (H < E, k P <= H,
// k (1 - P) <= E - H) are checked where those are known (expert_popularity, build_layer_traffic).
RoutingSpec parse_routing(const std::string& text);

// The popularity of each expert (sums to 1), with the seeded expert permutation applied. For hot:H:P, the expected
// share of the choices per expert: P / H for a hot expert, (1 - P) / (E - H) for a cold one.
std::vector<double> expert_popularity(const RoutingSpec& spec, int num_experts, std::uint64_t seed);

// hot:H:P only: the H hot experts (ascending), a seeded choice the same for every layer, group and thread.
std::vector<int> hot_experts(const RoutingSpec& spec, int num_experts, std::uint64_t seed);

// Standard normal variate by Box-Muller (portable, unlike std::normal_distribution).
double normal_variate(Rng& rng);
// Natural log of a Gamma(shape, 1) variate, shape > 0, by Marsaglia and Tsang (with the U^(1/shape) boost below
// shape 1). The log keeps tiny variates (shape 0.01 gives e^-100 and less) apart instead of flushing them to 0.
double log_gamma_variate(double shape, Rng& rng);

}  // namespace moesim::workloads
