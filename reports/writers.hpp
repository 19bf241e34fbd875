// Writers: results as JSON and as readable text, and files written so that a failed run leaves nothing behind.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>

#include <google/protobuf/message.h>

#include "reports/results.pb.h"

namespace moesim::reports {

// Deterministic, indented JSON with the schema's field names; every field is printed, zeros included, so
// that output of one version always has the same keys.
std::string to_json(const google::protobuf::Message& message);

// The readable summary of an a2a run.
std::string a2a_text(const A2aResult& result);

// The readable summary of a capacity run: inputs, the routed load, a table over the capacity factors and, when
// run, the bias balancing (at most about ten of its steps; the JSON has them all).
std::string capacity_text(const CapacityResult& result);
// The summary of a simulated step: throughput, the time breakdown per stage, memory, the critical path.
std::string step_text(const StepReport& r);
// The planner's ranking, then how many layouts were dropped and why (the reasons in full are in the JSON).
std::string plan_text(const PlanResult& r);

// Writes `content` to `path` through a temporary file in the same directory and a rename, so readers never
// see a half-written file. Throws std::invalid_argument naming the path if it cannot be written.
void write_file_atomically(const std::string& path, const std::string& content);
// The same for output too large to build as one string: `write` streams it into the temporary file.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace moesim::reports
