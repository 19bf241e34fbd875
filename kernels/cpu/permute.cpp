// Permute: the index math on one thread (kernels/index_math.hpp, O(tokens x topk)), then the row scatter, which
// moves the bytes, in parallel over rows.
#include <algorithm>

#include "kernels/cpu/ops.hpp"
#include "kernels/index_math.hpp"

namespace moesim::kernels::cpu {

void permute(const PermuteArgs& a, ThreadPool& pool) {
  permutation_maps(a);  // checks the arguments
  const std::int64_t rows = a.offsets[a.experts];
  pool.parallel_for(rows, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r)
      std::copy_n(a.x + static_cast<std::int64_t>(a.token_of_row[r]) * a.hidden, a.hidden, a.permuted + r * a.hidden);
  });
}

}  // namespace moesim::kernels::cpu
