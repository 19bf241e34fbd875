// Router: logits (FP32 dot products in hidden order), softmax or sigmoid, optional group limit, top-k by biased
// score with ties to the lower index, weights normalised in FP32 in choice order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.hpp"

namespace moesim::kernels::cpu {
namespace {

// The index of the largest value among allowed and not yet taken entries; ties (and NaN) to the lower index.
int argmax(const std::vector<float>& values, const std::vector<char>& is_allowed) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(values.size()); ++i) {
    if (!is_allowed[static_cast<std::size_t>(i)]) continue;
    if (best < 0 || values[static_cast<std::size_t>(i)] > values[static_cast<std::size_t>(best)]) best = i;
  }
  return best;
}

}  // namespace

void router(const RouterArgs& a, ThreadPool& pool) {
  check_args(a);
  const auto experts = static_cast<std::size_t>(a.experts);
  const int groups = a.groups > 1 ? a.groups : 1;
  const int group_size = a.experts / groups;
  pool.parallel_for(a.tokens, 8, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> logits(experts);
    std::vector<float> biased(experts);
    std::vector<float> group_score(static_cast<std::size_t>(groups));
    std::vector<char> is_group_open(static_cast<std::size_t>(groups));
    std::vector<char> is_open(experts);
    for (std::int64_t t = begin; t < end; ++t) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      const Bf16* x = a.x + t * a.hidden;
      for (std::int64_t h = 0; h < a.hidden; ++h) {
        const float xv = to_float(x[h]);
        const Bf16* w = a.w + h * a.experts;
        for (std::size_t e = 0; e < experts; ++e) logits[e] += xv * to_float(w[e]);
      }
      float* scores = a.scores + t * a.experts;
      if (a.score == ScoreFunction::kSoftmax) {
        float max_logit = logits[0];
        for (float l : logits) max_logit = std::max(max_logit, l);
        float sum = 0;
        for (std::size_t e = 0; e < experts; ++e) {
          scores[e] = std::exp(logits[e] - max_logit);
          sum += scores[e];
        }
        for (std::size_t e = 0; e < experts; ++e) scores[e] /= sum;
      } else {
        for (std::size_t e = 0; e < experts; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
      }
      for (std::size_t e = 0; e < experts; ++e) biased[e] = scores[e] + (a.bias != nullptr ? a.bias[e] : 0.0f);

      std::fill(is_open.begin(), is_open.end(), 1);
      if (groups > 1) {
        // Each group's score: its best biased score plus its second best (when it has two experts or more).
        for (int g = 0; g < groups; ++g) {
          const float* s = biased.data() + static_cast<std::ptrdiff_t>(g) * group_size;
          int best = 0;
          for (int i = 1; i < group_size; ++i) best = s[i] > s[best] ? i : best;
          int second = -1;
          for (int i = 0; i < group_size; ++i)
            if (i != best && (second < 0 || s[i] > s[second])) second = i;
          group_score[static_cast<std::size_t>(g)] = s[best] + (second >= 0 ? s[second] : 0.0f);
        }
        std::fill(is_group_open.begin(), is_group_open.end(), 1);
        std::fill(is_open.begin(), is_open.end(), 0);
        for (int n = 0; n < a.group_limit; ++n) {
          const int g = argmax(group_score, is_group_open);
          is_group_open[static_cast<std::size_t>(g)] = 0;
          std::fill(is_open.begin() + static_cast<std::ptrdiff_t>(g) * group_size,
                    is_open.begin() + static_cast<std::ptrdiff_t>(g + 1) * group_size, 1);
        }
      }
      std::int32_t* chosen = a.expert + t * a.topk;
      float* weight = a.weight + t * a.topk;
      for (int j = 0; j < a.topk; ++j) {
        const int e = argmax(biased, is_open);
        is_open[static_cast<std::size_t>(e)] = 0;
        chosen[j] = e;
        weight[j] = scores[e];
      }
      if (a.normalize) {
        float sum = 0;
        for (int j = 0; j < a.topk; ++j) sum += weight[j];
        if (sum > 0)
          for (int j = 0; j < a.topk; ++j) weight[j] /= sum;
      }
    }
  });
}

}  // namespace moesim::kernels::cpu
