#include "sim/collectives/transfer_graph.hpp"

#include <stdexcept>

namespace moesim::sim::collectives {

TransferGraph::NodeIdx TransferGraph::add_transfer(int src_gpu, int dst_gpu, double units, std::uint64_t salt) {
  if (src_gpu < 0 || dst_gpu < 0 || !(units >= 0.0)) throw std::logic_error("invalid transfer");
  nodes_.push_back(Node{src_gpu, dst_gpu, units, salt});
  return static_cast<NodeIdx>(nodes_.size() - 1);
}

TransferGraph::NodeIdx TransferGraph::add_join() {
  nodes_.push_back(Node{});
  return static_cast<NodeIdx>(nodes_.size() - 1);
}

void TransferGraph::add_edge(NodeIdx before, NodeIdx after) {
  if (before >= nodes_.size() || after >= nodes_.size() || before == after) throw std::logic_error("invalid edge");
  edges_.emplace_back(before, after);
}

TransferGraph TransferGraph::reversed() const {
  TransferGraph out;
  out.nodes_ = nodes_;
  for (Node& node : out.nodes_) std::swap(node.src_gpu, node.dst_gpu);
  out.edges_.reserve(edges_.size());
  for (const auto& [a, b] : edges_) out.edges_.emplace_back(b, a);
  return out;
}

TransferRunner::TransferRunner(network::Network& network, const TransferGraph& graph, double bytes_per_unit)
    : network_(network), graph_(graph), bytes_per_unit_(bytes_per_unit) {
  const std::size_t n = graph.size();
  succ_begin_.assign(n + 1, 0);
  pending_.assign(n, 0);
  for (const auto& [a, b] : graph.edges()) {
    ++succ_begin_[a + 1];
    ++pending_[b];
  }
  for (std::size_t i = 0; i < n; ++i) succ_begin_[i + 1] += succ_begin_[i];
  succ_.resize(graph.edges().size());
  std::vector<std::uint32_t> fill(succ_begin_.begin(), succ_begin_.end() - 1);
  for (const auto& [a, b] : graph.edges()) succ_[fill[a]++] = b;
}

void TransferRunner::start() {
  start_time_ = end_time_ = network_.sim_now();
  if (graph_.size() == 0) {
    if (on_finished_) on_finished_();
    return;
  }
  for (TransferGraph::NodeIdx i = 0; i < graph_.size(); ++i) {
    if (pending_[i] == 0) launch(i);
  }
  while (!ready_.empty()) {
    const TransferGraph::NodeIdx node = ready_.back();
    ready_.pop_back();
    complete(node);
  }
}

void TransferRunner::launch(TransferGraph::NodeIdx i) {
  const TransferGraph::Node& node = graph_.nodes()[i];
  if (node.src_gpu < 0 || node.units <= 0.0 || node.src_gpu == node.dst_gpu) {
    ready_.push_back(i);  // finishes at once; completed by the caller's loop, not recursively
    return;
  }
  network_.start_flow(node.src_gpu, node.dst_gpu, node.units * bytes_per_unit_, node.salt, this, i);
}

void TransferRunner::on_flow_done(std::uint64_t tag) {
  const auto i = static_cast<TransferGraph::NodeIdx>(tag);
  bytes_delivered_ += graph_.nodes()[i].units * bytes_per_unit_;
  complete(i);
  while (!ready_.empty()) {
    const TransferGraph::NodeIdx node = ready_.back();
    ready_.pop_back();
    complete(node);
  }
}

void TransferRunner::complete(TransferGraph::NodeIdx i) {
  ++num_done_;
  end_time_ = network_.sim_now();
  for (std::uint32_t k = succ_begin_[i]; k < succ_begin_[i + 1]; ++k) {
    if (--pending_[succ_[k]] == 0) launch(succ_[k]);
  }
  if (finished() && on_finished_) on_finished_();
}

}  // namespace moesim::sim::collectives
