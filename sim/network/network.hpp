// The flow-level network: transfers as flows along routed paths, sharing links by max-min fairness.
//
// Theory of operation. start_flow() routes a transfer over the cluster and holds it for its start-up latency
// (per-hop latency plus the per-message overhead of its path); it then becomes active and shares the capacity
// of every link on its path with the other active flows, by max-min fairness (maxmin.hpp). Rates change only
// when the set of active flows changes, and then only inside the connected component of flows and links that
// the change touched. All arrivals and completions at one instant are handled by one recomputation: the
// network's event runs after every other event of that instant (kPriorityNetwork).
//
// Between changes every rate is constant, so each flow's finish time is known; flows sit in an indexed heap by
// finish time, and a flow's remaining bytes are settled only when its own rate changes.
//
// Completion window. When flows finish at many distinct instants (skewed traffic), an exact run needs one
// recomputation per instant. With epsilon > 0, the next event gathers every flow that finishes within
// epsilon x (time since the network last became busy) after the earliest one, and fires when the last of them
// finishes: each flow's bytes are accounted exactly and no link ever carries more than its capacity, but a
// flow that finished earlier in the window holds its share until the window closes, so results err late, by
// at most the window, and simulated / lower bound never falls below 1. epsilon = 0 is the exact run.
//
// Communication kernels limited by their SMs. A collective's kernels run on a few SMs, which can drive only so many
// bytes per second (compute::comm_bandwidth_limit). With NetworkOptions::comm_bandwidth_limit_bps = B > 0, every
// GPU g gets two virtual links of capacity B after the cluster's: egress 2g and ingress 2g + 1, numbered from
// cluster.num_links(). route() appends the source's egress and the destination's ingress link to the cluster's
// route, so max-min fairness shares B among all the flows a GPU sends (receives), whatever links they take, and a
// lone flow runs at min(B, its bottleneck link). Virtual links add no latency and are not counted in
// link_counters(). With B = 0 there are none and routes are the cluster's.
//
// Per link, the network counts the bytes it carried and the time it was busy (carrying at least one flow).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <vector>

#include "common/units.hpp"
#include "sim/core/indexed_heap.hpp"
#include "sim/core/simulator.hpp"
#include "sim/network/maxmin.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim::network {

// The default completion window: measured to put results within about 1% of the exact run (late, never
// early) at a fraction of its cost; see BENCHMARKS.md.
inline constexpr double kDefaultEpsilon = 0.01;

struct NetworkOptions {
  double epsilon = kDefaultEpsilon;     // relative completion window, see above; 0 = exact
  double comm_bandwidth_limit_bps = 0;  // per GPU, on its total send and on its total receive rate; 0 = none
};

// Receives completions. Implemented by whatever started the flows (a collective, a step).
class FlowListener {
 public:
  virtual void on_flow_done(std::uint64_t tag) = 0;

 protected:
  ~FlowListener() = default;  // listeners are never deleted through this interface
};

struct LinkCounters {
  double bytes = 0.0;
  TimePs busy_ps = 0;
};

struct NetworkStats {
  std::uint64_t num_flows = 0;
  std::uint64_t num_recomputations = 0;
  std::uint64_t num_flows_rerated = 0;  // flows whose rate a recomputation visited, summed
  std::uint64_t max_active_flows = 0;
  TimePs min_flow_latency_ps = std::numeric_limits<TimePs>::max();
  // A hash of the trajectory: every completion instant with the tags of the flows that ended there. Any change
  // in behaviour changes it; tests/scenario/fingerprints.csv pins it for a few scenarios.
  std::uint64_t fingerprint = 0;
};

class Network {
 public:
  // Throws std::invalid_argument for an epsilon outside [0, 1] or a negative or non-finite bandwidth limit.
  Network(Simulator& sim, const topologies::Cluster& cluster, NetworkOptions options = {});

  // Starts a transfer of `bytes` from src_gpu to dst_gpu now; `listener->on_flow_done(tag)` runs when its last
  // byte arrives. `salt` selects among equal-cost routes. A transfer to itself, or of zero bytes, completes
  // after its start-up latency without touching any link.
  void start_flow(int src_gpu, int dst_gpu, double bytes, std::uint64_t salt, FlowListener* listener,
                  std::uint64_t tag);

  // Appends to `path` the links a flow from src_gpu to dst_gpu crosses: the cluster's route (empty when src ==
  // dst), then with a bandwidth limit the virtual egress and ingress links. start_flow() routes the same way.
  void route(int src_gpu, int dst_gpu, std::uint64_t salt, std::vector<std::uint32_t>& path) const;
  // The cluster's links and the virtual ones: the bound of every link index the network uses.
  std::size_t num_links() const { return capacity_.size(); }
  bool is_virtual(std::uint32_t link) const { return link >= num_cluster_links_; }

  // By cluster link (virtual links are left out).
  std::span<const LinkCounters> link_counters() const { return {counters_.data(), num_cluster_links_}; }
  // No flow in its start-up latency, active, or with a completion still to deliver.
  bool is_idle() const { return num_active_ == 0 && arrivals_.empty() && done_.empty(); }
  // Whether any active flow crosses the link now.
  bool is_link_in_use(std::uint32_t link) const { return !flows_on_[link].empty(); }
  const NetworkStats& stats() const { return stats_; }
  const topologies::Cluster& cluster() const { return cluster_; }
  TimePs sim_now() const { return sim_.now(); }

  // What MaxMinSolver::solve_system reads (tests and tools use it; the network builds its problems itself).
  double capacity(std::uint32_t link) const { return capacity_[link]; }
  double rate(std::uint32_t flow) const { return rates_[flow]; }
  const std::vector<std::uint32_t>& flows_on(std::uint32_t link) const { return flows_on_[link]; }
  struct PathView {
    const std::uint32_t* first;
    const std::uint32_t* last;
    const std::uint32_t* begin() const { return first; }
    const std::uint32_t* end() const { return last; }
  };
  PathView links_of(std::uint32_t flow) const {
    const PathRef ref = paths_[flow];
    const std::uint32_t* p = path_links_.data() + ref.begin;
    return {p, p + ref.num_hops};
  }

 private:
  struct Flow {
    double bytes = 0.0;
    double remaining = 0.0;   // bytes left as of updated_at
    double updated_at = 0.0;  // ps
    FlowListener* listener = nullptr;
    std::uint64_t tag = 0;
  };
  // Where a flow's links sit in path_links_; kept apart from Flow so the solver's inner loops touch 8 bytes
  // per flow instead of the whole record.
  struct PathRef {
    std::uint32_t begin = 0;
    std::uint32_t num_hops = 0;
  };
  struct Done {
    FlowListener* listener;
    std::uint64_t tag;
  };

  void on_event(std::uint64_t generation);
  void schedule_next();
  TimePs next_completion_time() const;
  void activate(std::uint32_t flow, TimePs now);
  void retire_finished(TimePs now);
  void set_slot(std::uint32_t flow, std::uint32_t link, std::uint32_t slot);
  void recompute(TimePs now);
  void mark_changed(std::uint32_t link, double keep_below);
  void reset_if_idle();
  void append_virtual_links(int src_gpu, int dst_gpu, std::vector<std::uint32_t>& path) const;

  Simulator& sim_;
  const topologies::Cluster& cluster_;
  NetworkOptions options_;
  std::size_t num_cluster_links_ = 0;

  std::vector<double> capacity_;  // bytes per ps, by link (the cluster's, then the virtual ones)
  std::vector<std::vector<std::uint32_t>> flows_on_;
  std::vector<LinkCounters> counters_;
  std::vector<TimePs> busy_since_;

  std::vector<Flow> flows_;
  std::vector<PathRef> paths_;  // by flow
  // By flow, bytes per ps; apart from Flow because the component search reads it for every flow on every link
  // it visits.
  std::vector<double> rates_;
  std::vector<std::uint32_t> path_links_;  // flows' paths, appended; reset when the network is idle
  std::vector<std::uint32_t> path_slots_;  // parallel to path_links_: the flow's index in flows_on_[link]
  // Flows in their start-up latency, by the time they become active. Few distinct instants hold many flows
  // (a collective starts its flows together), so a map of buckets beats a heap of flows.
  std::map<TimePs, std::vector<std::uint32_t>> arrivals_;
  IndexedMinHeap finish_;  // active flows by finish time (ps)
  std::vector<Done> done_;
  std::vector<std::uint32_t> retiring_;       // scratch of retire_finished
  std::vector<std::uint32_t> dying_on_link_;  // by link: flows of the current retirement on it
  std::vector<std::uint32_t> touched_links_;
  std::vector<char> is_dying_;  // by flow
  std::uint64_t num_active_ = 0;

  // Recomputation scratch: links touched since the last recomputation, and the component found from them.
  std::vector<std::uint32_t> changed_links_;
  std::vector<double> changed_below_;  // by link: flows slower than this on it keep their rates (infinity: unchanged)
  std::vector<std::uint32_t> link_mark_;
  std::vector<std::uint32_t> flow_mark_;
  std::uint32_t mark_ = 0;
  std::vector<std::uint32_t> component_flows_;
  std::vector<std::uint32_t> component_links_;
  std::vector<std::uint32_t> link_local_;  // by link: its index in component_links_ (valid when marked)
  std::vector<std::uint32_t> fill_;
  SharingProblem problem_;
  std::vector<double> new_rates_;  // by index in component_flows_
  MaxMinSolver solver_;
  std::vector<std::uint32_t> route_scratch_;

  TimePs busy_start_ = 0;
  std::uint64_t generation_ = 0;
  TimePs scheduled_at_ = -1;
  bool in_event_ = false;
  NetworkStats stats_;
};

}  // namespace moesim::sim::network
