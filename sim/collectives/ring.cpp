#include "sim/collectives/ring.hpp"

#include <set>
#include <stdexcept>
#include <string>

namespace moesim::sim::collectives {

TransferGraph::NodeIdx build_ring(TransferGraph& graph, RingCollective kind, const std::vector<int>& gpus,
                                  double units) {
  if (gpus.empty()) throw std::invalid_argument("ring collective: the group has no ranks");
  if (std::set<int>(gpus.begin(), gpus.end()).size() != gpus.size()) {
    throw std::invalid_argument("ring collective: a GPU appears twice in the group");
  }
  if (!(units >= 0.0)) throw std::invalid_argument("ring collective: units must be >= 0");
  const auto n = static_cast<int>(gpus.size());
  const int steps = kind == RingCollective::kAllReduce ? 2 * (n - 1) : n - 1;
  const double chunk = units / n;
  const TransferGraph::NodeIdx begin = graph.add_join();
  // previous[i]: rank i's send of the last step (its next send and the next rank's next send wait for it).
  std::vector<TransferGraph::NodeIdx> previous(static_cast<std::size_t>(n), begin);
  for (int step = 0; step < steps; ++step) {
    std::vector<TransferGraph::NodeIdx> current(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const auto from = static_cast<std::size_t>(i);
      const auto to = static_cast<std::size_t>((i + 1) % n);
      // Spread equal-cost routes by step and rank, as NCCL's channels would.
      const auto salt = static_cast<std::uint64_t>(step) * 1'000'003ULL + from;
      current[from] = graph.add_transfer(gpus[from], gpus[to], chunk, salt);
      graph.add_edge(previous[from], current[from]);  // one send at a time
      const auto before = static_cast<std::size_t>((i + n - 1) % n);
      if (step > 0) graph.add_edge(previous[before], current[from]);  // forwards what rank i - 1 sent it
    }
    previous = std::move(current);
  }
  const TransferGraph::NodeIdx end = graph.add_join();
  for (const TransferGraph::NodeIdx last : previous) graph.add_edge(last, end);
  return end;
}

TransferGraph::NodeIdx build_send(TransferGraph& graph, int src_gpu, int dst_gpu, double units) {
  if (src_gpu < 0 || dst_gpu < 0) throw std::invalid_argument("send: GPUs must be >= 0");
  if (!(units >= 0.0)) throw std::invalid_argument("send: units must be >= 0");
  return graph.add_transfer(src_gpu, dst_gpu, units);
}

}  // namespace moesim::sim::collectives
