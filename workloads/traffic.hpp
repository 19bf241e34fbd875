// The traffic of one MoE layer, built from per-token routing (sampled, or replayed from a file; never averages).
//
// The GPUs are split into EP groups of `ep` consecutive GPUs, all running the layer at once. Each group holds
// every routed expert once (placement below), or several times with replication (replication.hpp). Each rank owns
// tokens_per_rank tokens; every token picks its experts (routing.hpp), the rank's capacity policy keeps, drops,
// reroutes or pads the copies (capacity.hpp), and the counts below record, per source rank, how many tokens (or
// token copies) must reach each destination rank and node. Matrices are dense, row-major, ep x ep (or ep x group
// nodes). A "node" here is the cluster's scale-up unit (Cluster::scale_up_unit_of): the server, or the whole NVLink
// domain where one spans several servers (an NVL72 rack), since that is what the network fabric sees.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "workloads/capacity.hpp"
#include "workloads/replication.hpp"
#include "workloads/routing.hpp"
#include "workloads/routing_file.hpp"

namespace moesim::topologies {
class Cluster;
}

namespace moesim::workloads {

// Where the experts live inside an EP group of `ep` ranks holding E / ep experts each:
//   contiguous   rank r holds experts [r E / ep, (r + 1) E / ep) (Megatron, DeepSpeed; DeepSeek-V3's groups of
//                experts then coincide with nodes)
//   round-robin  expert e lives on rank e % ep
enum class Placement { kContiguous, kRoundRobin };
const char* placement_name(Placement placement);
// "contiguous" or "round-robin"; throws std::invalid_argument otherwise.
Placement parse_placement(const std::string& name);
// The rank of each expert within its EP group.
std::vector<int> place_experts(Placement placement, int num_experts, int ep);

struct TrafficOptions {
  int ep = 0;  // EP group size; must divide the GPU count and the expert count
  std::int64_t tokens_per_rank = 0;
  int num_experts = 0;
  int num_topk = 0;
  RoutingSpec routing;
  std::uint64_t seed = 0;
  Placement placement = Placement::kContiguous;
  int layer = 0;  // which layer: its own popularity, and its own rows of a replayed file
  int step = 0;   // training step, for drift
  // Which batch of tokens within the step (e.g. a micro-batch): the same popularity and drift, tokens of their own.
  int batch = 0;
  CapacitySpec capacity{};
  // Added to each expert's log weight for selection only (auxiliary-loss-free balancing); empty: none.
  std::vector<double> expert_bias{};
  // Replayed routing instead of sampling (not owned; must outlive the call). Its top-k must equal num_topk.
  const RecordedRouting* replay = nullptr;
  // Replicas instead of one expert per placement slot (not owned). The routing and its limits still see the
  // placement; replication only decides where each kept copy is computed.
  const ExpertReplicas* replicas = nullptr;
  // Keep every token's top-k picks in LayerTraffic::picks, e.g. to write them as a routing file; with scores when
  // record_scores is set or the run draws them anyway (drop-score, group limits, a replay with scores).
  bool record_picks = false;
  bool record_scores = false;
};

struct EpGroupTraffic {
  std::vector<int> gpus;          // global GPU index of each EP rank
  std::vector<int> node_of_rank;  // group-local node index of each rank (nodes in order of first appearance)
  int num_nodes = 0;              // distinct nodes in the group
  // [src * ep + dst]: tokens of src with at least one expert on dst (one copy per rank)
  std::vector<std::int64_t> tokens_to_rank;
  // [src * ep + dst]: (token, expert) pairs of src with the expert on dst (one copy per expert)
  std::vector<std::int64_t> copies_to_rank;
  // [src * num_nodes + node]: tokens of src with at least one expert on a GPU of that node (one copy per node)
  std::vector<std::int64_t> tokens_to_node;
  // [src * num_nodes + node]: (token, expert) pairs of src with the expert on that node
  std::vector<std::int64_t> copies_to_node;
};

// Per-expert counts are summed over the EP groups. Conservation: sum(kept) = sum(routed) - sum(dropped) (a rerouted
// copy leaves its first choice's count and is kept at another expert).
struct LayerTraffic {
  TrafficOptions options;
  std::vector<EpGroupTraffic> groups;
  std::vector<std::int64_t> tokens_per_expert;        // copies kept and computed per expert (padding not included)
  std::vector<std::int64_t> tokens_per_group_expert;  // the same per EP group: [group * E + expert]
  std::vector<std::int64_t> routed_per_expert;        // the tokens' top-k choices per expert, before capacity
  std::vector<std::int64_t> dropped_per_expert;   // choices of the expert that overflowed and were not kept anywhere
  std::vector<std::int64_t> rerouted_per_expert;  // copies the expert received as a token's next-best choice
  std::int64_t capacity = 0;                      // C per (source rank, expert); 0 for dropless
  std::int64_t padded_slots = 0;                  // padded policy: empty buffer slots, which travel and are computed
  std::int64_t tokens_all_dropped = 0;            // tokens none of whose copies were kept
  RecordedLayer picks;  // with record_picks: the top-k of every token, global order (group, rank)
};

// Validates the options against the cluster (EP divides the GPUs and the experts, top-k <= experts, node and device
// limits that every token can meet, a hot share that top-k picks without replacement can realise; for hot routing
// under a limit, the seeded hot set must let every token finish its hot and then its cold picks within the limit;
// group limits that hold top-k experts; a replay file that matches; policies the routing can serve) and samples
// (or replays) the routing. Throws std::invalid_argument with what was expected.
LayerTraffic build_layer_traffic(const topologies::Cluster& cluster, const TrafficOptions& options);

// The same from the cluster's shape alone: node_of_gpu[g] is the node of GPU g (any non-negative labels). The
// ranks are spread over `num_threads` threads (0: std::thread::hardware_concurrency()); the result is identical,
// byte for byte, for every thread count.
LayerTraffic build_layer_traffic(const std::vector<int>& node_of_gpu, const TrafficOptions& options,
                                 int num_threads = 0);

}  // namespace moesim::workloads
