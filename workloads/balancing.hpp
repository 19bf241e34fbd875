// DeepSeek-V3's auxiliary-loss-free load balancing, simulated over training steps.
//
// Each expert carries a bias b_e that is added to its router logit for the selection only (the gate weights stay
// unbiased), so its selection weight becomes w_e exp(b_e). After every step the bias moves by a fixed rate gamma
// toward balance: b_e -= gamma where the expert's load (choices routed to it in the step, over all EP groups)
// is above the mean load, b_e += gamma where it is below (DeepSeek-V3 technical report, sec. 2.1.2). The logits
// here are the log-popularity plus Gumbel noise of routing.hpp, so gamma is in units of that logit.
#pragma once

#include <vector>

#include "workloads/load_stats.hpp"
#include "workloads/traffic.hpp"

namespace moesim::workloads {

struct BalancingStep {
  int step = 0;
  LoadStats expert_load;          // choices per expert (before capacity), summed over the EP groups
  LoadStats rank_load;            // copies each rank receives (after capacity), over every rank of every group
  double dropped_fraction = 0.0;  // dropped choices / routed choices, under the options' capacity policy
  std::vector<double> bias;       // the biases this step was routed with
};

// Runs `num_steps` steps of the layer from options.step on (each step its own tokens, and drift if the routing has
// it), starting from options.expert_bias (or zeros), updating the biases by `gamma` after each step. gamma = 0
// gives the unbalanced baseline over the same steps. Throws std::invalid_argument for num_steps < 1, a negative or
// non-finite gamma, or a replayed routing (its choices are fixed).
std::vector<BalancingStep> simulate_bias_balancing(const std::vector<int>& node_of_gpu, const TrafficOptions& options,
                                                   int num_steps, double gamma);

// The loads each rank receives: per group and rank, the copies sent to it (padding included), in global rank order.
std::vector<double> received_per_rank(const LayerTraffic& traffic);

}  // namespace moesim::workloads
