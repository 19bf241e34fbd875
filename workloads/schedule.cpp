#include "workloads/schedule.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace moesim::workloads {
namespace {

constexpr std::array kSchedules = {PipelineSchedule::kGpipe, PipelineSchedule::k1F1B,
                                   PipelineSchedule::kInterleaved1F1B};

// Keeps 2 m v (the ops per stage) and every index into the evaluator's tables well inside int.
constexpr std::int64_t kMaxPassesPerStage = std::int64_t{1} << 28;

// The k-th forward (or backward) pass a stage runs. Without interleaving (v = 1) that is micro-batch k. With it,
// passes go in groups of p micro-batches: chunk 0 of the group, then chunk 1, ...; backwards take the chunks from
// the last down, because the backward of a micro-batch enters the model at its last chunk.
PipelineOp nth_pass(int k, bool is_forward, int num_stages, int num_chunks) {
  if (num_chunks == 1) return {is_forward, k, 0};
  const int group_size = num_stages * num_chunks;
  const int group_idx = k / group_size;
  const int in_group = k % group_size;
  const int chunk_idx = in_group / num_stages;
  return {is_forward, group_idx * num_stages + in_group % num_stages,
          is_forward ? chunk_idx : num_chunks - 1 - chunk_idx};
}

// Forward passes a stage runs before its first backward. Every schedule here is "w forwards, then alternate one
// forward and one backward, then the remaining backwards"; only w differs.
int warmup_forwards(PipelineSchedule schedule, int num_stages, int stage_idx, int num_microbatches, int num_chunks) {
  const int passes = num_microbatches * num_chunks;
  switch (schedule) {
    case PipelineSchedule::kGpipe:
      return passes;
    case PipelineSchedule::k1F1B:
      return std::min(num_stages - stage_idx - 1, passes);
    case PipelineSchedule::kInterleaved1F1B:
      return std::min((num_chunks - 1) * num_stages + 2 * (num_stages - stage_idx - 1), passes);
  }
  return passes;
}

std::string describe(const PipelineOp& op) {
  return std::string(op.is_forward ? "forward" : "backward") + " of micro-batch " + std::to_string(op.microbatch_idx) +
         ", chunk " + std::to_string(op.chunk_idx);
}

}  // namespace

const char* pipeline_schedule_name(PipelineSchedule schedule) {
  switch (schedule) {
    case PipelineSchedule::kGpipe:
      return "gpipe";
    case PipelineSchedule::k1F1B:
      return "1f1b";
    case PipelineSchedule::kInterleaved1F1B:
      return "interleaved";
  }
  return "unknown";
}

PipelineSchedule parse_pipeline_schedule(const std::string& name) {
  std::string names;
  for (const PipelineSchedule schedule : kSchedules) {
    if (name == pipeline_schedule_name(schedule)) return schedule;
    names += (names.empty() ? "" : ", ") + std::string(pipeline_schedule_name(schedule));
  }
  throw std::invalid_argument("pipeline schedule: expected one of " + names + "; got '" + name + "'");
}

void validate_pipeline(PipelineSchedule schedule, int num_stages, int num_microbatches, int num_chunks) {
  if (num_stages < 1) throw std::invalid_argument("pipeline stages: must be >= 1, got " + std::to_string(num_stages));
  if (num_microbatches < 1) {
    throw std::invalid_argument("pipeline micro-batches: must be >= 1, got " + std::to_string(num_microbatches));
  }
  if (num_chunks < 1) throw std::invalid_argument("pipeline chunks: must be >= 1, got " + std::to_string(num_chunks));
  const std::string name = pipeline_schedule_name(schedule);
  if (schedule == PipelineSchedule::kInterleaved1F1B) {
    if (num_chunks < 2) {
      throw std::invalid_argument("pipeline chunks: interleaved needs >= 2 model chunks per stage, got " +
                                  std::to_string(num_chunks) + " (use 1f1b for one)");
    }
    if (num_microbatches % num_stages != 0) {
      throw std::invalid_argument("pipeline micro-batches: interleaved needs a multiple of the " +
                                  std::to_string(num_stages) + " stages, got " + std::to_string(num_microbatches));
    }
  } else if (num_chunks != 1) {
    throw std::invalid_argument("pipeline chunks: " + name + " runs one model chunk per stage, got " +
                                std::to_string(num_chunks) + " (use interleaved for more)");
  }
  if (std::int64_t{num_microbatches} * num_chunks > kMaxPassesPerStage) {
    throw std::invalid_argument("pipeline micro-batches x chunks: must be <= " + std::to_string(kMaxPassesPerStage) +
                                ", got " + std::to_string(std::int64_t{num_microbatches} * num_chunks));
  }
}

std::vector<std::vector<PipelineOp>> pipeline_order(PipelineSchedule schedule, int num_stages, int num_microbatches,
                                                    int num_chunks) {
  validate_pipeline(schedule, num_stages, num_microbatches, num_chunks);
  const int passes = num_microbatches * num_chunks;
  std::vector<std::vector<PipelineOp>> order(static_cast<std::size_t>(num_stages));
  for (int s = 0; s < num_stages; ++s) {
    std::vector<PipelineOp>& ops = order[static_cast<std::size_t>(s)];
    ops.reserve(2 * static_cast<std::size_t>(passes));
    const int warmup = warmup_forwards(schedule, num_stages, s, num_microbatches, num_chunks);
    for (int k = 0; k < warmup; ++k) ops.push_back(nth_pass(k, true, num_stages, num_chunks));
    for (int k = 0; k < passes - warmup; ++k) {
      ops.push_back(nth_pass(warmup + k, true, num_stages, num_chunks));
      ops.push_back(nth_pass(k, false, num_stages, num_chunks));
    }
    for (int k = std::max(passes - warmup, 0); k < passes; ++k)
      ops.push_back(nth_pass(k, false, num_stages, num_chunks));
  }
  return order;
}

int pipeline_peak_in_flight(PipelineSchedule schedule, int num_stages, int stage_idx, int num_microbatches,
                            int num_chunks) {
  validate_pipeline(schedule, num_stages, num_microbatches, num_chunks);
  if (stage_idx < 0 || stage_idx >= num_stages) {
    throw std::invalid_argument("pipeline stage: must be in [0, " + std::to_string(num_stages) + "), got " +
                                std::to_string(stage_idx));
  }
  // The warm-up forwards plus the first steady-state forward, which runs before the first backward.
  const int passes = num_microbatches * num_chunks;
  return std::min(warmup_forwards(schedule, num_stages, stage_idx, num_microbatches, num_chunks) + 1, passes);
}

int peak_in_flight(const std::vector<PipelineOp>& stage_order) {
  int in_flight = 0;
  int peak = 0;
  for (const PipelineOp& op : stage_order) {
    in_flight += op.is_forward ? 1 : -1;
    peak = std::max(peak, in_flight);
  }
  return peak;
}

PipelineTimeline evaluate_pipeline(const std::vector<std::vector<PipelineOp>>& order, int num_microbatches,
                                   int num_chunks, const std::vector<StageCost>& stage_costs, TimePs p2p_ps) {
  const auto num_stages = static_cast<int>(order.size());
  if (num_stages < 1) throw std::invalid_argument("pipeline order: expected at least one stage, got none");
  if (num_microbatches < 1 || num_chunks < 1 || std::int64_t{num_microbatches} * num_chunks > kMaxPassesPerStage) {
    throw std::invalid_argument("pipeline order: expected micro-batches >= 1 and chunks >= 1 with at most " +
                                std::to_string(kMaxPassesPerStage) + " passes, got " +
                                std::to_string(num_microbatches) + " x " + std::to_string(num_chunks));
  }
  if (stage_costs.size() != order.size()) {
    throw std::invalid_argument("pipeline stage costs: expected one per stage (" + std::to_string(num_stages) +
                                "), got " + std::to_string(stage_costs.size()));
  }
  if (p2p_ps < 0) throw std::invalid_argument("pipeline p2p time: must be >= 0 ps, got " + std::to_string(p2p_ps));

  // Finish time of every (stage, direction, micro-batch, chunk), -1 until it has run.
  const std::size_t passes = static_cast<std::size_t>(num_microbatches) * static_cast<std::size_t>(num_chunks);
  const auto slot = [&](int stage_idx, bool is_forward, int microbatch_idx, int chunk_idx) {
    return (static_cast<std::size_t>(stage_idx) * 2 + (is_forward ? 0 : 1)) * passes +
           static_cast<std::size_t>(microbatch_idx) * static_cast<std::size_t>(num_chunks) +
           static_cast<std::size_t>(chunk_idx);
  };
  std::vector<TimePs> end_ps(static_cast<std::size_t>(num_stages) * 2 * passes, -1);

  for (int s = 0; s < num_stages; ++s) {
    const StageCost& cost = stage_costs[static_cast<std::size_t>(s)];
    if (cost.forward_ps < 0 || cost.backward_ps < 0) {
      throw std::invalid_argument("pipeline stage " + std::to_string(s) + " cost: must be >= 0 ps, got forward " +
                                  std::to_string(cost.forward_ps) + ", backward " + std::to_string(cost.backward_ps));
    }
    if (cost.backward_output_lead_ps < 0 || cost.backward_output_lead_ps > cost.backward_ps) {
      throw std::invalid_argument("pipeline stage " + std::to_string(s) +
                                  " backward output lead: must be in [0, backward], got " +
                                  std::to_string(cost.backward_output_lead_ps));
    }
    const std::vector<PipelineOp>& ops = order[static_cast<std::size_t>(s)];
    if (ops.size() != 2 * passes) {
      throw std::invalid_argument("pipeline order: stage " + std::to_string(s) + " must hold " +
                                  std::to_string(2 * passes) + " ops (each pass forward and backward once), got " +
                                  std::to_string(ops.size()));
    }
    // Mark the ops present (0) so that a duplicate or an out-of-range op is caught before timing.
    for (const PipelineOp& op : ops) {
      if (op.microbatch_idx < 0 || op.microbatch_idx >= num_microbatches || op.chunk_idx < 0 ||
          op.chunk_idx >= num_chunks) {
        throw std::invalid_argument("pipeline order: stage " + std::to_string(s) + " has " + describe(op) +
                                    ", outside " + std::to_string(num_microbatches) + " micro-batches x " +
                                    std::to_string(num_chunks) + " chunks");
      }
      TimePs& mark = end_ps[slot(s, op.is_forward, op.microbatch_idx, op.chunk_idx)];
      if (mark == 0) {
        throw std::invalid_argument("pipeline order: stage " + std::to_string(s) + " has " + describe(op) + " twice");
      }
      mark = 0;
    }
  }
  std::fill(end_ps.begin(), end_ps.end(), -1);

  // The op whose output `op` at `stage_idx` consumes, as a slot and the latency of getting it here; npos at the
  // start of the step (forward of chunk 0 on stage 0).
  constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  const int last_stage = num_stages - 1;
  const TimePs ring_ps = num_stages > 1 ? p2p_ps : 0;  // stage p - 1 to stage 0 (none when p = 1)
  const auto su_of = [](int s) { return static_cast<std::size_t>(s); };
  const auto dependency = [&](int s, const PipelineOp& op) -> std::pair<std::size_t, TimePs> {
    const int mb = op.microbatch_idx;
    const int c = op.chunk_idx;
    if (op.is_forward) {
      if (s > 0) return {slot(s - 1, true, mb, c), p2p_ps};
      if (c > 0) return {slot(last_stage, true, mb, c - 1), ring_ps};
      return {kNone, 0};
    }
    // The input gradients leave the producing stage's backward its backward_output_lead_ps before that ends.
    if (s < last_stage) return {slot(s + 1, false, mb, c), p2p_ps - stage_costs[su_of(s + 1)].backward_output_lead_ps};
    if (c < num_chunks - 1) return {slot(0, false, mb, c + 1), ring_ps - stage_costs[0].backward_output_lead_ps};
    return {slot(s, true, mb, c), 0};
  };

  // Sweep the stages, each running as far as its dependencies allow, until all ops have run; a sweep in which no
  // stage moves means a cycle between the orders.
  PipelineTimeline timeline;
  timeline.stages.resize(order.size());
  for (auto& stage : timeline.stages) stage.reserve(2 * passes);
  std::vector<TimePs> free_ps(order.size(), 0);
  std::size_t remaining = order.size() * 2 * passes;
  while (remaining > 0) {
    bool is_progress = false;
    for (int s = 0; s < num_stages; ++s) {
      const auto su = static_cast<std::size_t>(s);
      std::vector<TimedPipelineOp>& done = timeline.stages[su];
      while (done.size() < order[su].size()) {
        const PipelineOp& op = order[su][done.size()];
        TimePs start_ps = free_ps[su];
        const auto [dep, latency_ps] = dependency(s, op);
        if (dep != kNone) {
          if (end_ps[dep] < 0) break;
          start_ps = std::max(start_ps, end_ps[dep] + latency_ps);
        }
        const StageCost& cost = stage_costs[su];
        const TimePs finish_ps = start_ps + (op.is_forward ? cost.forward_ps : cost.backward_ps);
        end_ps[slot(s, op.is_forward, op.microbatch_idx, op.chunk_idx)] = finish_ps;
        free_ps[su] = finish_ps;
        done.push_back({op, start_ps, finish_ps});
        timeline.makespan_ps = std::max(timeline.makespan_ps, finish_ps);
        --remaining;
        is_progress = true;
      }
    }
    if (!is_progress) {
      for (std::size_t s = 0; s < order.size(); ++s) {
        if (timeline.stages[s].size() < order[s].size()) {
          throw std::invalid_argument("pipeline order deadlocks: stage " + std::to_string(s) + " waits forever at " +
                                      describe(order[s][timeline.stages[s].size()]));
        }
      }
    }
  }
  return timeline;
}

TimePs pipeline_makespan(PipelineSchedule schedule, int num_stages, int num_microbatches, int num_chunks,
                         StageCost chunk_cost, TimePs p2p_ps) {
  const auto order = pipeline_order(schedule, num_stages, num_microbatches, num_chunks);
  const std::vector<StageCost> costs(order.size(), chunk_cost);
  return evaluate_pipeline(order, num_microbatches, num_chunks, costs, p2p_ps).makespan_ps;
}

}  // namespace moesim::workloads
