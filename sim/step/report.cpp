#include "sim/step/report.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "reports/trace.hpp"

#include "topologies/cluster.hpp"
#include "workloads/layout.hpp"

namespace moesim::sim::step {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double ms(TimePs t) {
  return static_cast<double>(t) * 1e-9;
}

}  // namespace

reports::StepReport make_step_report(const topologies::Cluster& cluster, const StepConfig& config,
                                     const StepResult& result, const StepReportInputs& inputs) {
  reports::StepReport report;
  report.set_tool("moesim " MOESIM_VERSION);
  reports::StepInputs* in = report.mutable_inputs();
  in->set_cluster(inputs.cluster_name);
  in->set_num_gpus(cluster.num_gpus());
  in->set_gpu(inputs.gpu_profile);
  in->set_model(config.model.name);
  in->set_layout(workloads::format_layout(config.layout));
  in->set_schedule(workloads::pipeline_schedule_name(config.schedule));
  in->set_seq_len(config.seq_len);
  in->set_num_microbatches(workloads::num_microbatches(config.layout));
  in->set_routing(config.routing.describe());
  in->set_algorithm(collectives::algorithm_name(config.a2a_algorithm));
  in->set_precision(std::string(compute::precision_name(config.gemm_precision)));
  in->set_zero_stage(config.zero_stage);
  in->set_recompute(workloads::recompute_name(inputs.memory.recompute));
  in->set_seed(config.seed);
  in->set_epsilon(config.executor.epsilon);
  in->set_memoize(config.executor.memoize);
  in->set_profile(inputs.profile_source);
  in->set_mode(workloads::step_mode_name(config.mode));
  in->set_context_len(config.context_len);
  in->set_comm_sms(config.comm_sms);
  in->set_routing_samples(config.routing_samples);

  report.set_step_time_ms(ms(result.step_time));
  report.set_tokens_per_s_per_gpu(result.tokens_per_second_per_gpu);
  report.set_model_tflops_per_gpu(result.model_tflops_per_gpu);
  report.set_mfu(result.mfu);
  for (const StageBreakdown& b : result.stages) {
    reports::StepStage* stage = report.add_stages();
    stage->set_stage(b.stage);
    stage->set_compute_ms(ms(b.compute));
    stage->set_exposed_layer_comm_ms(ms(b.exposed_layer_comm));
    stage->set_exposed_pp_comm_ms(ms(b.exposed_pp_comm));
    stage->set_exposed_dp_comm_ms(ms(b.exposed_dp_comm));
    stage->set_idle_ms(ms(b.idle));
  }

  // The stage with the most memory.
  workloads::MemoryBreakdown worst;
  for (int s = 0; s < config.layout.pp; ++s) {
    const workloads::MemoryBreakdown m = workloads::memory_of_stage(config.model, config.layout, inputs.memory, s);
    if (s == 0 || m.total > worst.total) worst = m;
  }
  reports::StepMemory* memory = report.mutable_memory();
  const double capacity = cluster.config().gpu.hbm_capacity_bytes;
  memory->set_stage(worst.pp_idx);
  memory->set_in_flight_microbatches(worst.in_flight_microbatches);
  memory->set_parameters_gib(worst.parameters / kGiB);
  memory->set_gradients_gib(worst.gradients / kGiB);
  memory->set_optimizer_states_gib(worst.optimizer_states / kGiB);
  memory->set_activations_gib(worst.activations / kGiB);
  memory->set_a2a_buffers_gib(worst.a2a_buffers / kGiB);
  memory->set_kv_cache_gib(worst.kv_cache / kGiB);
  memory->set_total_gib(worst.total / kGiB);
  memory->set_capacity_gib(capacity / kGiB);
  memory->set_fits(worst.total <= capacity);

  // The critical path by category, and the waits between its tasks.
  std::map<std::string, TimePs> by_category;
  TimePs previous_end = 0;
  for (const TaskId t : result.execution.critical_path) {
    const TaskTiming& timing = result.execution.timings[t];
    by_category[result.graph.tasks()[t].category] += timing.end - timing.start;
    if (timing.start > previous_end) by_category["wait"] += timing.start - previous_end;
    previous_end = timing.end;
  }
  for (const auto& [category, time] : by_category) {
    reports::CategoryTime* entry = report.add_critical_path();
    entry->set_category(category);
    entry->set_ms(ms(time));
  }
  report.set_num_tasks(static_cast<std::int64_t>(result.graph.size()));
  report.set_collectives_played(result.execution.num_collectives_played);
  report.set_collectives_memoized(result.execution.num_collectives_memoized);
  report.set_num_flows(static_cast<std::int64_t>(result.execution.network.num_flows));
  return report;
}

namespace {

// The stages' processes, the tasks' slices and the collectives-in-flight counters.
void add_stage_tracks(reports::TraceWriter& trace, const StepConfig& config, const StepResult& result) {
  static constexpr const char* kStreamNames[] = {"compute", "layer comm (TP, EP)", "pipeline sends", "DP gradients"};
  const int stride = config.layout.dp * config.layout.tp;
  std::vector<std::vector<reports::TraceThread>> threads;
  std::vector<reports::TraceCounter> in_flight;
  for (int s = 0; s < config.layout.pp; ++s) {
    const reports::TraceProcess process =
        trace.add_process("stage " + std::to_string(s) + " (GPUs " + std::to_string(s * stride) + "-" +
                              std::to_string((s + 1) * stride - 1) + ")",
                          s);
    threads.emplace_back();
    for (const char* name : kStreamNames) threads.back().push_back(trace.add_thread(process, name));
    in_flight.push_back(trace.add_counter_track(process, "collectives in flight"));
  }
  // Per stage, +1 at each collective's start and -1 at its end, in time order: the counter's steps.
  std::vector<std::vector<std::pair<TimePs, int>>> changes(static_cast<std::size_t>(config.layout.pp));
  const auto& tasks = result.graph.tasks();
  for (TaskId t = 0; t < tasks.size(); ++t) {
    const Task& task = tasks[t];
    const TaskTiming& timing = result.execution.timings[t];
    const auto lane = static_cast<std::size_t>(task.lane);
    const auto stream = static_cast<std::size_t>(task.stream);
    if (lane >= threads.size() || stream >= threads[lane].size()) continue;
    reports::TraceArgs args;
    if (task.kind == TaskKind::kCollective) {
      args.emplace_back("memoised", timing.memoized ? "yes" : "no");
      changes[lane].emplace_back(timing.start, 1);
      changes[lane].emplace_back(timing.end, -1);
    }
    trace.add_slice(threads[lane][stream], task.name, task.category, timing.start, timing.end - timing.start, args);
  }
  for (std::size_t lane = 0; lane < changes.size(); ++lane) {
    std::sort(changes[lane].begin(), changes[lane].end());
    int level = 0;
    for (std::size_t i = 0; i < changes[lane].size(); ++i) {
      level += changes[lane][i].second;
      // One point per instant, after every change at that instant.
      if (i + 1 == changes[lane].size() || changes[lane][i + 1].first != changes[lane][i].first) {
        trace.add_counter(in_flight[lane], changes[lane][i].first, level);
      }
    }
  }
}

// Link utilisation counters (report.hpp). Every quantity is a utilisation rate: a collective task that puts B bytes
// on a link of capacity C over D ps adds B / (C D) to the link's utilisation for the D ps, i.e. weight / D with
// weight = B / C the ps of full-capacity time it used.
void add_link_counters(reports::TraceWriter& trace, const topologies::Cluster& cluster, const StepConfig& config,
                       const StepResult& result) {
  const std::vector<std::vector<LinkBytes>>& link_bytes = result.execution.link_bytes;
  const TimePs makespan = result.execution.makespan;
  if (link_bytes.empty() || makespan <= 0) return;
  const auto& tasks = result.graph.tasks();
  const auto& timings = result.execution.timings;
  std::vector<std::int64_t> num_runs(link_bytes.size(), 0);  // by spec: its collective tasks
  for (TaskId t = 0; t < tasks.size(); ++t) {
    if (tasks[t].kind == TaskKind::kCollective) ++num_runs[static_cast<std::size_t>(tasks[t].collective)];
  }
  // Per-link totals over the step, to pick the busiest and count the links of each kind that carried anything.
  std::vector<double> total(cluster.num_links(), 0.0);
  for (std::size_t spec = 0; spec < link_bytes.size(); ++spec) {
    for (const LinkBytes& lb : link_bytes[spec]) total[lb.link] += lb.bytes * static_cast<double>(num_runs[spec]);
  }
  std::vector<std::uint32_t> used;
  std::array<int, topologies::kNumLinkKinds> num_used_of_kind{};
  for (std::uint32_t l = 0; l < total.size(); ++l) {
    if (total[l] <= 0.0) continue;
    used.push_back(l);
    ++num_used_of_kind[static_cast<std::size_t>(cluster.link(l).kind)];
  }
  if (used.empty()) return;
  const std::size_t num_busiest = std::min<std::size_t>(kNumTracedLinks, used.size());
  std::partial_sort(
      used.begin(), used.begin() + static_cast<std::ptrdiff_t>(num_busiest), used.end(),
      [&](std::uint32_t a, std::uint32_t b) { return total[a] != total[b] ? total[a] > total[b] : a < b; });
  used.resize(num_busiest);

  // The counters: kinds first, then the busiest links, busiest first.
  const reports::TraceProcess process = trace.add_process("network (link utilisation)", config.layout.pp);
  std::vector<reports::TraceCounter> tracks;
  std::array<int, topologies::kNumLinkKinds> series_of_kind{};
  series_of_kind.fill(-1);
  for (std::size_t k = 0; k < series_of_kind.size(); ++k) {
    if (num_used_of_kind[k] == 0) continue;
    series_of_kind[k] = static_cast<int>(tracks.size());
    tracks.push_back(
        trace.add_counter_track(process,
                                std::string(topologies::link_kind_name(static_cast<topologies::LinkKind>(k))) +
                                    ": mean of " + std::to_string(num_used_of_kind[k]) + " links",
                                "util"));
  }
  std::vector<std::pair<std::uint32_t, int>> series_of_busiest;  // (link, series), by link
  for (std::size_t i = 0; i < used.size(); ++i) {
    series_of_busiest.emplace_back(used[i], static_cast<int>(tracks.size()));
    tracks.push_back(trace.add_counter_track(
        process, "busiest " + std::to_string(i + 1) + ": " + cluster.link_name(used[i]), "util"));
  }
  std::sort(series_of_busiest.begin(), series_of_busiest.end());

  // Per spec, its weight on each series (ps of full capacity; per kind, divided by the kind's links).
  struct Weight {
    int series = 0;
    double ps = 0.0;
  };
  std::vector<std::size_t> weight_begin(link_bytes.size() + 1, 0);
  std::vector<Weight> weights;
  for (std::size_t spec = 0; spec < link_bytes.size(); ++spec) {
    std::array<double, topologies::kNumLinkKinds> of_kind{};
    for (const LinkBytes& lb : link_bytes[spec]) {
      const topologies::Link& link = cluster.link(lb.link);
      const double ps = lb.bytes / link.capacity_bps * 1e12;
      of_kind[static_cast<std::size_t>(link.kind)] += ps;
      const auto it = std::lower_bound(series_of_busiest.begin(), series_of_busiest.end(),
                                       std::make_pair(lb.link, std::numeric_limits<int>::min()));
      if (it != series_of_busiest.end() && it->first == lb.link) weights.push_back({it->second, ps});
    }
    for (std::size_t k = 0; k < of_kind.size(); ++k) {
      if (of_kind[k] > 0.0) weights.push_back({series_of_kind[k], of_kind[k] / num_used_of_kind[k]});
    }
    weight_begin[spec + 1] = weights.size();
  }

  // Bins of `width` ps. Per series and bin, `partial` holds the util x ps of collectives that cover the bin in
  // part, and `full` (a difference array) the utilisation of those that cover it whole, so each task costs O(1).
  const std::int64_t width = (makespan + kMaxTraceBins - 1) / kMaxTraceBins;
  const std::int64_t num_bins = (makespan + width - 1) / width;
  const auto bins = static_cast<std::size_t>(num_bins);
  std::vector<double> partial(tracks.size() * bins, 0.0);
  std::vector<double> full(tracks.size() * (bins + 1), 0.0);
  for (TaskId t = 0; t < tasks.size(); ++t) {
    if (tasks[t].kind != TaskKind::kCollective) continue;
    const auto spec = static_cast<std::size_t>(tasks[t].collective);
    const TimePs start = timings[t].start;
    const TimePs end = timings[t].end;
    const std::size_t first = static_cast<std::size_t>(std::min(start / width, num_bins - 1));
    const std::size_t last = end > start ? static_cast<std::size_t>((end - 1) / width) : first;
    for (std::size_t w = weight_begin[spec]; w < weight_begin[spec + 1]; ++w) {
      const auto series = static_cast<std::size_t>(weights[w].series);
      double* part = &partial[series * bins];
      if (first == last) {  // also a collective that took no time: its bytes land in the bin of its start
        part[first] += weights[w].ps;
        continue;
      }
      const double util = weights[w].ps / static_cast<double>(end - start);
      part[first] += util * static_cast<double>(static_cast<std::int64_t>(first + 1) * width - start);
      part[last] += util * static_cast<double>(end - static_cast<std::int64_t>(last) * width);
      full[series * (bins + 1) + first + 1] += util;
      full[series * (bins + 1) + last] -= util;
    }
  }

  // One point per bin where the value changed. The running sum of `full` leaves rounding residue (either sign)
  // where a value should be exactly 0 or unchanged, hence the tolerances (far below anything a viewer shows).
  constexpr double kZero = 1e-12;
  constexpr double kSame = 1e-9;
  for (std::size_t series = 0; series < tracks.size(); ++series) {
    double running = 0.0;
    double shown = 0.0;
    for (std::size_t b = 0; b < bins; ++b) {
      const std::int64_t begin = static_cast<std::int64_t>(b) * width;
      const std::int64_t bin_width = std::min(width, makespan - begin);
      running += full[series * (bins + 1) + b];
      double value = running + partial[series * bins + b] / static_cast<double>(bin_width);
      if (value < kZero) value = 0.0;
      if (b > 0 && std::abs(value - shown) <= kSame * std::max(std::abs(value), std::abs(shown))) continue;
      trace.add_counter(tracks[series], begin, value);
      shown = value;
    }
    if (shown != 0.0) trace.add_counter(tracks[series], makespan, 0.0);
  }
}

}  // namespace

void write_step_trace(const topologies::Cluster& cluster, const StepConfig& config, const StepResult& result,
                      const std::string& path) {
  reports::TraceWriter trace;
  add_stage_tracks(trace, config, result);
  add_link_counters(trace, cluster, config, result);
  trace.write_file(path);
}

}  // namespace moesim::sim::step
