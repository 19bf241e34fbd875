// Pipeline-parallel schedules: the order in which each stage runs the forward and backward passes of the
// micro-batches of one training step, and a small exact evaluator of that order.
//
// A model split over p stages runs m micro-batches per step. With interleaving, each stage holds v model chunks
// (non-adjacent slices of layers): chunk c on stage s is virtual stage c p + s, so a micro-batch goes round the
// ring of stages v times. Every schedule below is synchronous (one optimizer step after all m backwards):
//
//   gpipe        every forward, then every backward (Huang et al., 2019). Each stage holds all m micro-batches'
//                activations at the peak.
//   1f1b         PipeDream-Flush (Narayanan et al., 2021), Megatron's non-interleaved schedule: stage s runs
//                w = min(p - s - 1, m) warm-up forwards, then alternates one forward and one backward, and ends
//                with the backwards left. At most min(p - s, m) micro-batches are in flight at stage s, instead of
//                m; the bubble is the same as GPipe's.
//   interleaved  Megatron's interleaved 1F1B (Narayanan et al., SC'21, section 2.2.2): the same warm-up / steady /
//                cool-down shape over m v chunk passes per stage, taken in groups of p micro-batches (chunk 0 of
//                micro-batches 0..p-1, chunk 1 of the same, ..., then the next group; backwards visit the chunks in
//                reverse). Warm-up is w = min((v - 1) p + 2 (p - s - 1), m v): the (v - 1) p forwards before the
//                stage reaches the last chunk of micro-batch 0, and 2 (p - s - 1) more to cover the round trip of
//                that micro-batch to the last stage and back.
//
// Bubble (p2p time 0, forward f and backward b per micro-batch and stage, each chunk pass f / v and b / v):
// GPipe and 1F1B take (m + p - 1)(f + b), a bubble fraction of (p - 1) / (m + p - 1); interleaved takes
// (m + (p - 1) / v)(f + b): the paper's bubble (p - 1)(f + b) / v, v times smaller. The evaluator reproduces these
// exactly (tests/unit/workloads/schedule_validation_test.cpp); they are closed forms for uniform stages, and the
// evaluator also takes per-stage costs and a p2p latency.
//
// The evaluator is a longest-path pass over the dependency DAG: an op starts when its stage has finished the op
// before it in the stage's order and its data dependency has arrived. Forward of (micro-batch, chunk c, stage s)
// needs the forward of (micro-batch, c, s - 1), or at stage 0 that of (micro-batch, c - 1, p - 1); backward runs
// the ring in reverse, and the backward of the last virtual stage needs its own forward. A dependency between two
// stages costs the p2p latency; compute on a stage is serial. Cost O(p m v) time and memory.
#pragma once

#include <string>
#include <vector>

#include "common/units.hpp"

namespace moesim::workloads {

enum class PipelineSchedule { kGpipe, k1F1B, kInterleaved1F1B };

// "gpipe", "1f1b", "interleaved".
const char* pipeline_schedule_name(PipelineSchedule schedule);
// The inverse; throws std::invalid_argument listing the names.
PipelineSchedule parse_pipeline_schedule(const std::string& name);

// One pass of one micro-batch through one model chunk of a stage. chunk_idx is 0 without interleaving.
struct PipelineOp {
  bool is_forward = true;
  int microbatch_idx = 0;
  int chunk_idx = 0;

  friend bool operator==(const PipelineOp&, const PipelineOp&) = default;
};

// Throws std::invalid_argument unless num_stages >= 1, num_microbatches >= 1 and, for gpipe and 1f1b,
// num_chunks == 1, or for interleaved, num_chunks >= 2 and num_microbatches a multiple of num_stages (the groups of
// p micro-batches above). 1f1b accepts m < p: the stages with p - s - 1 >= m then run all their forwards first, as
// GPipe does, and the bubble (p - 1) / (m + p - 1) is over half the step.
void validate_pipeline(PipelineSchedule schedule, int num_stages, int num_microbatches, int num_chunks);

// For each stage, its 2 m v ops in execution order. Validates as validate_pipeline does.
std::vector<std::vector<PipelineOp>> pipeline_order(PipelineSchedule schedule, int num_stages, int num_microbatches,
                                                    int num_chunks = 1);

// The most chunk passes whose forward stage `stage_idx` has run and whose backward it has not (so whose activations
// it holds), in units of one micro-batch through one chunk (1 / v of the stage's layers): m v for gpipe,
// min(p - s, m) for 1f1b, min(w + 1, m v) for interleaved with w the warm-up above. Validates as validate_pipeline,
// and 0 <= stage_idx < num_stages.
int pipeline_peak_in_flight(PipelineSchedule schedule, int num_stages, int stage_idx, int num_microbatches,
                            int num_chunks = 1);

// The same count taken from an order: the largest number of forwards not yet matched by their backward.
int peak_in_flight(const std::vector<PipelineOp>& stage_order);

// Compute time of one micro-batch through one chunk of a stage (f / v and b / v for interleaved).
struct StageCost {
  TimePs forward_ps = 0;
  TimePs backward_ps = 0;
  // The backward's output (the input gradients sent to the previous stage) is ready this long before the backward
  // ends: the weight gradients computed after it. Its send leaves then. 0 <= lead <= backward_ps.
  TimePs backward_output_lead_ps = 0;
};

struct TimedPipelineOp {
  PipelineOp op;
  TimePs start_ps = 0;
  TimePs end_ps = 0;
};

struct PipelineTimeline {
  std::vector<std::vector<TimedPipelineOp>> stages;  // per stage, in its order
  TimePs makespan_ps = 0;                            // the last end; the step starts at 0
};

// Times every op of `order` (one entry per stage) with stage s's chunk passes costing stage_costs[s] and every
// dependency between two different stages p2p_ps. Throws std::invalid_argument if num_microbatches or num_chunks
// is < 1, stage_costs does not have one entry per stage, a cost is negative, a stage does not hold each of its
// 2 m v ops exactly once, or the order deadlocks (naming a stage and the op it waits at).
PipelineTimeline evaluate_pipeline(const std::vector<std::vector<PipelineOp>>& order, int num_microbatches,
                                   int num_chunks, const std::vector<StageCost>& stage_costs, TimePs p2p_ps);

// The makespan of `schedule` with every stage costing `chunk_cost` per chunk pass.
TimePs pipeline_makespan(PipelineSchedule schedule, int num_stages, int num_microbatches, int num_chunks,
                         StageCost chunk_cost, TimePs p2p_ps);

}  // namespace moesim::workloads
