// A DAG of transfers, and the runner that plays it on the network.
//
// Collective algorithms are written as transfer graphs: nodes are transfers (src GPU -> dst GPU, a size in
// units) or joins (zero-cost synchronisation points), and an edge a -> b means b may start only once a has
// finished. Sizes are in abstract units (token copies, or bytes) so that one graph serves both directions of an
// MoE layer: dispatch plays it with the dispatch bytes per unit, combine plays reversed() (every transfer turned
// around, every edge flipped) with the combine bytes per unit.
//
// The runner starts every node without predecessors, starts a node's successors when their last predecessor
// finishes, and records when the last node finished. A transfer to the same GPU, or of zero units, finishes
// immediately (local copies are not modelled).
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "common/units.hpp"
#include "sim/network/network.hpp"

namespace moesim::sim::collectives {

class TransferGraph {
 public:
  using NodeIdx = std::uint32_t;
  struct Node {
    int src_gpu = -1;  // -1: a join
    int dst_gpu = -1;
    double units = 0.0;
    std::uint64_t salt = 0;  // ECMP salt
  };

  NodeIdx add_transfer(int src_gpu, int dst_gpu, double units, std::uint64_t salt = 0);
  NodeIdx add_join();
  void add_edge(NodeIdx before, NodeIdx after);

  std::size_t size() const { return nodes_.size(); }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<std::pair<NodeIdx, NodeIdx>>& edges() const { return edges_; }
  bool is_transfer(NodeIdx i) const { return nodes_[i].src_gpu >= 0; }

  // Every transfer turned around and every edge flipped.
  TransferGraph reversed() const;

 private:
  std::vector<Node> nodes_;
  std::vector<std::pair<NodeIdx, NodeIdx>> edges_;
};

// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): final, and never deleted through FlowListener.
class TransferRunner final : public network::FlowListener {
 public:
  TransferRunner(network::Network& network, const TransferGraph& graph, double bytes_per_unit);

  // Runs once the last node has finished (also when that happens inside start(): a graph with no transfer on
  // the network finishes at once).
  void set_on_finished(std::function<void()> on_finished) { on_finished_ = std::move(on_finished); }

  // Starts the graph at the simulator's current time.
  void start();
  bool finished() const { return num_done_ == graph_.size(); }
  TimePs start_time() const { return start_time_; }
  TimePs end_time() const { return end_time_; }
  double bytes_delivered() const { return bytes_delivered_; }

  void on_flow_done(std::uint64_t tag) override;

 private:
  void complete(TransferGraph::NodeIdx node);
  void launch(TransferGraph::NodeIdx node);

  network::Network& network_;
  const TransferGraph& graph_;
  double bytes_per_unit_;
  std::vector<std::uint32_t> succ_begin_;  // CSR of successors
  std::vector<TransferGraph::NodeIdx> succ_;
  std::vector<std::uint32_t> pending_;  // unfinished predecessors
  std::vector<TransferGraph::NodeIdx> ready_;
  std::size_t num_done_ = 0;
  TimePs start_time_ = 0;
  TimePs end_time_ = 0;
  double bytes_delivered_ = 0.0;
  std::function<void()> on_finished_;
};

}  // namespace moesim::sim::collectives
