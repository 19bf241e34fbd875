// The index math of the permute (dispatch) step, on the host: capacity, per-expert counts, offsets and the two
// permutation maps. The CPU backend runs it as is (then scatters the rows in parallel); the CUDA backend computes
// the same maps on the device with a histogram, a scan and a stable partition, and must agree exactly.
//
// Copies. Token t's j-th choice is copy c = t x topk + j. Expert e receives routed[e] copies; it keeps
// kept[e] = min(routed[e], capacity) of them (all of them when capacity <= 0: dropless), chosen by the drop policy
// (the first in copy order, or the highest router weight with ties to the lower copy). Kept copies become rows:
// expert e owns rows [offsets[e], offsets[e + 1]) with offsets the exclusive scan of kept, and within an expert the
// rows follow copy order. row_of_copy[c] is that row or -1; token_of_row[r] = c / topk for the row's copy and -1
// for r >= offsets[experts]. The maps are inverse to each other on the kept copies.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"

namespace moesim::kernels {

// ceil(tokens x topk / experts x capacity_factor), the per-expert capacity; capacity_factor <= 0: 0 (dropless).
std::int64_t expert_capacity(std::int64_t tokens, int topk, int experts, double capacity_factor);

// routed[e]: copies whose expert is e. Throws std::invalid_argument naming the first expert index out of range.
std::vector<std::int32_t> count_per_expert(const std::int32_t* expert, std::int64_t copies, int experts);

// min(routed[e], capacity) per expert, or routed itself when capacity <= 0.
std::vector<std::int32_t> kept_per_expert(const std::vector<std::int32_t>& routed, std::int64_t capacity);

// offsets[0] = 0, offsets[e + 1] = offsets[e] + counts[e]: counts.size() + 1 entries.
std::vector<std::int32_t> exclusive_scan(const std::vector<std::int32_t>& counts);

// Writes args.routed, args.offsets, args.row_of_copy and args.token_of_row (host memory) from args.expert (and
// args.weight for DropPolicy::kDropScore); leaves args.permuted alone. Checks args first.
void permutation_maps(const PermuteArgs& args);

}  // namespace moesim::kernels
