// A simulated step as the results schema (reports/results.proto StepReport).
#pragma once

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
void write_step_trace(const StepConfig& config, const StepResult& result, const std::string& path);

}  // namespace moesim::sim::step
