#include "sim/plan.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "common/units.hpp"
#include "sim/step/bound.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double ms(TimePs t) {
  return static_cast<double>(t) * 1e-9;
}

std::string ms_text(TimePs t) {
  return format_number(std::round(ms(t) * 100) / 100) + " ms";
}

// The bound's refinements: step_lower_bound's All-to-All strides, from compute alone to every MoE layer.
constexpr std::array<int, 5> kBoundStrides = {0, 8, 4, 2, 1};

struct Candidate {
  reports::PlanEntry entry;
  step::StepConfig config;
  TimePs bound = 0;
  int level = 0;         // of kBoundStrides
  TimePs step_time = 0;  // once simulated
};

// Runs work(i) for every i in [0, count) on up to num_threads threads, each taking the next index, and returns what
// each threw (null where nothing). work(i) writes only what belongs to i, so which thread ran it changes nothing.
template <class Work>
std::vector<std::exception_ptr> run_parallel(std::size_t count, std::size_t num_threads, const Work& work) {
  std::vector<std::exception_ptr> errors(count);
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next++; i < count; i = next++) {
      try {
        work(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  for (std::size_t t = 1; t < std::min(num_threads, count); ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& thread : threads) thread.join();
  return errors;
}

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

// The progress counters and the callback, one call at a time.
class Progress {
 public:
  explicit Progress(const PlanOptions& options) : on_progress_(options.on_progress) {}

  template <class Change>
  void update(const Change& change) {
    const std::lock_guard<std::mutex> lock(mutex_);
    change(progress_);
    if (on_progress_) on_progress_(progress_);
  }

 private:
  const std::function<void(const PlanProgress&)>& on_progress_;
  std::mutex mutex_;
  PlanProgress progress_;
};

// 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ...
std::string ordinal(int n) {
  const int last_two = n % 100;
  const char* suffix = "th";
  if (last_two < 11 || last_two > 13) {
    if (n % 10 == 1) suffix = "st";
    if (n % 10 == 2) suffix = "nd";
    if (n % 10 == 3) suffix = "rd";
  }
  return std::to_string(n) + suffix;
}

}  // namespace

std::string format_plan_progress(const PlanProgress& p) {
  std::string line = "plan: " + std::to_string(p.num_simulated) + "/" + std::to_string(p.num_fit) + " simulated, " +
                     std::to_string(p.num_pruned) + " pruned";
  if (p.best_step_ms > 0.0) {
    char best[32];
    std::snprintf(best, sizeof best, ", best %.1f ms", p.best_step_ms);
    line += best;
  }
  if (p.num_failed > 0) line += ", " + std::to_string(p.num_failed) + " invalid";
  return line;
}

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
  std::vector<Candidate> fitting;
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
    fitting.push_back(std::move(c));
  }
  result.set_num_fit(static_cast<std::int64_t>(fitting.size()));

  const std::size_t num_threads = options.num_threads > 0
                                      ? static_cast<std::size_t>(options.num_threads)
                                      : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  Progress progress(options);
  progress.update([&](PlanProgress& p) { p.num_fit = static_cast<std::int64_t>(fitting.size()); });

  // Every layout starts at compute alone (microseconds); a layout that fails it is invalid, as its simulation would
  // be, with the error as the reason.
  std::vector<Candidate> candidates;
  for (Candidate& c : fitting) {
    try {
      c.bound = step::step_lower_bound(cluster, profile, c.config, {kBoundStrides[0], nullptr});
    } catch (const std::exception& e) {
      c.entry.set_status("invalid");
      c.entry.set_reason(e.what());
      *result.add_others() = c.entry;
      progress.update([](PlanProgress& p) { ++p.num_failed; });
      continue;
    }
    candidates.push_back(std::move(c));
  }
  // Refined bounds sample routings, which layouts that differ only in pp (or dp) share: one cache for all.
  step::GroupRoutingCache routing_cache;
  auto refine = [&](Candidate& c) {
    const int level = c.level + 1;
    const TimePs bound = step::step_lower_bound(cluster, profile, c.config,
                                                {kBoundStrides[static_cast<std::size_t>(level)], &routing_cache});
    c.bound = std::max(c.bound, bound);  // every level is a bound: the largest so far holds
    c.level = level;
  };
  constexpr int kFinalLevel = static_cast<int>(kBoundStrides.size()) - 1;

  std::vector<std::size_t> remaining(candidates.size());
  std::iota(remaining.begin(), remaining.end(), std::size_t{0});
  std::vector<TimePs> simulated_times;  // of every simulated candidate, for the pruning threshold
  std::vector<std::size_t> simulated;
  while (!remaining.empty()) {
    // Best bound first; ties in layout order (the enumeration's), so the order is deterministic.
    std::sort(remaining.begin(), remaining.end(), [&](std::size_t a, std::size_t b) {
      return candidates[a].bound != candidates[b].bound ? candidates[a].bound < candidates[b].bound : a < b;
    });
    // The threshold: the top-N-th best simulated step time so far; whatever cannot beat it is pruned.
    if (options.prune && simulated_times.size() >= static_cast<std::size_t>(options.top)) {
      std::vector<TimePs> sorted = simulated_times;
      std::nth_element(sorted.begin(), sorted.begin() + options.top - 1, sorted.end());
      const TimePs threshold = sorted[static_cast<std::size_t>(options.top - 1)];
      std::int64_t num_pruned = 0;
      while (!remaining.empty() && candidates[remaining.back()].bound >= threshold) {
        Candidate& c = candidates[remaining.back()];
        c.entry.set_status("pruned");
        c.entry.set_reason("lower bound " + ms_text(c.bound) + " >= the " + ordinal(options.top) + " best step " +
                           ms_text(threshold));
        remaining.pop_back();
        ++num_pruned;
      }
      if (num_pruned > 0) progress.update([&](PlanProgress& p) { p.num_pruned += num_pruned; });
      if (remaining.empty()) break;
    }
    // The next round: the kPlanRound best bounds. Those not yet final are refined, which can only raise them, and
    // the order taken again; once all are final, no other layout can have a lower final bound, and they run.
    const std::vector<std::size_t> round(
        remaining.begin(),
        remaining.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(kPlanRound, remaining.size())));
    std::vector<std::size_t> coarse;
    for (const std::size_t i : round) {
      if (candidates[i].level < kFinalLevel) coarse.push_back(i);
    }
    const bool is_refining = !coarse.empty();
    const std::vector<std::size_t>& batch = is_refining ? coarse : round;
    const std::vector<std::exception_ptr> errors = run_parallel(batch.size(), num_threads, [&](std::size_t k) {
      Candidate& c = candidates[batch[k]];
      if (is_refining) {
        refine(c);
        return;
      }
      const step::StepResult r = step::run_training_step(cluster, profile, c.config);
      c.step_time = r.step_time;
      reports::PlanEntry& e = c.entry;
      e.set_step_time_ms(ms(r.step_time));
      e.set_tokens_per_s_per_gpu(r.tokens_per_second_per_gpu);
      e.set_mfu(r.mfu);
      double idle = 0.0;
      for (const step::StageBreakdown& b : r.stages) idle += static_cast<double>(b.idle);
      e.set_bubble_fraction(r.step_time > 0 ? idle / static_cast<double>(r.stages.size()) / r.step_time : 0.0);
      e.set_status("simulated");
      progress.update([&](PlanProgress& p) {
        ++p.num_simulated;
        if (p.best_step_ms == 0.0 || e.step_time_ms() < p.best_step_ms) p.best_step_ms = e.step_time_ms();
      });
    });
    for (std::size_t k = 0; k < batch.size(); ++k) {
      Candidate& c = candidates[batch[k]];
      if (errors[k]) {
        c.entry.set_status("invalid");
        c.entry.set_reason(message_of(errors[k]));
        progress.update([](PlanProgress& p) { ++p.num_failed; });
      } else if (!is_refining) {
        simulated.push_back(batch[k]);
        simulated_times.push_back(c.step_time);
      }
    }
    std::erase_if(remaining, [&](std::size_t i) {
      return candidates[i].entry.status() == "invalid" || candidates[i].entry.status() == "simulated";
    });
  }
  for (Candidate& c : candidates) c.entry.set_bound_ms(ms(c.bound));
  result.set_num_simulated(static_cast<std::int64_t>(simulated.size()));
  // Rank the simulated by step time (ties: bound order).
  std::stable_sort(simulated.begin(), simulated.end(),
                   [&](std::size_t a, std::size_t b) { return candidates[a].step_time < candidates[b].step_time; });
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
  progress.update([](PlanProgress& p) { p.is_done = true; });
  return result;
}

}  // namespace moesim::sim
