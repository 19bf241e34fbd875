// A lower bound on the time a transfer graph takes on the flow-level network, from its routes alone (no play),
// for the step's lower bound (builder.hpp, step_lower_bound) and so for the planner's pruning.
//
// Theory of operation. The network shares each link's capacity among the flows on it (max-min, network.hpp), and a
// flow moves no byte before its start-up latency (the path's per-hop latencies plus its largest per-message
// overhead) has passed. So however the flows are scheduled, the graph cannot end before
//     min over its flows of the latency  +  max over links l of (bytes routed over l) / capacity(l),
// and with a per-GPU communication cap B (network.hpp's virtual links) before (bytes a GPU sends, or receives) / B
// either. The same bound holds when the graph shares the network with other traffic (that only slows it), with the
// network's completion window (results err late, never early), and for a memoised run (a clean measurement of the
// same graph). sim/a2a.cpp reports the same bound from the counters of a played run; here every transfer is routed
// with the cluster's route() (the network's routes: same source, destination and ECMP salt) and its units summed
// per link. Units, not bytes: one routing serves every element size (a dispatch and its gradient), as
// bytes_per_unit x seconds_per_unit.
//
// Cost: O(transfers x hops) once the routes are known. Routes depend only on (source, destination, salt), so a
// RouteCache keeps each route and its latency: a layer's All-to-All routes the same pairs as every other layer's.
//
// The traffic to bound comes from sampling a layer's routing (workloads/traffic.hpp), which costs far more than
// routing it. A group's routing depends only on the pattern of nodes under its ranks (which ranks share a node,
// not which GPUs they are), the tokens per rank, ep, the layer, the sample and the routing options, so layouts that
// differ in pp (or dp) route the same group of their stages identically: a GroupRoutingCache keeps each one.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/units.hpp"
#include "sim/collectives/transfer_graph.hpp"
#include "workloads/traffic.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim::step {

// The routes already taken, by (source, destination, salt). Not thread-safe: one per thread.
class RouteCache {
 public:
  struct Route {
    std::uint32_t first = 0;  // into links()
    std::uint32_t num_hops = 0;
    TimePs latency_ps = 0;
  };

  explicit RouteCache(const topologies::Cluster& cluster) : cluster_(cluster) {}
  const Route& route(int src_gpu, int dst_gpu, std::uint64_t salt);
  const std::uint32_t* links(const Route& route) const { return links_.data() + route.first; }

 private:
  struct Key {
    int src_gpu = 0;
    int dst_gpu = 0;
    std::uint64_t salt = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& key) const;
  };

  const topologies::Cluster& cluster_;
  std::unordered_map<Key, Route, KeyHash> routes_;
  std::vector<std::uint32_t> links_;
  std::vector<std::uint32_t> scratch_;
};

struct TransferGraphBound {
  double seconds_per_unit = 0.0;  // max over links (and per-GPU caps) of units routed there / capacity
  TimePs min_latency_ps = 0;      // of the transfers that cross the network; 0 when none does
  // The bound with `bytes_per_unit` bytes per unit (rounded down): 0 for a graph that moves nothing.
  TimePs time_ps(double bytes_per_unit) const;
};

// `comm_bandwidth_limit_bps`: the per-GPU cap on sends and on receives (network.hpp), 0 for none.
TransferGraphBound transfer_graph_bound(const topologies::Cluster& cluster, const collectives::TransferGraph& graph,
                                        double comm_bandwidth_limit_bps, RouteCache& routes);

// The routing of one EP group, as the step samples it for group 0 of a stage (build_layer_traffic over the group's
// ep GPUs, whose nodes are node_of_group), sampled once per distinct (pattern of node_of_group, options) and kept
// for the cache's lifetime, or the error it threw. Thread-safe: a routing asked for by several threads at once is
// sampled by one of them while the others wait. Options with replayed routing, replicas, expert biases or recorded
// picks are not kept; each call samples them into a routing of its own.
class GroupRoutingCache {
 public:
  struct GroupRouting {
    workloads::EpGroupTraffic traffic;            // ranks 0..ep-1; tokens_to_* only (copies_to_* cleared)
    std::vector<std::int64_t> tokens_per_expert;  // the copies each expert computes in this group
  };

  std::shared_ptr<const GroupRouting> group_routing(const std::vector<int>& node_of_group,
                                                    const workloads::TrafficOptions& options);
  std::size_t size() const;

 private:
  struct Slot {
    std::once_flag sampled;
    std::shared_ptr<const GroupRouting> routing;
    std::exception_ptr error;  // what sampling threw, thrown again to every caller
  };

  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Slot>> slots_;
};

}  // namespace moesim::sim::step
