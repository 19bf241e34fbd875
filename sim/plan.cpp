#include "sim/plan.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "common/units.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double ms(TimePs t) {
  return static_cast<double>(t) * 1e-9;
}

struct Candidate {
  reports::PlanEntry entry;
  step::StepConfig config;
  TimePs bound = 0;
};

}  // namespace

reports::PlanResult run_plan(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                             const step::StepConfig& base, const PlanOptions& options) {
  if (options.top < 1) throw std::invalid_argument("top: must be >= 1, got " + std::to_string(options.top));
  reports::PlanResult result;
  result.set_tool("moesim " MOESIM_VERSION);
  result.set_cluster(cluster.config().name);
  result.set_num_gpus(cluster.num_gpus());
  result.set_model(base.model.name);
  result.set_gbs(options.enumerate.gbs);
  result.set_seq_len(base.seq_len);

  const workloads::LayoutEnumeration layouts =
      workloads::enumerate_layouts(base.model, cluster.num_gpus(), options.enumerate);
  result.set_num_valid(static_cast<std::int64_t>(layouts.valid.size()));
  for (const workloads::RejectedLayout& rejected : layouts.rejected) {
    reports::PlanEntry* entry = result.add_others();
    entry->set_layout(workloads::format_layout(rejected.layout));
    entry->set_status("invalid");
    entry->set_reason(rejected.reason);
  }

  // Memory: the lightest recomputation that fits, or the one asked for.
  const double capacity = cluster.config().gpu.hbm_capacity_bytes;
  std::vector<workloads::Recompute> settings = {workloads::Recompute::kNone, workloads::Recompute::kSelective,
                                                workloads::Recompute::kFull};
  if (options.recompute) settings = {*options.recompute};
  std::vector<Candidate> candidates;
  for (const workloads::ParallelLayout& layout : layouts.valid) {
    Candidate c;
    c.config = base;
    c.config.layout = layout;
    if (layout.vpp > 1) c.config.schedule = workloads::PipelineSchedule::kInterleaved1F1B;
    c.entry.set_layout(workloads::format_layout(layout));
    double needed = 0.0;
    bool fits = false;
    for (const workloads::Recompute recompute : settings) {
      workloads::MemoryOptions memory;
      memory.seq_length = base.seq_len;
      memory.zero_stage = base.zero_stage;
      memory.recompute = recompute;
      const workloads::MemoryBreakdown breakdown = workloads::memory_per_gpu(base.model, layout, memory);
      needed = breakdown.total + memory.reserve_bytes;
      c.entry.set_recompute(workloads::recompute_name(recompute));
      c.entry.set_memory_gib(needed / kGiB);
      c.config.recompute = recompute;
      if (needed <= capacity) {
        fits = true;
        break;
      }
    }
    if (!fits) {
      c.entry.set_status("no-fit");
      c.entry.set_reason("needs " + format_number(std::round(needed / kGiB * 10) / 10) + " GiB per GPU (recompute " +
                         c.entry.recompute() + ") of " + format_number(std::round(capacity / kGiB * 10) / 10));
      *result.add_others() = c.entry;
      continue;
    }
    c.bound = step::step_lower_bound(cluster, profile, c.config);
    c.entry.set_bound_ms(ms(c.bound));
    candidates.push_back(std::move(c));
  }
  result.set_num_fit(static_cast<std::int64_t>(candidates.size()));
  // Best bound first; ties in layout order (the enumeration's), so the order is deterministic.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.bound < b.bound; });

  const auto wanted = options.num_threads > 0 ? options.num_threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<TimePs> simulated_times;  // of every simulated candidate, for the pruning threshold
  std::vector<std::size_t> simulated;
  std::size_t next = 0;
  while (next < candidates.size()) {
    // The threshold: the top-N-th best simulated step time so far.
    if (simulated_times.size() >= static_cast<std::size_t>(options.top)) {
      std::vector<TimePs> sorted = simulated_times;
      std::nth_element(sorted.begin(), sorted.begin() + options.top - 1, sorted.end());
      const TimePs threshold = sorted[static_cast<std::size_t>(options.top - 1)];
      if (candidates[next].bound >= threshold) {
        for (std::size_t i = next; i < candidates.size(); ++i) {
          candidates[i].entry.set_status("pruned");
          candidates[i].entry.set_reason("lower bound " +
                                         format_number(std::round(ms(candidates[i].bound) * 100) / 100) +
                                         " ms >= the " + std::to_string(options.top) + "th best step " +
                                         format_number(std::round(ms(threshold) * 100) / 100) + " ms");
        }
        break;
      }
    }
    const std::size_t end = std::min(candidates.size(), next + kPlanRound);
    std::vector<std::exception_ptr> errors(end - next);
    std::vector<std::thread> threads;
    auto simulate = [&](std::size_t i) {
      try {
        const step::StepResult r = step::run_training_step(cluster, profile, candidates[i].config);
        reports::PlanEntry& e = candidates[i].entry;
        e.set_step_time_ms(ms(r.step_time));
        e.set_tokens_per_s_per_gpu(r.tokens_per_second_per_gpu);
        e.set_mfu(r.mfu);
        double idle = 0.0;
        for (const step::StageBreakdown& b : r.stages) idle += static_cast<double>(b.idle);
        e.set_bubble_fraction(r.step_time > 0 ? idle / static_cast<double>(r.stages.size()) / r.step_time : 0.0);
        e.set_status("simulated");
      } catch (...) {
        errors[i - next] = std::current_exception();
      }
    };
    // Up to `wanted` threads over the round; which thread runs which layout cannot change any result.
    for (std::size_t i = next; i < end;) {
      for (; i < end && threads.size() < wanted; ++i) threads.emplace_back(simulate, i);
      for (auto& thread : threads) thread.join();
      threads.clear();
    }
    for (std::size_t i = next; i < end; ++i) {
      if (errors[i - next]) {
        try {
          std::rethrow_exception(errors[i - next]);
        } catch (const std::exception& e) {
          candidates[i].entry.set_status("invalid");
          candidates[i].entry.set_reason(e.what());
          continue;
        }
      }
      simulated.push_back(i);
      simulated_times.push_back(static_cast<TimePs>(candidates[i].entry.step_time_ms() * 1e9));
    }
    next = end;
  }
  result.set_num_simulated(static_cast<std::int64_t>(simulated.size()));
  // Rank the simulated by step time (ties: bound order).
  std::stable_sort(simulated.begin(), simulated.end(), [&](std::size_t a, std::size_t b) {
    return candidates[a].entry.step_time_ms() < candidates[b].entry.step_time_ms();
  });
  for (std::size_t r = 0; r < simulated.size(); ++r) {
    reports::PlanEntry& e = candidates[simulated[r]].entry;
    if (r < static_cast<std::size_t>(options.top)) {
      e.set_status("ranked");
      e.set_rank(static_cast<std::int64_t>(r + 1));
    } else {
      e.set_reason("simulated, not in the top " + std::to_string(options.top));
    }
  }
  for (const std::size_t i : simulated) {
    if (candidates[i].entry.rank() > 0) *result.add_ranked() = candidates[i].entry;
  }
  for (Candidate& c : candidates) {
    if (c.entry.rank() == 0) *result.add_others() = c.entry;
  }
  return result;
}

}  // namespace moesim::sim
