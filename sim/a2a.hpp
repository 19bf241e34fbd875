// The All-to-All cost of one MoE layer (dispatch and combine), or of a plain all-to-all as nccl-tests runs it.
//
// run_a2a samples the layer's routing token by token (workloads/traffic.hpp), turns each EP group's demand into
// a transfer graph with the chosen algorithm (collectives/all_to_all.hpp), and plays the dispatch and then,
// separately, the combine (the same graph reversed, with the combine element size) on the flow-level network.
// All EP groups run at once and contend for shared links. For each collective it reports the simulated time,
// per-rank bytes, nccl-tests' algbw and busbw, the per-link lower bound and the busiest links.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "reports/results.pb.h"
#include "sim/collectives/all_to_all.hpp"
#include "sim/network/network.hpp"
#include "workloads/model.hpp"
#include "workloads/routing.hpp"
#include "workloads/traffic.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::sim {

struct A2aConfig {
  std::string cluster_name;                  // for the report
  std::optional<workloads::MoeModel> model;  // absent: a plain all-to-all of bytes_per_rank
  double bytes_per_rank = 0.0;               // plain all-to-all: each rank's send buffer, split evenly over the group
  std::int64_t tokens_per_rank = 4096;
  int ep = 0;  // 0: gcd(GPUs, experts) for a layer, all GPUs for a plain all-to-all
  workloads::Placement placement = workloads::Placement::kContiguous;  // experts over the ranks of a group
  workloads::RoutingSpec routing;
  collectives::A2aAlgorithm algorithm = collectives::A2aAlgorithm::kDirect;
  int layer = 0;  // which MoE layer: its popularity, or its rows of the replayed file
  int step = 0;   // training step (drift)
  workloads::CapacitySpec capacity;
  std::shared_ptr<const workloads::RecordedRouting> replay;  // replayed routing instead of sampling
  // EPLB what-if: with extra slots per rank, the layer runs again with hot experts replicated (planned from the
  // expert loads of another batch of the same routing) and both runs are reported.
  int replica_slots = 0;
  bool token_dedup = true;  // a token bound for several experts on one rank (node) travels once
  std::uint64_t seed = 1;
  double epsilon = network::kDefaultEpsilon;  // the network's completion window (network.hpp)
};

// Throws std::invalid_argument for inputs that do not fit the cluster (EP, top-k, node limit, algorithm).
reports::A2aResult run_a2a(const topologies::Cluster& cluster, const A2aConfig& config);

// One EP group's demand in units of token copies (tokens with token_dedup, one per rank or node), for the
// All-to-All builders. `gpu_of`, when given, maps the group's GPU indices (traffic built over a subset of the
// cluster's GPUs) to the cluster's.
collectives::A2aDemand layer_demand(const workloads::EpGroupTraffic& group, bool token_dedup,
                                    const std::vector<int>* gpu_of = nullptr);

// Plays `graph` on a fresh network and measures it; exposed for tests.
reports::CollectiveResult run_collective(const topologies::Cluster& cluster, const collectives::TransferGraph& graph,
                                         double bytes_per_unit, double epsilon, const std::string& name,
                                         double send_buffer_bytes_mean, int group_size);

}  // namespace moesim::sim
