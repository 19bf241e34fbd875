// A simulated step as the results schema (reports/results.proto StepReport).
#pragma once

#include <cstdint>
#include <string>

#include "reports/results.pb.h"
#include "sim/step/builder.hpp"
#include "workloads/memory.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim::step {

struct StepReportInputs {
  std::string cluster_name;
  std::string gpu_profile;     // the device profile's name
  std::string profile_source;  // the cost profile's source
  workloads::MemoryOptions memory;
};

reports::StepReport make_step_report(const topologies::Cluster& cluster, const StepConfig& config,
                                     const StepResult& result, const StepReportInputs& inputs);

// The step as a Chrome/Perfetto trace (reports/trace.hpp), written atomically to `path`: one process per pipeline
// stage (its GPUs act in lock-step), one thread per stream (compute, layer comm, pipeline, DP), one slice per task
// (memoised collectives say so in their args), and per stage a counter of the collectives in flight.
//
// When the step ran with ExecutorOptions::record_link_bytes, a last process, "network", holds link utilisation
// counters (carried bytes / (capacity x time), 0 to 1): per link kind (topologies::link_kind_name), the mean over
// the links of that kind that carried anything in the step, and the kNumTracedLinks links that carried the most
// bytes, each alone. The executor knows what each collective put on each link in total, not when within the
// collective: the trace spreads a collective's bytes evenly over its task's [start, end), latency included, so a
// counter shows the collective's mean rate, never its peaks, and the bytes per link over the step are exact. Time is
// cut into at most kMaxTraceBins equal bins (the last one shorter); a counter has one point per bin whose value
// differs from the previous point, and a 0 at the step's end. Cost: O(links each collective spec crosses) once, then
// O(1) per collective task and counter, and O(bins x counters) memory, however many links the cluster has.
inline constexpr int kNumTracedLinks = 8;
inline constexpr std::int64_t kMaxTraceBins = 2000;
void write_step_trace(const topologies::Cluster& cluster, const StepConfig& config, const StepResult& result,
                      const std::string& path);

}  // namespace moesim::sim::step
