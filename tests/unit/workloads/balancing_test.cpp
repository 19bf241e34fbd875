#include "workloads/balancing.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

namespace moesim::workloads {
namespace {

TrafficOptions skewed_layer() {
  TrafficOptions o;
  o.ep = 8;
  o.tokens_per_rank = 1024;
  o.num_experts = 32;
  o.num_topk = 2;
  o.routing = parse_routing("zipf:1.2");
  o.seed = 4;
  o.capacity.policy = CapacityPolicy::kDropPosition;
  o.capacity.factor = 1.25;
  return o;
}

double mean_of_last(const std::vector<BalancingStep>& steps, int count, double (*metric)(const BalancingStep&)) {
  double sum = 0.0;
  for (auto it = steps.end() - count; it != steps.end(); ++it) sum += metric(*it);
  return sum / count;
}

TEST(BiasBalancing, BiasesBringTheExpertLoadTowardTheMean) {
  // zipf:1.2 over 32 experts puts about a fifth of the choices on the hottest expert (max/mean near 6). The
  // update moves every bias by gamma per step toward balance, so after enough steps the hot experts' selection
  // weights have shrunk by orders of magnitude and max/mean must be far below the unbalanced baseline, and fewer
  // copies overflow the capacity.
  const std::vector<int> node_of_gpu(8, 0);
  const auto baseline = simulate_bias_balancing(node_of_gpu, skewed_layer(), 60, 0.0);
  const auto balanced = simulate_bias_balancing(node_of_gpu, skewed_layer(), 60, 0.1);
  ASSERT_EQ(balanced.size(), 60u);
  const auto imbalance = [](const BalancingStep& s) { return s.expert_load.max_over_mean; };
  const auto dropped = [](const BalancingStep& s) { return s.dropped_fraction; };
  EXPECT_GT(mean_of_last(baseline, 10, imbalance), 4.0);
  EXPECT_LT(mean_of_last(balanced, 10, imbalance), 1.5);
  EXPECT_LT(mean_of_last(balanced, 10, dropped), mean_of_last(baseline, 10, dropped) / 4);
  // The first step is routed with zero biases, so it is the baseline's first step.
  EXPECT_EQ(balanced.front().expert_load.max, baseline.front().expert_load.max);
  // Biases move by exactly gamma per step: after step i each lies in [-0.1 i, 0.1 i].
  for (std::size_t i = 0; i < balanced.size(); ++i) {
    for (const double b : balanced[i].bias) EXPECT_LE(std::abs(b), 0.1 * static_cast<double>(i) + 1e-12);
  }
}

TEST(BiasBalancing, RejectsBadArguments) {
  const std::vector<int> node_of_gpu(8, 0);
  EXPECT_THROW(simulate_bias_balancing(node_of_gpu, skewed_layer(), 0, 0.1), std::invalid_argument);
  EXPECT_THROW(simulate_bias_balancing(node_of_gpu, skewed_layer(), 5, -0.1), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::workloads
