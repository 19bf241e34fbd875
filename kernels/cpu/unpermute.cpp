// Unpermute (combine): each token's kept copies, weighted, summed in FP32 in choice order, rounded to BF16 once.
#include <algorithm>
#include <vector>

#include "kernels/cpu/ops.hpp"

namespace moesim::kernels::cpu {

void unpermute(const UnpermuteArgs& a, ThreadPool& pool) {
  check_args(a);
  pool.parallel_for(a.tokens, 16, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> acc(static_cast<std::size_t>(a.hidden));
    for (std::int64_t t = begin; t < end; ++t) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int j = 0; j < a.topk; ++j) {
        const std::int32_t row = a.row_of_copy[t * a.topk + j];
        if (row < 0) continue;
        const float w = a.weight[t * a.topk + j];
        const Bf16* y = a.y + static_cast<std::int64_t>(row) * a.hidden;
        for (std::int64_t h = 0; h < a.hidden; ++h) acc[static_cast<std::size_t>(h)] += w * to_float(y[h]);
      }
      Bf16* out = a.out + t * a.hidden;
      for (std::int64_t h = 0; h < a.hidden; ++h) out[h] = to_bf16(acc[static_cast<std::size_t>(h)]);
    }
  });
}

}  // namespace moesim::kernels::cpu
