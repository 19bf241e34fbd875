// The step executor: runs a DAG of tasks on per-lane streams, with the collectives played on the flow-level
// network, and reports when every task ran and which chain of tasks set the makespan.
//
// Theory of operation. A lane is whatever executes a task stream in lock-step: one GPU, or one pipeline stage
// standing for all the GPUs that do the same work at the same time (SPMD). Each lane has streams (compute, comm,
// ...) with CUDA stream semantics: the tasks of a stream run one at a time in the order they were added. A task
// starts when the previous task of its stream has finished and so have all its dependencies (CUDA events across
// streams and lanes), so overlap between streams is simulated, not assumed. A compute task lasts its given
// duration (the roofline's, sim/compute). A collective task plays its transfer graph on the one network all
// lanes share (collectives/transfer_graph.hpp), so collectives that run at the same time contend for links.
//
// Memoisation. A step repeats the same collectives many times (every micro-batch of a layer, forward and
// backward). A collective's links are those its transfers are routed over (routes depend only on source,
// destination and ECMP salt, so they are known before it runs). A collective that ran from start to end without
// any other collective in flight on one of its links is a clean measurement: its duration is cached under its
// signature (equal signatures mean identical traffic on identical GPUs, the builder's promise). A later
// collective with a cached signature whose links no collective in flight uses takes the cached duration instead
// of being played; it occupies its links while in flight. Otherwise it is played live. So collectives of
// different pipeline stages, which run side by side on different nodes, are each measured once. The
// approximation: a collective played live while a memoised one holds some of its links does not see that load
// (the memoised one has no flows), so that contention is missed. ExecutorOptions::memoize = false plays
// everything live; tests and BENCHMARKS.md compare the two.
//
// Communication SMs. ExecutorOptions::comm_bandwidth_limit_bps caps every GPU's total send rate and total receive
// rate over all the collectives in flight (the SMs their kernels run on can drive no more; network.hpp's virtual
// links). The virtual links count among a collective's links, so two collectives that share a GPU's cap are not
// clean measurements; the cap is the same for every collective, so memoised durations stay valid.
//
// Link bytes. With ExecutorOptions::record_link_bytes, the result holds, per collective spec that ran, the bytes
// its traffic put on each cluster link: the sum over its transfers of their bytes on every link of their route.
// Routes and bytes depend only on the spec, so a memoised run carried exactly what the measurement it reuses did,
// and every task of the spec carried the spec's bytes between its start and end (the step trace's link counters).
// The bytes are computed while the links are, once per spec; off, nothing is recorded.
//
// Critical path: each task remembers the predecessor whose completion released it (its stream predecessor or a
// dependency, whichever finished last; ties to the earlier-added task). Walking back from the task that finished
// last gives a chain whose durations and waits add up to the makespan.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/units.hpp"
#include "sim/collectives/transfer_graph.hpp"
#include "sim/network/network.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim::step {

using TaskId = std::uint32_t;
inline constexpr TaskId kNoTask = std::numeric_limits<TaskId>::max();

// A collective's traffic: a transfer graph over the cluster's GPUs, played with bytes_per_unit bytes per unit.
// Equal signatures must mean equal traffic (graph and bytes): the executor caches by signature.
struct CollectiveSpec {
  std::string signature;
  collectives::TransferGraph graph;
  double bytes_per_unit = 1.0;
};

enum class TaskKind { kCompute, kCollective };

struct Task {
  std::string name;      // "fwd mb3 layer 7 dispatch", for traces
  std::string category;  // "attention", "expert", "a2a", "dp", ... for the time breakdown
  int lane = 0;
  int stream = 0;
  TaskKind kind = TaskKind::kCompute;
  TimePs duration = 0;  // compute tasks
  int collective = -1;  // collective tasks: index into TaskGraph::collectives()
};

class TaskGraph {
 public:
  int add_collective_spec(CollectiveSpec spec);
  TaskId add_compute(int lane, int stream, std::string name, std::string category, TimePs duration);
  TaskId add_collective(int lane, int stream, std::string name, std::string category, int collective);
  // `after` starts only once `before` has finished.
  void add_dependency(TaskId before, TaskId after);

  std::size_t size() const { return tasks_.size(); }
  const std::vector<Task>& tasks() const { return tasks_; }
  const std::vector<CollectiveSpec>& collectives() const { return collectives_; }
  const std::vector<std::pair<TaskId, TaskId>>& dependencies() const { return dependencies_; }

 private:
  TaskId add(Task task);

  std::vector<Task> tasks_;
  std::vector<CollectiveSpec> collectives_;
  std::vector<std::pair<TaskId, TaskId>> dependencies_;
};

struct ExecutorOptions {
  double epsilon = network::kDefaultEpsilon;  // the network's completion window
  bool memoize = true;                        // reuse clean measurements of repeated collectives (above)
  // Per GPU, bytes/s: the most its communication kernels can send, and receive, in all (compute::
  // comm_bandwidth_limit of their SMs). 0: no limit beyond the links.
  double comm_bandwidth_limit_bps = 0;
  bool record_link_bytes = false;  // fill ExecutionResult::link_bytes (above)
};

// Bytes a collective's traffic puts on one cluster link.
struct LinkBytes {
  std::uint32_t link = 0;
  double bytes = 0.0;
};

struct TaskTiming {
  TimePs start = 0;
  TimePs end = 0;
  TaskId released_by = kNoTask;  // the predecessor whose completion let it start
  bool memoized = false;         // a collective that took its cached duration
};

struct ExecutionResult {
  TimePs makespan = 0;
  std::vector<TaskTiming> timings;    // by task
  std::vector<TaskId> critical_path;  // first to last
  std::int64_t num_collectives_played = 0;
  std::int64_t num_collectives_memoized = 0;
  network::NetworkStats network;
  // With ExecutorOptions::record_link_bytes: by collective spec (TaskGraph::collectives()), the bytes of its traffic
  // on each cluster link it crosses, by ascending link; empty for a spec no task ran, or when not recorded.
  std::vector<std::vector<LinkBytes>> link_bytes;
};

// Runs the graph from time 0. Throws std::invalid_argument for a task naming a collective or lane that does not
// exist, and std::logic_error if the dependencies form a cycle (some task never becomes ready).
ExecutionResult execute(const topologies::Cluster& cluster, const TaskGraph& graph,
                        const ExecutorOptions& options = {});

// Per lane, how long its tasks of `stream` were running (union of their intervals), and how much of that time no
// task of `other_stream` was running (e.g. communication not hidden behind compute).
struct StreamTime {
  TimePs busy = 0;
  TimePs exposed = 0;
};
StreamTime stream_time(const TaskGraph& graph, const ExecutionResult& result, int lane, int stream, int other_stream);

}  // namespace moesim::sim::step
