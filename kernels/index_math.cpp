#include "kernels/index_math.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace moesim::kernels {

std::int64_t expert_capacity(std::int64_t tokens, int topk, int experts, double capacity_factor) {
  if (capacity_factor <= 0 || experts <= 0) return 0;
  const double per_expert = static_cast<double>(tokens) * topk / experts;
  return static_cast<std::int64_t>(std::ceil(per_expert * capacity_factor));
}

std::vector<std::int32_t> count_per_expert(const std::int32_t* expert, std::int64_t copies, int experts) {
  std::vector<std::int32_t> routed(static_cast<std::size_t>(experts), 0);
  for (std::int64_t c = 0; c < copies; ++c) {
    const std::int32_t e = expert[c];
    if (e < 0 || e >= experts)
      throw std::invalid_argument("permute: expert[" + std::to_string(c) + "]: must be in [0, experts = " +
                                  std::to_string(experts) + "), got " + std::to_string(e));
    ++routed[static_cast<std::size_t>(e)];
  }
  return routed;
}

std::vector<std::int32_t> kept_per_expert(const std::vector<std::int32_t>& routed, std::int64_t capacity) {
  std::vector<std::int32_t> kept = routed;
  if (capacity > 0)
    for (auto& k : kept) k = static_cast<std::int32_t>(std::min<std::int64_t>(k, capacity));
  return kept;
}

std::vector<std::int32_t> exclusive_scan(const std::vector<std::int32_t>& counts) {
  std::vector<std::int32_t> offsets(counts.size() + 1, 0);
  for (std::size_t e = 0; e < counts.size(); ++e) offsets[e + 1] = offsets[e] + counts[e];
  return offsets;
}

void permutation_maps(const PermuteArgs& args) {
  check_args(args);
  const std::int64_t copies = args.tokens * args.topk;
  const auto experts = static_cast<std::size_t>(args.experts);
  const std::vector<std::int32_t> routed = count_per_expert(args.expert, copies, args.experts);
  const std::vector<std::int32_t> kept = kept_per_expert(routed, args.capacity);
  const std::vector<std::int32_t> offsets = exclusive_scan(kept);
  std::copy(routed.begin(), routed.end(), args.routed);
  std::copy(offsets.begin(), offsets.end(), args.offsets);

  // Each expert's copies in copy order (a stable counting sort), so that both policies see them in that order.
  const std::vector<std::int32_t> routed_offsets = exclusive_scan(routed);
  std::vector<std::int32_t> cursor(routed_offsets.begin(), routed_offsets.end() - 1);
  std::vector<std::int32_t> by_expert(static_cast<std::size_t>(copies));
  for (std::int64_t c = 0; c < copies; ++c)
    by_expert[static_cast<std::size_t>(cursor[static_cast<std::size_t>(args.expert[c])]++)] =
        static_cast<std::int32_t>(c);

  std::fill(args.row_of_copy, args.row_of_copy + copies, -1);
  // NaN weights rank below every number, so that the order stays strict and weak.
  const auto rank_weight = [&](std::int32_t c) {
    const float w = args.weight[c];
    return std::isnan(w) ? -std::numeric_limits<float>::infinity() : w;
  };
  std::vector<std::int32_t> order;
  std::vector<char> is_kept;
  for (std::size_t e = 0; e < experts; ++e) {
    const auto first = by_expert.begin() + routed_offsets[e];
    const auto last = first + routed[e];
    is_kept.assign(static_cast<std::size_t>(routed[e]), 0);
    if (args.policy == DropPolicy::kDropScore && kept[e] < routed[e]) {
      // Positions within the expert's list, best weight first, ties to the lower copy (= lower position).
      order.resize(static_cast<std::size_t>(routed[e]));
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int32_t>(i);
      std::stable_sort(order.begin(), order.end(),
                       [&](std::int32_t a, std::int32_t b) { return rank_weight(first[a]) > rank_weight(first[b]); });
      for (std::int32_t i = 0; i < kept[e]; ++i)
        is_kept[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 1;
    } else {
      std::fill(is_kept.begin(), is_kept.begin() + kept[e], 1);
    }
    std::int32_t row = offsets[e];
    for (auto it = first; it != last; ++it) {
      if (!is_kept[static_cast<std::size_t>(it - first)]) continue;
      args.row_of_copy[*it] = row;
      args.token_of_row[row] = static_cast<std::int32_t>(*it / args.topk);
      ++row;
    }
  }
  std::fill(args.token_of_row + offsets[experts], args.token_of_row + copies, -1);
}

}  // namespace moesim::kernels
