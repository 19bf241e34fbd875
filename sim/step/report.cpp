#include "sim/step/report.hpp"

#include <algorithm>
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

void write_step_trace(const StepConfig& config, const StepResult& result, const std::string& path) {
  static constexpr const char* kStreamNames[] = {"compute", "layer comm (TP, EP)", "pipeline sends", "DP gradients"};
  reports::TraceWriter trace;
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
  trace.write_file(path);
}

}  // namespace moesim::sim::step
