// The parallelism planner: every layout valid for the model and cluster, those that fit in memory, simulated
// (after pruning by a cheap bound), and ranked by step time.
//
// Theory of operation. workloads::enumerate_layouts lists the layouts (dp, tp, pp, ep, etp, vpp, mbs) that
// Megatron-Core's divisibility rules allow, with the reason for each rejected one. For each valid layout the
// memory model picks the lightest recomputation that fits the GPU (none, then selective, then full; or the one
// asked for); layouts that fit with none are dropped with the memory they need. The rest are ordered by
// step_lower_bound (compute alone through the pipeline evaluator) and simulated in rounds of kPlanRound layouts
// in parallel threads; after each round, every layout whose bound is no better than the top-N-th simulated step
// time is pruned, with both numbers as the reason. The round size does not depend on the thread count, so the
// set of simulated layouts, and the ranking, are the same for any --jobs.
#pragma once

#include <optional>
#include <vector>

#include "reports/results.pb.h"
#include "sim/compute/cost_profile.hpp"
#include "sim/step/builder.hpp"
#include "workloads/layout.hpp"
#include "workloads/memory.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim {

inline constexpr int kPlanRound = 4;

struct PlanOptions {
  workloads::EnumerateOptions enumerate;          // gbs, mbs and vpp candidates, max tp, expert TP
  std::optional<workloads::Recompute> recompute;  // unset: the lightest that fits
  int top = 10;
  int num_threads = 0;  // 0: the hardware's
};

// `base` carries everything but the layout and the recomputation (model, schedule, sequence length, routing,
// precision, ZeRO, executor options). Throws std::invalid_argument for bad options.
reports::PlanResult run_plan(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                             const step::StepConfig& base, const PlanOptions& options);

}  // namespace moesim::sim
