#include "sim/step/executor.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "sim/core/simulator.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::step {

int TaskGraph::add_collective_spec(CollectiveSpec spec) {
  collectives_.push_back(std::move(spec));
  return static_cast<int>(collectives_.size()) - 1;
}

TaskId TaskGraph::add(Task task) {
  if (task.lane < 0 || task.stream < 0) {
    throw std::invalid_argument("task '" + task.name + "': lane and stream must be >= 0");
  }
  tasks_.push_back(std::move(task));
  return static_cast<TaskId>(tasks_.size() - 1);
}

TaskId TaskGraph::add_compute(int lane, int stream, std::string name, std::string category, TimePs duration) {
  if (duration < 0) throw std::invalid_argument("task '" + name + "': duration must be >= 0");
  return add(Task{std::move(name), std::move(category), lane, stream, TaskKind::kCompute, duration, -1});
}

TaskId TaskGraph::add_collective(int lane, int stream, std::string name, std::string category, int collective) {
  if (collective < 0 || collective >= static_cast<int>(collectives_.size())) {
    throw std::invalid_argument("task '" + name + "': no collective " + std::to_string(collective));
  }
  return add(Task{std::move(name), std::move(category), lane, stream, TaskKind::kCollective, 0, collective});
}

void TaskGraph::add_dependency(TaskId before, TaskId after) {
  if (before >= tasks_.size() || after >= tasks_.size() || before == after) {
    throw std::invalid_argument("dependency " + std::to_string(before) + " -> " + std::to_string(after) +
                                ": both must be distinct existing tasks");
  }
  dependencies_.emplace_back(before, after);
}

namespace {

// One run of a graph. Owns the simulator and the network, so runs are independent.
class Executor {
 public:
  Executor(const topologies::Cluster& cluster, const TaskGraph& graph, const ExecutorOptions& options)
      : graph_(graph),
        options_(options),
        network_(simulator_, cluster, network::NetworkOptions{options.epsilon, options.comm_bandwidth_limit_bps}),
        spec_links_(graph.collectives().size()),
        spec_done_(graph.collectives().size(), 0),
        link_users_(network_.num_links(), 0),
        link_stamp_(network_.num_links(), 0) {
    if (options.record_link_bytes) {
      spec_link_bytes_.resize(graph.collectives().size());
      bytes_on_link_.resize(network_.num_links(), 0.0);
    }
    const std::size_t n = graph.size();
    timings_.resize(n);
    pending_.assign(n, 0);
    done_.assign(n, 0);
    // Successors: the next task of the same stream first, then dependencies in the order they were added.
    std::vector<std::vector<TaskId>> successors(n);
    std::map<std::pair<int, int>, TaskId> last_on_stream;
    for (TaskId t = 0; t < n; ++t) {
      const Task& task = graph.tasks()[t];
      const auto [it, is_first] = last_on_stream.try_emplace({task.lane, task.stream}, t);
      if (!is_first) {
        successors[it->second].push_back(t);
        ++pending_[t];
        it->second = t;
      }
    }
    for (const auto& [before, after] : graph.dependencies()) {
      successors[before].push_back(after);
      ++pending_[after];
    }
    successor_begin_.assign(n + 1, 0);
    for (std::size_t t = 0; t < n; ++t) successor_begin_[t + 1] = successor_begin_[t] + successors[t].size();
    successor_.reserve(successor_begin_[n]);
    for (const auto& list : successors) successor_.insert(successor_.end(), list.begin(), list.end());
  }

  ExecutionResult run() {
    for (TaskId t = 0; t < graph_.size(); ++t) {
      if (pending_[t] == 0) start(t);
    }
    simulator_.run();
    ExecutionResult result;
    for (TaskId t = 0; t < graph_.size(); ++t) {
      if (!done_[t]) {
        throw std::logic_error("step graph: task '" + graph_.tasks()[t].name +
                               "' never became ready (a dependency cycle)");
      }
    }
    result.timings = timings_;
    TaskId last = kNoTask;
    for (TaskId t = 0; t < graph_.size(); ++t) {
      if (last == kNoTask || timings_[t].end >= timings_[last].end) last = t;
    }
    for (TaskId t = last; t != kNoTask; t = timings_[t].released_by) result.critical_path.push_back(t);
    std::reverse(result.critical_path.begin(), result.critical_path.end());
    result.makespan = last == kNoTask ? 0 : timings_[last].end;
    result.num_collectives_played = num_played_;
    result.num_collectives_memoized = num_memoized_;
    result.network = network_.stats();
    result.link_bytes = std::move(spec_link_bytes_);
    return result;
  }

 private:
  // A collective in flight (played or memoised), and whether it is a clean measurement so far.
  struct InFlight {
    std::unique_ptr<collectives::TransferRunner> runner;  // null when memoised
    int spec = -1;
    bool is_clean = false;
  };

  void start(TaskId t) {
    const Task& task = graph_.tasks()[t];
    timings_[t].start = simulator_.now();
    if (task.kind == TaskKind::kCompute) {
      simulator_.schedule_in(task.duration, [this, t] { finish(t); });
      return;
    }
    const auto spec_idx = static_cast<std::size_t>(task.collective);
    const CollectiveSpec& spec = graph_.collectives()[spec_idx];
    const std::vector<std::uint32_t>& links = links_of(spec_idx);
    // Whoever in flight shares a link with this collective is no longer a clean measurement, nor is this one.
    const bool is_alone = mark_sharers(links);
    for (const std::uint32_t link : links) ++link_users_[link];
    InFlight& flight = in_flight_[t];
    flight.spec = task.collective;
    if (options_.memoize && is_alone) {
      const auto it = memo_.find(spec.signature);
      if (it != memo_.end()) {
        ++num_memoized_;
        timings_[t].memoized = true;
        simulator_.schedule_in(it->second, [this, t] { finish(t); });
        return;
      }
    }
    ++num_played_;
    flight.is_clean = is_alone;
    flight.runner = std::make_unique<collectives::TransferRunner>(network_, spec.graph, spec.bytes_per_unit);
    // Finish outside the network's callback, at the same instant, so that successors start from a plain event.
    flight.runner->set_on_finished([this, t] { simulator_.schedule_at(simulator_.now(), [this, t] { finish(t); }); });
    flight.runner->start();
  }

  // The links the collective's transfers are routed over (routes depend only on source, destination and salt),
  // the virtual ones of a bandwidth limit included, computed once per collective spec; with record_link_bytes,
  // also the bytes they carry.
  const std::vector<std::uint32_t>& links_of(std::size_t spec_idx) {
    std::vector<std::uint32_t>& links = spec_links_[spec_idx];
    if (spec_done_[spec_idx]) return links;
    spec_done_[spec_idx] = 1;
    ++stamp_;
    const CollectiveSpec& spec = graph_.collectives()[spec_idx];
    const bool is_recording = options_.record_link_bytes;
    std::vector<std::uint32_t> path;
    for (const auto& node : spec.graph.nodes()) {
      if (node.src_gpu < 0 || node.src_gpu == node.dst_gpu || node.units <= 0.0) continue;
      path.clear();
      network_.route(node.src_gpu, node.dst_gpu, node.salt, path);
      for (const std::uint32_t link : path) {
        if (is_recording) bytes_on_link_[link] += node.units * spec.bytes_per_unit;  // as TransferRunner sends
        if (link_stamp_[link] == stamp_) continue;
        link_stamp_[link] = stamp_;
        links.push_back(link);
      }
    }
    std::sort(links.begin(), links.end());
    if (is_recording) {
      std::vector<LinkBytes>& out = spec_link_bytes_[spec_idx];
      for (const std::uint32_t link : links) {
        if (!network_.is_virtual(link)) out.push_back(LinkBytes{link, bytes_on_link_[link]});
        bytes_on_link_[link] = 0.0;
      }
    }
    return links;
  }

  // True when no collective in flight uses any of `links`; otherwise marks every one that does as unclean.
  bool mark_sharers(const std::vector<std::uint32_t>& links) {
    const bool is_alone =
        std::none_of(links.begin(), links.end(), [this](std::uint32_t link) { return link_users_[link] > 0; });
    if (is_alone) return true;
    ++stamp_;
    for (const std::uint32_t link : links) link_stamp_[link] = stamp_;
    for (auto& [task, flight] : in_flight_) {
      if (!flight.is_clean) continue;
      const auto& other = spec_links_[static_cast<std::size_t>(flight.spec)];
      flight.is_clean =
          std::none_of(other.begin(), other.end(), [this](std::uint32_t link) { return link_stamp_[link] == stamp_; });
    }
    return false;
  }

  void finish(TaskId t) {
    const Task& task = graph_.tasks()[t];
    timings_[t].end = simulator_.now();
    done_[t] = 1;
    if (task.kind == TaskKind::kCollective) {
      const auto it = in_flight_.find(t);
      const auto spec_idx = static_cast<std::size_t>(it->second.spec);
      for (const std::uint32_t link : spec_links_[spec_idx]) --link_users_[link];
      if (it->second.is_clean && options_.memoize) {
        memo_.try_emplace(graph_.collectives()[spec_idx].signature, timings_[t].end - timings_[t].start);
      }
      // The network may still hold the runner as a listener until the instant ends.
      if (it->second.runner) finished_runners_.push_back(std::move(it->second.runner));
      in_flight_.erase(it);
    }
    for (std::size_t k = successor_begin_[t]; k < successor_begin_[t + 1]; ++k) {
      const TaskId next = successor_[k];
      if (--pending_[next] == 0) {
        timings_[next].released_by = t;
        start(next);
      }
    }
  }

  const TaskGraph& graph_;
  ExecutorOptions options_;
  Simulator simulator_;
  network::Network network_;
  std::vector<TaskTiming> timings_;
  std::vector<std::uint32_t> pending_;
  std::vector<char> done_;
  std::vector<std::size_t> successor_begin_;
  std::vector<TaskId> successor_;
  std::map<TaskId, InFlight> in_flight_;  // ordered: sharers are marked in a fixed order
  std::vector<std::unique_ptr<collectives::TransferRunner>> finished_runners_;
  std::unordered_map<std::string, TimePs> memo_;        // looked up, never iterated: order cannot leak into results
  std::vector<std::vector<std::uint32_t>> spec_links_;  // by collective spec, sorted
  std::vector<char> spec_done_;
  std::vector<std::int32_t> link_users_;  // by link: collectives in flight routed over it
  std::vector<std::uint32_t> link_stamp_;
  std::uint32_t stamp_ = 0;
  std::vector<std::vector<LinkBytes>> spec_link_bytes_;  // with record_link_bytes: by collective spec
  std::vector<double> bytes_on_link_;                    // with record_link_bytes: links_of's scratch, by link
  std::int64_t num_played_ = 0;
  std::int64_t num_memoized_ = 0;
};

}  // namespace

ExecutionResult execute(const topologies::Cluster& cluster, const TaskGraph& graph, const ExecutorOptions& options) {
  for (const Task& task : graph.tasks()) {
    if (task.kind == TaskKind::kCollective) {
      for (const auto& node : graph.collectives()[static_cast<std::size_t>(task.collective)].graph.nodes()) {
        if (node.src_gpu >= cluster.num_gpus() || node.dst_gpu >= cluster.num_gpus()) {
          throw std::invalid_argument("task '" + task.name + "': its collective names GPU " +
                                      std::to_string(std::max(node.src_gpu, node.dst_gpu)) + ", the cluster has " +
                                      std::to_string(cluster.num_gpus()));
        }
      }
    }
  }
  Executor executor(cluster, graph, options);
  return executor.run();
}

StreamTime stream_time(const TaskGraph& graph, const ExecutionResult& result, int lane, int stream, int other_stream) {
  std::vector<std::pair<TimePs, TimePs>> mine;
  std::vector<std::pair<TimePs, TimePs>> other;
  for (TaskId t = 0; t < graph.size(); ++t) {
    const Task& task = graph.tasks()[t];
    if (task.lane != lane) continue;
    const TaskTiming& timing = result.timings[t];
    if (timing.end <= timing.start) continue;
    if (task.stream == stream) mine.emplace_back(timing.start, timing.end);
    if (task.stream == other_stream) other.emplace_back(timing.start, timing.end);
  }
  // Sorted, overlapping intervals merged.
  auto merge = [](std::vector<std::pair<TimePs, TimePs>>& intervals) {
    std::sort(intervals.begin(), intervals.end());
    std::vector<std::pair<TimePs, TimePs>> out;
    for (const auto& interval : intervals) {
      if (!out.empty() && interval.first <= out.back().second) {
        out.back().second = std::max(out.back().second, interval.second);
      } else {
        out.push_back(interval);
      }
    }
    intervals = std::move(out);
  };
  merge(mine);
  merge(other);
  StreamTime time;
  std::size_t j = 0;
  for (const auto& [begin, end] : mine) {
    time.busy += end - begin;
    // The part of [begin, end) that no interval of the other stream covers.
    TimePs covered = 0;
    while (j < other.size() && other[j].second <= begin) ++j;
    for (std::size_t k = j; k < other.size() && other[k].first < end; ++k) {
      covered += std::min(end, other[k].second) - std::max(begin, other[k].first);
    }
    time.exposed += (end - begin) - covered;
  }
  return time;
}

}  // namespace moesim::sim::step
