// The parallelism planner: every layout valid for the model and cluster, those that fit in memory, simulated
// (after pruning by a lower bound), and ranked by step time.
//
// Theory of operation. workloads::enumerate_layouts lists the layouts (dp, tp, pp, ep, etp, vpp, mbs) that
// Megatron-Core's divisibility rules allow, with the reason for each rejected one. For each valid layout the
// memory model picks the lightest recomputation that fits the GPU (none, then selective, then full; or the one
// asked for); layouts that fit with none are dropped with the memory they need. The rest are simulated in the
// order of step_lower_bound (builder.hpp: compute and the EP All-to-Alls' unhidden time, through the pipeline
// evaluator), in rounds of up to kPlanRound layouts on parallel threads. Before each round the threshold is the
// top-N-th simulated step time so far, and every layout whose bound is no better is pruned, with both numbers as
// the reason. A pruned layout's step is at least its bound (the bound's assumption aside), so pruning never changes
// the top N: PlanOptions::prune = false simulates everything and ranks the same.
//
// The bound is refined lazily. Every layout starts with compute alone (microseconds); the All-to-Alls are counted
// for every 8th MoE layer, then every 4th, 2nd and every one (BoundOptions::all_to_all_stride), each level only
// raising the bound. A round takes the kPlanRound best bounds; those not yet at the last level are refined one
// level and the order taken again, and once all are, no other layout can have a better final bound: the rounds are
// those that refining every bound first would give. A layout pruned on the way never pays for its finer levels: the
// large EP groups, whose bounds are the costliest to sample and the highest, go after a level or two. Sampled
// routings are shared by all layouts (bound.hpp's GroupRoutingCache: layouts that differ in pp or dp route their
// stages' first EP groups alike). The rounds, refinements and results do not depend on the thread count.
//
// Cost, DeepSeek-V3 on 512 H800 GPUs (59 layouts that fit): a final bound samples one EP group per MoE layer,
// 0.05 to 6 s a layout on one core; a simulated step costs from under a second to minutes (large EP groups:
// hundreds of thousands of flows, played live while other traffic shares their links). With the lazy bounds the
// plan simulates 24 layouts and prunes 35 in about 45 s of CPU.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
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

// Where the planner is, for a progress line.
struct PlanProgress {
  std::int64_t num_fit = 0;  // layouts to simulate or prune
  std::int64_t num_simulated = 0;
  std::int64_t num_pruned = 0;
  std::int64_t num_failed = 0;  // rejected by the bound or the simulation (status "invalid")
  double best_step_ms = 0.0;    // the best simulated step so far; 0 before the first
  bool is_done = false;         // the last call
};

struct PlanOptions {
  workloads::EnumerateOptions enumerate;          // gbs, mbs and vpp candidates, max tp, expert TP
  std::optional<workloads::Recompute> recompute;  // unset: the lightest that fits
  int top = 10;
  int num_threads = 0;  // 0: the hardware's
  bool prune = true;    // false: simulate every layout that fits (the ranking is the same, only slower)
  // Called after each simulated, pruned or failed layout and at the end, from any of the planner's threads but one
  // call at a time. Unset: none.
  std::function<void(const PlanProgress&)> on_progress;
};

// "plan: 37/59 simulated, 12 pruned, best 2729.3 ms", with ", 2 invalid" where some failed: one line, no newline.
std::string format_plan_progress(const PlanProgress& progress);

// `base` carries everything but the layout and the recomputation (model, schedule, sequence length, routing,
// precision, ZeRO, executor options). Throws std::invalid_argument for bad options.
reports::PlanResult run_plan(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                             const step::StepConfig& base, const PlanOptions& options);

}  // namespace moesim::sim
