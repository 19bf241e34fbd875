// All-to-All algorithms: how one EP group's exchange becomes a transfer graph.
//
// The demand is given per pair of ranks in units (token copies, or bytes for a plain collective), in the
// dispatch direction; the combine of an MoE layer is the same graph reversed (see transfer_graph.hpp).
// Ranks are grouped by scale-up unit (the GPUs that share an NVLink domain within the group, "nodes" below);
// position i inside a node is that GPU's rail.
//
//   direct        every rank sends to every peer at once (NCCL-style point-to-point).
//   pairwise      N-1 staggered rounds: in round k rank r sends to r+k and receives from r-k; a rank enters
//                 round k once its round k-1 send and receive are done and its round-k peer is ready.
//   hierarchical  Tutel's 2DH: (1) intra-node aggregate: rank (u,i) sends rank (u,j) everything bound for
//                 position j of any node (its own node's included); (2) once both ends hold their aggregates,
//                 inter-node exchange between same-rail ranks (u,j) -> (v,j). Reversed (combine): exchange on
//                 the rails, then intra-node scatter back to the source.
//   rail          node-deduplicated rail forwarding, as DeepEP's normal kernels: (1) rank (u,i) sends one copy
//                 per token and destination node v over RDMA to its same-rail peer (v,i), and its own node's
//                 tokens directly over NVLink; (2) as each source's copy lands, (v,i) fans it out over NVLink to
//                 the ranks of node v that host the token's experts. Reversed (combine): NVLink gather to the
//                 rail peer (reduced per token), then one RDMA copy per token back to the source.
#pragma once

#include <string>
#include <vector>

#include "sim/collectives/transfer_graph.hpp"

namespace moesim::sim::collectives {

enum class A2aAlgorithm { kDirect, kPairwise, kHierarchical, kRail };

const char* algorithm_name(A2aAlgorithm algorithm);
// "direct", "pairwise", "hierarchical", "rail"; throws std::invalid_argument otherwise.
A2aAlgorithm parse_algorithm(const std::string& name);
std::vector<std::string> algorithm_names();

struct A2aDemand {
  std::vector<int> gpus;          // rank -> global GPU index
  std::vector<int> node_of_rank;  // rank -> group-local node (scale-up unit) index
  int num_nodes = 1;
  std::vector<double> rank_units;  // [src * n + dst]
  std::vector<double> node_units;  // [src * num_nodes + node]: what rail sends over RDMA (node-deduplicated)
};

// Appends one All-to-All of `demand`, in the dispatch direction, to `graph`. Throws std::invalid_argument if the
// algorithm needs whole nodes of equal size and the group does not have them.
void build_all_to_all(TransferGraph& graph, const A2aDemand& demand, A2aAlgorithm algorithm);

}  // namespace moesim::sim::collectives
