#include "kernels/harness/reference.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moesim::kernels::harness {
namespace {

constexpr double kFp32Unit = 0x1p-24;  // unit roundoff of FP32

// Indices [first, last) sorted by value, best first, ties to the lower index.
std::vector<int> ranking(const std::vector<double>& value, int first, int last) {
  std::vector<int> order(static_cast<std::size_t>(last - first));
  std::iota(order.begin(), order.end(), first);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return value[a] > value[b]; });
  return order;
}

double silu(double g) {
  return g / (1.0 + std::exp(-g));
}

}  // namespace

RouterReference router_fp64(const RouterArgs& a) {
  const int experts = a.experts;
  RouterReference ref;
  ref.scores.resize(static_cast<std::size_t>(a.tokens * experts));
  ref.expert.resize(static_cast<std::size_t>(a.tokens * a.topk));
  ref.is_tied.resize(static_cast<std::size_t>(a.tokens));
  const int groups = a.groups > 1 ? a.groups : 1;
  const int group_size = experts / groups;
  std::vector<double> logit(static_cast<std::size_t>(experts));
  std::vector<double> magnitude(static_cast<std::size_t>(experts));  // sum of |x w| per logit
  std::vector<double> biased(static_cast<std::size_t>(experts));
  std::vector<double> group_score(static_cast<std::size_t>(groups));
  for (std::int64_t t = 0; t < a.tokens; ++t) {
    for (int e = 0; e < experts; ++e) {
      double sum = 0;
      double abs_sum = 0;
      for (std::int64_t h = 0; h < a.hidden; ++h) {
        const double term = static_cast<double>(to_float(a.x[t * a.hidden + h])) * to_float(a.w[h * experts + e]);
        sum += term;
        abs_sum += std::fabs(term);
      }
      logit[e] = sum;
      magnitude[e] = abs_sum;
    }
    double* scores = ref.scores.data() + t * experts;
    if (a.score == ScoreFunction::kSoftmax) {
      const double max_logit = *std::max_element(logit.begin(), logit.end());
      double sum = 0;
      for (int e = 0; e < experts; ++e) sum += std::exp(logit[e] - max_logit);
      for (int e = 0; e < experts; ++e) scores[e] = std::exp(logit[e] - max_logit) / sum;
    } else {
      for (int e = 0; e < experts; ++e) scores[e] = 1.0 / (1.0 + std::exp(-logit[e]));
    }
    for (int e = 0; e < experts; ++e) biased[e] = scores[e] + (a.bias != nullptr ? a.bias[e] : 0.0f);

    // How far an FP32 computation of one biased score may stray (see the header).
    const double max_score = *std::max_element(scores, scores + experts);
    const double max_magnitude = *std::max_element(magnitude.begin(), magnitude.end());
    double max_biased = 0;
    for (double b : biased) max_biased = std::max(max_biased, std::fabs(b));
    const double logit_error = static_cast<double>(a.hidden) * kFp32Unit * max_magnitude;
    const double score_error = (a.score == ScoreFunction::kSoftmax ? 2 * max_score : 0.25) * logit_error +
                               (experts + 8) * kFp32Unit * std::max(max_score, 1e-30) + kFp32Unit * max_biased;
    const double tie = 2 * score_error;
    bool is_tied = false;

    std::vector<char> is_open(static_cast<std::size_t>(experts), 1);
    if (groups > 1) {
      for (int g = 0; g < groups; ++g) {
        const std::vector<int> order = ranking(biased, g * group_size, (g + 1) * group_size);
        group_score[g] = biased[order[0]] + (group_size > 1 ? biased[order[1]] : 0.0);
      }
      const std::vector<int> group_order = ranking(group_score, 0, groups);
      std::fill(is_open.begin(), is_open.end(), 0);
      for (int n = 0; n < a.group_limit; ++n) {
        const auto first = static_cast<std::ptrdiff_t>(group_order[n]) * group_size;
        std::fill(is_open.begin() + first, is_open.begin() + first + group_size, 1);
      }
      // A group score sums two scores: twice the error.
      if (a.group_limit < groups &&
          group_score[group_order[a.group_limit - 1]] - group_score[group_order[a.group_limit]] <= 2 * tie)
        is_tied = true;
    }
    std::vector<int> order = ranking(biased, 0, experts);
    order.erase(std::remove_if(order.begin(), order.end(), [&](int e) { return !is_open[e]; }), order.end());
    for (int j = 0; j < a.topk; ++j) {
      ref.expert[t * a.topk + j] = order[j];
      if (j + 1 < static_cast<int>(order.size()) && biased[order[j]] - biased[order[j + 1]] <= tie) is_tied = true;
    }
    ref.is_tied[t] = is_tied ? 1 : 0;
  }
  return ref;
}

std::vector<double> router_weights_fp64(const RouterArgs& a, const std::vector<double>& scores,
                                        const std::vector<std::int32_t>& expert) {
  std::vector<double> weight(expert.size(), 0.0);
  for (std::int64_t t = 0; t < a.tokens; ++t) {
    double sum = 0;
    for (int j = 0; j < a.topk; ++j) {
      const std::int32_t e = expert[t * a.topk + j];
      const double s = e >= 0 && e < a.experts ? scores[t * a.experts + e] : 0.0;
      weight[t * a.topk + j] = s;
      sum += s;
    }
    if (a.normalize && sum > 0)
      for (int j = 0; j < a.topk; ++j) weight[t * a.topk + j] /= sum;
  }
  return weight;
}

PermuteReference permute_naive(const PermuteArgs& a) {
  const std::int64_t copies = a.tokens * a.topk;
  PermuteReference ref;
  ref.routed.assign(static_cast<std::size_t>(a.experts), 0);
  ref.offsets.assign(static_cast<std::size_t>(a.experts) + 1, 0);
  ref.row_of_copy.assign(static_cast<std::size_t>(copies), -1);
  ref.token_of_row.assign(static_cast<std::size_t>(copies), -1);
  std::int32_t row = 0;
  for (int e = 0; e < a.experts; ++e) {
    std::vector<std::int32_t> mine;  // this expert's copies, in copy order
    for (std::int64_t c = 0; c < copies; ++c)
      if (a.expert[c] == e) mine.push_back(static_cast<std::int32_t>(c));
    ref.routed[e] = static_cast<std::int32_t>(mine.size());
    std::vector<char> is_kept(mine.size(), 1);
    if (a.capacity > 0 && static_cast<std::int64_t>(mine.size()) > a.capacity) {
      for (std::size_t i = 0; i < mine.size(); ++i) {
        // Kept when fewer than `capacity` copies beat it: a higher weight, or an equal one and a lower copy index
        // (drop-score); an earlier copy (drop-position).
        std::int64_t better = 0;
        for (std::size_t o = 0; o < mine.size(); ++o) {
          if (a.policy == DropPolicy::kDropPosition) {
            better += o < i ? 1 : 0;
          } else {
            const float wo = a.weight[mine[o]];
            const float wi = a.weight[mine[i]];
            better += (wo > wi || (wo == wi && o < i)) ? 1 : 0;
          }
        }
        is_kept[i] = better < a.capacity ? 1 : 0;
      }
    }
    for (std::size_t i = 0; i < mine.size(); ++i) {
      if (!is_kept[i]) continue;
      ref.row_of_copy[mine[i]] = row;
      ref.token_of_row[row] = static_cast<std::int32_t>(mine[i] / a.topk);
      ++row;
    }
    ref.offsets[e + 1] = row;
  }
  if (a.x == nullptr) return ref;
  ref.permuted.resize(static_cast<std::size_t>(row * a.hidden));
  for (std::int32_t r = 0; r < row; ++r)
    for (std::int64_t h = 0; h < a.hidden; ++h)
      ref.permuted[r * a.hidden + h] = a.x[static_cast<std::int64_t>(ref.token_of_row[r]) * a.hidden + h];
  return ref;
}

FfnReference grouped_ffn_fp64(const GroupedFfnArgs& a) {
  const std::int64_t rows = a.host_offsets[a.experts];
  FfnReference ref;
  ref.h.assign(static_cast<std::size_t>(rows * a.ffn), 0.0);
  ref.y.assign(static_cast<std::size_t>(rows * a.hidden), 0.0);
  std::vector<double> gate(static_cast<std::size_t>(a.ffn));
  std::vector<double> up(static_cast<std::size_t>(a.ffn));
  for (int e = 0; e < a.experts; ++e) {
    const std::int64_t w = static_cast<std::int64_t>(e) * a.hidden * a.ffn;
    for (std::int64_t r = a.host_offsets[e]; r < a.host_offsets[e + 1]; ++r) {
      std::fill(gate.begin(), gate.end(), 0.0);
      std::fill(up.begin(), up.end(), 0.0);
      for (std::int64_t i = 0; i < a.hidden; ++i) {
        const double xv = to_float(a.x[r * a.hidden + i]);
        for (std::int64_t f = 0; f < a.ffn; ++f) {
          gate[f] += xv * to_float(a.w_gate[w + i * a.ffn + f]);
          up[f] += xv * to_float(a.w_up[w + i * a.ffn + f]);
        }
      }
      for (std::int64_t f = 0; f < a.ffn; ++f) {
        const double h = silu(gate[f]) * up[f];
        ref.h[r * a.ffn + f] = h;
        const double h_stored = to_float(bf16_from_double(h));
        for (std::int64_t i = 0; i < a.hidden; ++i)
          ref.y[r * a.hidden + i] += h_stored * to_float(a.w_down[w + f * a.hidden + i]);
      }
    }
  }
  return ref;
}

std::vector<double> dense_gemm_fp64(const GemmArgs& a) {
  std::vector<double> c(static_cast<std::size_t>(a.m * a.n), 0.0);
  for (std::int64_t i = 0; i < a.m; ++i)
    for (std::int64_t kk = 0; kk < a.k; ++kk) {
      const double av = to_float(a.a[i * a.k + kk]);
      for (std::int64_t j = 0; j < a.n; ++j) c[i * a.n + j] += av * to_float(a.b[kk * a.n + j]);
    }
  return c;
}

std::vector<double> unpermute_fp64(const UnpermuteArgs& a) {
  std::vector<double> out(static_cast<std::size_t>(a.tokens * a.hidden), 0.0);
  for (std::int64_t t = 0; t < a.tokens; ++t)
    for (int j = 0; j < a.topk; ++j) {
      const std::int32_t row = a.row_of_copy[t * a.topk + j];
      if (row < 0) continue;
      const double w = a.weight[t * a.topk + j];
      for (std::int64_t h = 0; h < a.hidden; ++h)
        out[t * a.hidden + h] += w * to_float(a.y[static_cast<std::int64_t>(row) * a.hidden + h]);
    }
  return out;
}

}  // namespace moesim::kernels::harness
