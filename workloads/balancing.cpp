#include "workloads/balancing.hpp"

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace moesim::workloads {

std::vector<double> received_per_rank(const LayerTraffic& traffic) {
  std::vector<double> loads;
  for (const EpGroupTraffic& group : traffic.groups) {
    const std::size_t ep = group.gpus.size();
    for (std::size_t dst = 0; dst < ep; ++dst) {
      double received = 0.0;
      for (std::size_t src = 0; src < ep; ++src) received += static_cast<double>(group.copies_to_rank[src * ep + dst]);
      loads.push_back(received);
    }
  }
  return loads;
}

std::vector<BalancingStep> simulate_bias_balancing(const std::vector<int>& node_of_gpu, const TrafficOptions& options,
                                                   int num_steps, double gamma) {
  if (num_steps < 1) throw std::invalid_argument("steps: must be >= 1, got " + std::to_string(num_steps));
  if (!(std::isfinite(gamma) && gamma >= 0.0)) {
    throw std::invalid_argument("bias rate: must be finite and >= 0, got " + std::to_string(gamma));
  }
  if (options.replay != nullptr) {
    throw std::invalid_argument("bias balancing: a replayed routing has fixed choices; sample one instead");
  }
  TrafficOptions step_options = options;
  if (step_options.expert_bias.empty())
    step_options.expert_bias.assign(static_cast<std::size_t>(options.num_experts), 0.0);
  std::vector<BalancingStep> steps;
  for (int i = 0; i < num_steps; ++i) {
    step_options.step = options.step + i;
    const LayerTraffic traffic = build_layer_traffic(node_of_gpu, step_options);
    BalancingStep s;
    s.step = step_options.step;
    s.bias = step_options.expert_bias;
    s.expert_load = load_stats(traffic.routed_per_expert);
    s.rank_load = load_stats(received_per_rank(traffic));
    const auto routed = std::accumulate(traffic.routed_per_expert.begin(), traffic.routed_per_expert.end(), 0LL);
    const auto dropped = std::accumulate(traffic.dropped_per_expert.begin(), traffic.dropped_per_expert.end(), 0LL);
    s.dropped_fraction = routed > 0 ? static_cast<double>(dropped) / static_cast<double>(routed) : 0.0;
    // The update: toward the mean load, by a fixed step (a sign, not a gradient).
    const double mean = s.expert_load.mean;
    for (std::size_t e = 0; e < step_options.expert_bias.size(); ++e) {
      const auto load = static_cast<double>(traffic.routed_per_expert[e]);
      step_options.expert_bias[e] += load > mean ? -gamma : load < mean ? gamma : 0.0;
    }
    steps.push_back(std::move(s));
  }
  return steps;
}

}  // namespace moesim::workloads
