// A training or inference step as a task graph (executor.hpp), built from the model, the parallel layout, the pipeline
// schedule, the routing and the cost profile, and run on the cluster.
//
// Theory of operation. Every GPU of a pipeline stage does the same work at the same time (SPMD), so a stage is one
// lane of the executor. Its streams: 0 compute; 1 communication of the layer (sequence-parallel TP all-gathers and
// reduce-scatters, the EP dispatch and combine, expert-TP gathers); 2 pipeline sends; 3 data-parallel gradient
// reductions and parameter all-gathers after the optimizer; 4 ZeRO-3's per-layer parameter all-gathers; 5 the
// shared experts' TP collectives. The stage's pipeline operations (forward or backward of a micro-batch, per model
// chunk) follow the schedule's order (workloads/schedule.hpp); each expands into the layers of that chunk:
//   attention, dense FFN  with tp > 1 (sequence parallelism): all-gather of the input over every TP group of the
//                        stage, the block's kernels (layer_ops.hpp), reduce-scatter of the output
//   MoE                  router (compute) -> dispatch (All-to-All of every EP group of the stage, with the layer's
//                        sampled routing and the chosen algorithm) -> [expert-TP all-gather] -> experts (the
//                        slowest rank's grouped GEMMs with its own experts' real loads) -> [expert-TP
//                        reduce-scatter] -> combine (All-to-All reversed) -> unpermute and weighted sum. The
//                        shared experts run beside the dispatch (their TP collectives on stream 5).
// Backward runs each chain in reverse with gradients (BF16) on the wire; each block's input gradients are on the
// chain and its weight gradients follow them off the chain, so the communication that needs only the input
// gradients (TP reduce-scatter, All-to-All, the pipeline send) overlaps the weight gradients. The micro-batch's
// chain: a compute task waits for the last communication the chain issued; a communication for the task before it.
// A forward (backward) of a micro-batch on stage s > 0 (s < p - 1) starts its chain after the previous stage's
// send of its activations (gradients): one transfer per GPU to its peer in the next (previous) stage.
// Gradients: ZeRO 0 all-reduces and ZeRO 1 reduce-scatters each layer's once, after its last backward; ZeRO 2 and 3
// reduce-scatter each micro-batch's as soon as they are complete; dense ones over DP, expert ones over expert-DP,
// embedding and head included. The optimizer follows the reductions; ZeRO 1 and 2 then all-gather the updated
// parameters; ZeRO 3 gathers each layer's before each of its forwards and backwards instead.
//
// Recomputation (config.recompute): full runs each layer's forward again (communication included) right before its
// backward; selective adds the attention core's forward to the attention backward. config.comm_sms reserves SMs
// for communication: compute kernels run on the rest and each GPU's traffic is capped.
//
// Simplifications, stated: a layer's routing is sampled config.routing_samples times (tokens per rank =
// micro-batch tokens / tp) and micro-batch m uses sample m mod that; dropless capacity. Collectives of different
// stages are separate lanes' tasks on the same network, so they contend where their links meet.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/collectives/all_to_all.hpp"
#include "sim/compute/cost_profile.hpp"
#include "sim/step/executor.hpp"
#include "workloads/layout.hpp"
#include "workloads/memory.hpp"
#include "workloads/model.hpp"
#include "workloads/routing.hpp"
#include "workloads/schedule.hpp"
#include "workloads/traffic.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim::step {

struct StepConfig {
  workloads::MoeModel model;
  workloads::ParallelLayout layout;
  workloads::PipelineSchedule schedule = workloads::PipelineSchedule::k1F1B;
  std::int64_t seq_len = 4096;
  workloads::RoutingSpec routing;
  std::uint64_t seed = 1;
  workloads::Placement placement = workloads::Placement::kContiguous;
  collectives::A2aAlgorithm a2a_algorithm = collectives::A2aAlgorithm::kDirect;
  compute::Precision gemm_precision = compute::Precision::kBf16;
  int zero_stage = 1;  // 0: all-reduce gradients; >= 1: reduce-scatter, then all-gather the updated parameters
  // Full: every layer's forward (communication included) runs again before its backward; selective: the attention
  // core's forward runs again inside the attention backward.
  workloads::Recompute recompute = workloads::Recompute::kNone;
  // train: forward and backward, gradients, optimizer. prefill: the forwards of gbs sequences of seq_len tokens.
  // decode: the forwards of one new token for each of gbs sequences with context_len tokens already cached.
  workloads::StepMode mode = workloads::StepMode::kTrain;
  std::int64_t context_len = 0;
  // SMs each GPU gives its communication kernels for the whole step (DeepSeek-V3 gives 20 of 132): compute
  // kernels run on the others, and each GPU's sends and receives are capped at compute::comm_bandwidth_limit of
  // them. 0: communication takes no SMs and only the links limit it.
  int comm_sms = 0;
  // Routings sampled per MoE layer: micro-batch m uses sample m mod routing_samples (the same expert popularity,
  // tokens of its own). 1: every micro-batch routes as the first.
  int routing_samples = 1;
  ExecutorOptions executor;
};

// Where the time of one stage went, in picoseconds: the step's makespan cut so that each instant counts once, in
// this priority: compute, then layer communication, then pipeline sends, then DP communication, then idle. The
// five add up to the step time.
struct StageBreakdown {
  int stage = 0;
  TimePs compute = 0;             // the compute stream busy
  TimePs exposed_layer_comm = 0;  // TP, EP and expert-TP communication while no compute ran
  TimePs exposed_pp_comm = 0;     // pipeline sends while neither of the above ran
  TimePs exposed_dp_comm = 0;     // DP gradient reductions and ZeRO gathers while none of the above ran
  TimePs idle = 0;                // nothing ran: pipeline bubble and waits
};

struct StepResult {
  TimePs step_time = 0;
  std::int64_t tokens = 0;  // per step: gbs x seq_len
  double tokens_per_second_per_gpu = 0.0;
  double model_tflops_per_gpu = 0.0;  // model FLOPs (layer_ops.hpp's definition) per second per GPU
  double mfu = 0.0;                   // model TFLOP/s / the GPU's dense peak in the GEMM precision
  std::vector<StageBreakdown> stages;
  TaskGraph graph;
  ExecutionResult execution;
};

// Builds and runs one training step. Throws std::invalid_argument for a layout the model or cluster cannot take
// (workloads::validate_layout), a device missing from the profile, or routing that does not fit.
StepResult run_training_step(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                             const StepConfig& config);

class GroupRoutingCache;  // bound.hpp

// What step_lower_bound counts beyond compute at the mean expert load: the EP All-to-Alls, and the expert loads of
// the sampled routing, of the MoE layers whose index among the MoE layers is a multiple of all_to_all_stride
// (1: every MoE layer, the tightest; 0: none, compute alone). Every stride gives a lower bound; halving it counts
// a superset of the layers, which only raises the bound.
struct BoundOptions {
  int all_to_all_stride = 1;
  GroupRoutingCache* routing_cache = nullptr;  // sampled routings to reuse across calls (bound.hpp); null: none
};

// An estimate from below of run_training_step's step time, for the planner's pruning: each pipeline stage's passes
// through the schedule's exact evaluator with free TP, PP and DP communication and no optimizer. A pass costs its
// compute and the part of its EP All-to-Alls' lower bounds (bound.hpp: per link, bytes / capacity, plus the least
// latency) that the compute allowed to overlap them (shared experts, weight gradients) cannot cover. The
// All-to-Alls and the expert loads come from the routing of one EP group per stage, sampled as the step samples
// it. Communication and skew only add to it in the simulation, so it is a lower bound up to one assumption: the
// slowest EP rank's grouped GEMMs, and their input-gradient part, take at least the mean rank's (padding aside).
// It costs about a step's routing sampling of the counted layers divided by the EP groups of a stage (less with a
// routing cache that already holds them); with stride 0, microseconds. Throws as run_training_step does, and
// std::invalid_argument for a negative stride.
TimePs step_lower_bound(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                        const StepConfig& config, const BoundOptions& options = {});

}  // namespace moesim::sim::step
