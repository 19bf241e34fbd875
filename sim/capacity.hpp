// Expert capacity analysis (`moesim capacity`): how many token copies overflow expert capacity, how uneven the
// expert and rank loads are, and what padding costs, over a list of capacity factors and a set of layers.
//
// Theory of operation. Each analysed layer is routed token by token (workloads/traffic.hpp): once without a
// capacity limit (the routed load: every top-k choice where the router put it) and once per capacity factor F
// under the policy (drop, reroute or pad at C = ceil(T k / E x F) per source rank and expert). Every one of those
// builds uses the same seed, layer and step, and a token's choices never depend on capacity, so every factor sees
// the very same routing: only what the policy does with the overflow changes between rows. That is what makes the
// rows comparable, and the tests check it (routed_per_expert is identical across factors).
//
// Shape. With a cluster, the whole cluster is analysed: all its EP groups of `ep` consecutive GPUs, with the
// cluster's scale-up units as nodes (for node limits). Without one, a single EP group of `ep` GPUs on nodes of
// kGpusPerNodeWithoutCluster GPUs. Capacity is per source rank, so the group count only adds samples.
//
// Statistics. Loads are LoadStats (workloads/load_stats.hpp): per expert (copies kept and computed, summed over
// the EP groups) and per rank (copies each GPU receives, padding included). Each layer gets its own, and the row
// gives their mean over the layers, field by field (the typical layer, not the pooled vector). Fractions over all
// layers are ratios of sums: dropped choices / routed choices, padded slots / slots sent.
//
// Bias balancing (optional): DeepSeek-V3's auxiliary-loss-free balancing (workloads/balancing.hpp) over a number of
// steps on the first analysed layer, under the first factor's capacity, with the given rate and with rate 0 as the
// baseline over the same tokens.
//
// Cost: (1 + number of factors) x layers traffic builds of tokens_per_rank x GPUs x top-k picks each, plus 2 x steps
// builds for the balancing; memory is one layer at a time (plus the recorded routing when asked for).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reports/results.pb.h"
#include "sim/scenario.hpp"
#include "workloads/capacity.hpp"
#include "workloads/model.hpp"
#include "workloads/routing.hpp"
#include "workloads/routing_file.hpp"
#include "workloads/traffic.hpp"

namespace moesim::sim {

// Without a cluster, the EP group's GPUs sit on nodes of this many (a DGX/HGX server), which only node limits see.
inline constexpr int kGpusPerNodeWithoutCluster = 8;
// Without a cluster, the default EP size is gcd(experts, this): one expert group per GPU up to 64 GPUs.
inline constexpr int kMaxDefaultEpWithoutCluster = 64;

struct CapacityConfig {
  std::string cluster_name;      // empty without a cluster
  std::vector<int> node_of_gpu;  // the cluster's scale-up unit of each GPU; empty: no cluster (see Shape above)
  workloads::MoeModel model;
  int ep = 0;  // 0: gcd(GPUs, experts) with a cluster, gcd(experts, 64) without
  std::int64_t tokens_per_rank = 4096;
  workloads::RoutingSpec routing;
  std::shared_ptr<const workloads::RecordedRouting> replay;  // replayed routing instead of sampling
  workloads::Placement placement = workloads::Placement::kContiguous;
  std::uint64_t seed = 1;
  int step = 0;  // training step (drift), and the first step of the balancing
  workloads::CapacityPolicy policy = workloads::CapacityPolicy::kDropPosition;
  std::vector<double> factors = {1.0, 1.25, 1.5, 2.0};  // each finite and > 0; one table row each
  std::int64_t min_capacity = 0;
  // The MoE-layer indices to analyse; empty: 0 .. model.num_moe_layers() - 1, or the layers of the replayed file.
  std::vector<int> layers;
  int histogram_bins = 20;  // per-expert load histogram of each layer
  int balancing_steps = 0;  // 0: no bias balancing
  double bias_rate = 0.0;   // gamma of the balancing
};

// Runs the analysis. When `routing_out` is given, it receives the routing of the analysed layers (top-k and scores
// of every token, as a routing file holds them), which replayed with the same model, EP, tokens, factors and
// policy gives the same counts. Throws std::invalid_argument naming the key for inputs that do not fit.
reports::CapacityResult run_capacity(const CapacityConfig& config, workloads::RecordedRouting* routing_out = nullptr);

// The configuration a scenario describes: the model, tokens, EP, routing (or replayed file), placement, seed, step,
// the policy, its one capacity factor and the minimum capacity; a cluster when the scenario names one (its GPUs
// form the shape). The layers are left empty (all of them): which to analyse, further factors and the balancing are
// the caller's. Throws std::invalid_argument naming
// the key (a missing model, a plain all-to-all's bytes_per_rank, replica_slots, which this analysis does not model).
CapacityConfig resolve_capacity(const ScenarioSpec& spec);

}  // namespace moesim::sim
