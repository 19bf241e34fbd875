#include "sim/collectives/all_to_all.hpp"

#include <stdexcept>

namespace moesim::sim::collectives {
namespace {

using NodeIdx = TransferGraph::NodeIdx;

// Salts keep the ECMP choice of different phases between the same two GPUs independent.
constexpr std::uint64_t kSaltPhase1 = 1;
constexpr std::uint64_t kSaltPhase2 = 2;

void build_direct(TransferGraph& graph, const A2aDemand& d) {
  const std::size_t n = d.gpus.size();
  for (std::size_t s = 0; s < n; ++s) {
    for (std::size_t t = 0; t < n; ++t) {
      if (s != t && d.rank_units[s * n + t] > 0.0) graph.add_transfer(d.gpus[s], d.gpus[t], d.rank_units[s * n + t]);
    }
  }
}

void build_pairwise(TransferGraph& graph, const A2aDemand& d) {
  const std::size_t n = d.gpus.size();
  if (n < 2) return;
  // ready[r]: rank r has finished its previous round (both its send and its receive).
  std::vector<NodeIdx> ready(n), next(n);
  std::vector<NodeIdx> sends(n);
  for (std::size_t r = 0; r < n; ++r) ready[r] = graph.add_join();
  for (std::size_t k = 1; k < n; ++k) {
    for (std::size_t s = 0; s < n; ++s) {
      const std::size_t t = (s + k) % n;
      sends[s] = graph.add_transfer(d.gpus[s], d.gpus[t], d.rank_units[s * n + t]);
      graph.add_edge(ready[s], sends[s]);
      graph.add_edge(ready[t], sends[s]);
    }
    for (std::size_t r = 0; r < n; ++r) {
      next[r] = graph.add_join();
      graph.add_edge(sends[r], next[r]);                // r's send of round k
      graph.add_edge(sends[(r + n - k) % n], next[r]);  // r's receive of round k
    }
    ready.swap(next);
  }
}

// Ranks of each node in rank order; every node must hold the same number of ranks.
std::vector<std::vector<std::size_t>> nodes_of(const A2aDemand& d, A2aAlgorithm algorithm) {
  std::vector<std::vector<std::size_t>> members(static_cast<std::size_t>(d.num_nodes));
  for (std::size_t r = 0; r < d.gpus.size(); ++r) members[static_cast<std::size_t>(d.node_of_rank[r])].push_back(r);
  for (const auto& m : members) {
    if (m.size() != members.front().size()) {
      throw std::invalid_argument(std::string("algorithm ") + algorithm_name(algorithm) +
                                  ": needs EP groups made of whole nodes of equal size (got nodes with " +
                                  std::to_string(members.front().size()) + " and " + std::to_string(m.size()) +
                                  " ranks)");
    }
  }
  return members;
}

void build_hierarchical(TransferGraph& graph, const A2aDemand& d) {
  const std::size_t n = d.gpus.size();
  const auto members = nodes_of(d, A2aAlgorithm::kHierarchical);
  const std::size_t num_nodes = members.size();
  const std::size_t g = members.front().size();
  std::vector<NodeIdx> ready(n);
  for (std::size_t r = 0; r < n; ++r) ready[r] = graph.add_join();
  // Phase 1: (u,i) -> (u,j) carries everything bound for position j of any node.
  for (std::size_t u = 0; u < num_nodes; ++u) {
    for (std::size_t i = 0; i < g; ++i) {
      const std::size_t s = members[u][i];
      for (std::size_t j = 0; j < g; ++j) {
        if (j == i) continue;
        double units = 0.0;
        for (std::size_t v = 0; v < num_nodes; ++v) units += d.rank_units[s * n + members[v][j]];
        const std::size_t t = members[u][j];
        const NodeIdx x = graph.add_transfer(d.gpus[s], d.gpus[t], units, kSaltPhase1);
        graph.add_edge(x, ready[s]);
        graph.add_edge(x, ready[t]);
      }
    }
  }
  // Phase 2: (u,j) -> (v,j) carries what every rank of node u has for (v,j).
  for (std::size_t u = 0; u < num_nodes; ++u) {
    for (std::size_t j = 0; j < g; ++j) {
      const std::size_t s = members[u][j];
      for (std::size_t v = 0; v < num_nodes; ++v) {
        if (v == u) continue;
        const std::size_t t = members[v][j];
        double units = 0.0;
        for (std::size_t i = 0; i < g; ++i) units += d.rank_units[members[u][i] * n + t];
        const NodeIdx x = graph.add_transfer(d.gpus[s], d.gpus[t], units, kSaltPhase2);
        graph.add_edge(ready[s], x);
        graph.add_edge(ready[t], x);
      }
    }
  }
}

void build_rail(TransferGraph& graph, const A2aDemand& d) {
  const std::size_t n = d.gpus.size();
  const auto members = nodes_of(d, A2aAlgorithm::kRail);
  const std::size_t num_nodes = members.size();
  const std::size_t g = members.front().size();
  for (std::size_t u = 0; u < num_nodes; ++u) {
    for (std::size_t i = 0; i < g; ++i) {
      const std::size_t s = members[u][i];
      for (std::size_t j = 0; j < g; ++j) {  // own node: straight over NVLink
        if (j != i) graph.add_transfer(d.gpus[s], d.gpus[members[u][j]], d.rank_units[s * n + members[u][j]]);
      }
      for (std::size_t v = 0; v < num_nodes; ++v) {
        if (v == u) continue;
        const std::size_t forwarder = members[v][i];
        const double node_units = d.node_units[s * num_nodes + v];
        if (node_units <= 0.0) continue;
        const NodeIdx rdma = graph.add_transfer(d.gpus[s], d.gpus[forwarder], node_units, kSaltPhase1);
        for (std::size_t j = 0; j < g; ++j) {
          const std::size_t t = members[v][j];
          if (j == i || d.rank_units[s * n + t] <= 0.0) continue;
          const NodeIdx fan_out =
              graph.add_transfer(d.gpus[forwarder], d.gpus[t], d.rank_units[s * n + t], kSaltPhase2);
          graph.add_edge(rdma, fan_out);
        }
      }
    }
  }
}

}  // namespace

const char* algorithm_name(A2aAlgorithm algorithm) {
  switch (algorithm) {
    case A2aAlgorithm::kDirect:
      return "direct";
    case A2aAlgorithm::kPairwise:
      return "pairwise";
    case A2aAlgorithm::kHierarchical:
      return "hierarchical";
    case A2aAlgorithm::kRail:
      return "rail";
  }
  return "?";
}

std::vector<std::string> algorithm_names() {
  return {"direct", "pairwise", "hierarchical", "rail"};
}

A2aAlgorithm parse_algorithm(const std::string& name) {
  for (A2aAlgorithm a :
       {A2aAlgorithm::kDirect, A2aAlgorithm::kPairwise, A2aAlgorithm::kHierarchical, A2aAlgorithm::kRail}) {
    if (name == algorithm_name(a)) return a;
  }
  throw std::invalid_argument("algorithm: expected one of direct, pairwise, hierarchical, rail, got '" + name + "'");
}

void build_all_to_all(TransferGraph& graph, const A2aDemand& demand, A2aAlgorithm algorithm) {
  const std::size_t n = demand.gpus.size();
  if (demand.rank_units.size() != n * n || demand.node_of_rank.size() != n) {
    throw std::logic_error("A2aDemand: inconsistent sizes");
  }
  switch (algorithm) {
    case A2aAlgorithm::kDirect:
      build_direct(graph, demand);
      return;
    case A2aAlgorithm::kPairwise:
      build_pairwise(graph, demand);
      return;
    case A2aAlgorithm::kHierarchical:
      build_hierarchical(graph, demand);
      return;
    case A2aAlgorithm::kRail:
      if (demand.node_units.size() != n * static_cast<std::size_t>(demand.num_nodes)) {
        throw std::logic_error("A2aDemand: rail needs node_units");
      }
      build_rail(graph, demand);
      return;
  }
}

}  // namespace moesim::sim::collectives
