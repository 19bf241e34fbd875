// Expert replication: hot experts get extra copies (replicas) on other ranks, and the token copies bound for an
// expert are split among its replicas, in the manner of DeepSeek's expert-parallel load balancer (EPLB).
#pragma once

#include <cstdint>
#include <vector>

namespace moesim::workloads {

// Where the replicas of each expert live within an EP group: expert e has replicas on the ranks
// rank[begin[e]], ..., rank[begin[e + 1] - 1] (begin has E + 1 entries, begin[0] = 0). Each source sends its copies
// for e to the replicas in turn (the j-th copy to replica j mod num_replicas(e)), which splits them evenly.
struct ExpertReplicas {
  std::vector<int> begin;
  std::vector<int> rank;

  int num_experts() const { return static_cast<int>(begin.size()) - 1; }
  int num_replicas(int expert) const { return begin[expert + 1] - begin[expert]; }
  // The rank that receives a source's `copy_idx`-th copy (0, 1, 2, ...) for `expert`.
  int rank_for(int expert, std::int64_t copy_idx) const {
    const int n = num_replicas(expert);
    return rank[begin[expert] + (n == 1 ? 0 : static_cast<int>(copy_idx % n))];
  }
};

// One replica per expert, on rank_of_expert[e]. Throws std::invalid_argument for a negative rank.
ExpertReplicas single_replicas(const std::vector<int>& rank_of_expert);

// EPLB-style placement of E experts on `ep` ranks with E / ep + extra_slots_per_rank slots each, from the expected
// load of each expert (any non-negative unit, e.g. tokens per step):
//   1. replicate: the ep x extra_slots_per_rank extra slots go, one at a time, to the expert with the highest load
//      per replica among those with fewer than ep replicas (ties: lower expert id);
//   2. pack: replicas, heaviest first (load / replicas; ties: lower expert id), each to the rank with the least
//      load so far among those with a free slot and no replica of the same expert yet (ties: lower rank).
//      Rarely (after near-ties broken by rounding), every rank with a free slot already holds the expert; then
//      the replica goes to the least-loaded full rank B without it (ties: lower rank), after B hands its lightest
//      replica that A lacks (ties: lower expert id) to A, the least-loaded rank with a free slot.
// Every rank ends with exactly E / ep + extra_slots_per_rank replicas, every expert with at least one and at most
// ep, no rank holds two replicas of one expert; each expert's ranks are listed in ascending order. Deterministic.
// Throws std::invalid_argument if there are no experts, ep < 1 or does not divide E, a load is negative or not
// finite, or extra_slots_per_rank < 0 or more than E - E / ep (a rank cannot hold two replicas of one expert).
ExpertReplicas plan_replication(const std::vector<double>& expert_load, int ep, int extra_slots_per_rank);

// The load each rank receives when every expert's load is split evenly among its replicas. Throws
// std::invalid_argument if ep < 1, `replicas` is malformed (begin not from 0 to rank.size(), an expert without a
// replica, a rank outside [0, ep)) or expert_load does not have one entry per expert.
std::vector<double> rank_loads(const ExpertReplicas& replicas, const std::vector<double>& expert_load, int ep);

}  // namespace moesim::workloads
