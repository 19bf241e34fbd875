// Ring collectives and point-to-point transfers as transfer graphs: what tensor, data and pipeline parallelism
// send. All sizes are in units (bytes, usually): `units` is the whole buffer each rank holds (all-reduce), or the
// full output (all-gather) / full input (reduce-scatter) of each rank, as NCCL counts them.
//
//   ring all-gather      n - 1 steps; in step s rank i sends one chunk of units / n to rank i + 1 (the chunk it
//                        received in step s - 1, its own in step 0), so step s of rank i waits for step s - 1 of
//                        rank i - 1 (the chunk it forwards) and its own step s - 1 (one send at a time).
//   ring reduce-scatter  the same pattern (each step adds the received chunk to the local one and forwards it).
//   ring all-reduce      a reduce-scatter, then an all-gather: 2 (n - 1) steps of units / n.
// On n ranks with per-hop bandwidth B and per-transfer start-up latency L, each costs its step count x
// (L + units / (n B)) when every ring hop is its own link: the closed forms the tests check. Reductions are not
// charged compute time here (the step's compute model may add it). The ring visits the ranks in the order given,
// so callers order them to enter and leave each node once (Megatron's rank order does).
#pragma once

#include <vector>

#include "sim/collectives/transfer_graph.hpp"

namespace moesim::sim::collectives {

enum class RingCollective { kAllGather, kReduceScatter, kAllReduce };

// Appends the collective over `gpus` (at least one; a single rank sends nothing) to `graph`, with one join at the
// start and one at the end (the collective starts when its first join may, and has finished when its last join
// has); returns the final join. Throws std::invalid_argument for an empty group, a repeated GPU or units < 0.
TransferGraph::NodeIdx build_ring(TransferGraph& graph, RingCollective kind, const std::vector<int>& gpus,
                                  double units);

// One transfer, as a pipeline stage's send to the next.
TransferGraph::NodeIdx build_send(TransferGraph& graph, int src_gpu, int dst_gpu, double units);

}  // namespace moesim::sim::collectives
