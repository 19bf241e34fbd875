// Expert capacity, and what happens to the token copies that exceed it.
//
// Capacity is enforced per source rank, before the dispatch, as GShard (one capacity group per device) and
// Megatron-Core (token drop on the local tokens, before the All-to-All) do: each rank may send at most C copies of
// its tokens to each expert, C = max(min_capacity, ceil(T x k / E x F)) for its T tokens, top-k, E experts and
// capacity factor F. A copy that does not fit is handled by the policy:
//   dropless       nothing dropped (MegaBlocks); expert loads stay uneven and flow into compute
//   drop-position  the later tokens of the rank overflow first: an expert keeps its first C copies in token order
//   drop-score     an expert keeps its C copies with the highest router score (ties: earlier token first)
//   reroute        an overflowing choice moves to the token's next-best expert that still has room (the token's
//                  ranked list continues past its top-k); dropped only when no eligible expert has room
//   padded         fixed buffers of C slots per (rank, expert), as GShard and Switch: overflow is dropped (by
//                  position) and the empty slots are padding that travels in the All-to-All and is computed
// Dropped copies do not travel; padded slots do.
#pragma once

#include <cstdint>
#include <string>

namespace moesim::workloads {

enum class CapacityPolicy { kDropless, kDropPosition, kDropScore, kReroute, kPadded };

// "dropless", "drop-position", "drop-score", "reroute", "padded".
const char* capacity_policy_name(CapacityPolicy policy);
// The inverse; throws std::invalid_argument listing the names.
CapacityPolicy parse_capacity_policy(const std::string& name);

struct CapacitySpec {
  CapacityPolicy policy = CapacityPolicy::kDropless;
  double factor = 1.0;            // F > 0; ignored by dropless
  std::int64_t min_capacity = 0;  // C is never below this

  bool is_dropless() const { return policy == CapacityPolicy::kDropless; }
};

// max(min_capacity, ceil(tokens x num_topk / num_experts x factor)). The product is formed in exact integer
// arithmetic where the factor is a decimal with up to 9 digits after the point (1.25 is 125/100), so
// 4096 x 8 / 256 x 1.1 is 140.8 -> 141 and 4096 x 8 / 256 x 1.25 is exactly 160 (a factor with more digits is
// rounded to 9 decimals first; see capacity.cpp). Throws std::invalid_argument for tokens < 0, num_topk < 1,
// num_experts < 1, a factor that is not finite and > 0, min_capacity < 0, or a capacity that does not fit an int64.
std::int64_t expert_capacity(std::int64_t tokens, int num_topk, int num_experts, double factor,
                             std::int64_t min_capacity);

}  // namespace moesim::workloads
