// Capacity overflow and router scores against exact expectations, printed side by side.
//
// Dropped copies. With uniform top-k routing each of a rank's T tokens picks a given expert with probability
// k / E, independently of the other tokens (top-k without replacement is symmetric), so the rank's copies for
// expert e are X_e ~ Binomial(T, k / E) and a drop policy keeps min(X_e, C) of them. The expected number dropped
// per rank is therefore sum_e E[max(0, X_e - C)] = E sum_{x > C} (x - C) P(X = x), whatever the dependence between
// experts (an expectation of a sum). Each rank is an independent sample of that count, so the sampled mean over R
// ranks has standard error s / sqrt(R), s the sample standard deviation; the checks allow 5 of them.
//
// Scores. The top-down construction (routing.hpp) claims that a token's picks and logits s_1 > s_2 > ... are
// those of log w_e + Gumbel. Then exp(-s_e) = exp(-Gumbel) / w_e is exponential with rate w_e, the picks are the
// smallest of these, and by the memorylessness of the exponential the spacings
// D_i = (exp(-s_i) - exp(-s_{i-1})) (W - w_{e_1} - ... - w_{e_{i-1}}) (with exp(-s_0) = 0) are independent
// standard exponentials: mean 1, P(D > 1) = 1/e. That identity is how the sampler builds the scores, so the
// second check is independent of it: the mean of the i-th score against brute force (all E logits drawn with
// <random>'s Gumbel and sorted), two samples compared by their standard errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "workloads/capacity.hpp"
#include "workloads/routing.hpp"
#include "workloads/traffic.hpp"

namespace moesim::workloads {
namespace {

constexpr double kSigmas = 5.0;

// E[max(0, X - C)] for X ~ Binomial(n, p), summed exactly over the support (pmf in logs).
double expected_overflow(int n, double p, std::int64_t capacity) {
  double total = 0.0;
  for (int x = static_cast<int>(capacity) + 1; x <= n; ++x) {
    const double log_pmf = std::lgamma(n + 1.0) - std::lgamma(x + 1.0) - std::lgamma(n - x + 1.0) + x * std::log(p) +
                           (n - x) * std::log1p(-p);
    total += static_cast<double>(x - capacity) * std::exp(log_pmf);
  }
  return total;
}

struct Sample {
  double mean = 0.0;
  double standard_error = 0.0;
};

// Per source rank: the dropped copies (T k minus what it sends), from a layer with one expert per rank.
Sample dropped_per_rank(const LayerTraffic& traffic) {
  const TrafficOptions& o = traffic.options;
  std::vector<double> dropped;
  for (const EpGroupTraffic& g : traffic.groups) {
    const auto ep = static_cast<std::size_t>(o.ep);
    for (std::size_t src = 0; src < ep; ++src) {
      std::int64_t sent = 0;
      for (std::size_t dst = 0; dst < ep; ++dst) sent += g.copies_to_rank[src * ep + dst];
      dropped.push_back(static_cast<double>(o.tokens_per_rank * o.num_topk - sent));
    }
  }
  Sample s;
  for (const double d : dropped) s.mean += d;
  s.mean /= static_cast<double>(dropped.size());
  double sum_squares = 0.0;
  for (const double d : dropped) sum_squares += (d - s.mean) * (d - s.mean);
  const double variance = sum_squares / static_cast<double>(dropped.size() - 1);
  s.standard_error = std::sqrt(variance / static_cast<double>(dropped.size()));
  return s;
}

void check_binomial_overflow(int num_experts, int num_topk, std::int64_t tokens, double factor, CapacityPolicy policy) {
  TrafficOptions o;
  o.ep = num_experts;  // one expert per rank: a rank's row is its copies per expert
  o.num_experts = num_experts;
  o.num_topk = num_topk;
  o.tokens_per_rank = tokens;
  o.routing = parse_routing("uniform");
  o.seed = 11;
  o.capacity.policy = policy;
  o.capacity.factor = factor;
  std::vector<int> node_of_gpu(static_cast<std::size_t>(num_experts) * 64);  // 64 EP groups
  for (std::size_t g = 0; g < node_of_gpu.size(); ++g) node_of_gpu[g] = static_cast<int>(g / 8);
  const LayerTraffic traffic = build_layer_traffic(node_of_gpu, o);
  const std::int64_t capacity = expert_capacity(tokens, num_topk, num_experts, factor, 0);
  const double expected =
      num_experts * expected_overflow(static_cast<int>(tokens), static_cast<double>(num_topk) / num_experts, capacity);
  const Sample sampled = dropped_per_rank(traffic);
  std::printf(
      "  %s, E %d, top-%d, T %lld, F %.2f (C %lld): expected dropped per rank %.4f (fraction %.5f), "
      "sampled %.4f +- %.4f over %zu ranks\n",
      capacity_policy_name(policy), num_experts, num_topk, static_cast<long long>(tokens), factor,
      static_cast<long long>(capacity), expected, expected / static_cast<double>(tokens * num_topk), sampled.mean,
      sampled.standard_error, node_of_gpu.size());
  EXPECT_NEAR(sampled.mean, expected, kSigmas * sampled.standard_error)
      << capacity_policy_name(policy) << " E " << num_experts << " k " << num_topk << " F " << factor;
}

TEST(CapacityValidation, DroppedCopiesMatchTheBinomialExpectation) {
  // Expectation: E sum_{x > C} (x - C) Binomial(T, k/E)(x), C = ceil(T k / E x F).
  // (padded drops as drop-position does; its rows carry padding, so PaddingIsTheCapacityNotFilled checks it.)
  for (const CapacityPolicy policy : {CapacityPolicy::kDropPosition, CapacityPolicy::kDropScore}) {
    check_binomial_overflow(16, 1, 128, 1.0, policy);   // C = 8
    check_binomial_overflow(16, 1, 128, 1.25, policy);  // C = 10
    check_binomial_overflow(32, 2, 256, 1.0, policy);   // C = 16
    check_binomial_overflow(8, 4, 64, 1.0, policy);     // C = 32, X ~ Binomial(64, 1/2)
  }
}

TEST(CapacityValidation, PaddingIsTheCapacityNotFilled) {
  // E[padding per rank] = E C - E[kept] = E C - (T k - E[dropped]).
  TrafficOptions o;
  o.ep = 16;
  o.num_experts = 16;
  o.num_topk = 1;
  o.tokens_per_rank = 128;
  o.routing = parse_routing("uniform");
  o.seed = 5;
  o.capacity.policy = CapacityPolicy::kPadded;
  o.capacity.factor = 1.25;
  std::vector<int> node_of_gpu(16 * 64);
  for (std::size_t g = 0; g < node_of_gpu.size(); ++g) node_of_gpu[g] = static_cast<int>(g / 8);
  const LayerTraffic traffic = build_layer_traffic(node_of_gpu, o);
  const double ranks = static_cast<double>(node_of_gpu.size());
  const double expected = 16.0 * 10.0 - (128.0 - 16.0 * expected_overflow(128, 1.0 / 16.0, 10));
  const double sampled = static_cast<double>(traffic.padded_slots) / ranks;
  // The padding per rank is C E - T + dropped, so its spread is that of the dropped count, which drop-position
  // (the same routing, dropping the same copies) shows per rank.
  o.capacity.policy = CapacityPolicy::kDropPosition;
  const Sample dropped = dropped_per_rank(build_layer_traffic(node_of_gpu, o));
  std::printf("  padded, E 16, top-1, T 128, C 10: expected padding per rank %.4f, sampled %.4f +- %.4f\n", expected,
              sampled, dropped.standard_error);
  EXPECT_NEAR(sampled, expected, kSigmas * dropped.standard_error);
}

TEST(ScoreValidation, SpacingsOfTheTopDownScoresAreStandardExponentials) {
  for (const std::string routing : {"uniform", "zipf:1.2", "dirichlet:0.5"}) {
    TrafficOptions o;
    o.ep = 8;
    o.num_experts = 64;
    o.num_topk = 6;
    o.tokens_per_rank = 4000;
    o.routing = parse_routing(routing);
    o.seed = 3;
    o.record_picks = true;
    o.record_scores = true;
    std::vector<int> node_of_gpu(8, 0);
    const LayerTraffic traffic = build_layer_traffic(node_of_gpu, o);
    const std::vector<double> w = expert_popularity(o.routing, o.num_experts, layer_seed(o.seed, 0));
    for (int i = 0; i < o.num_topk; ++i) {
      double sum = 0.0;
      double above_one = 0.0;
      const auto n = static_cast<double>(traffic.picks.num_tokens);
      for (std::int64_t token = 0; token < traffic.picks.num_tokens; ++token) {
        const std::size_t first = static_cast<std::size_t>(token) * 6;
        double remaining = 1.0;  // the popularity sums to 1
        double previous = 0.0;
        double spacing = 0.0;
        for (int j = 0; j <= i; ++j) {
          const double y = std::exp(-static_cast<double>(traffic.picks.scores[first + static_cast<std::size_t>(j)]));
          spacing = (y - previous) * remaining;
          previous = y;
          remaining -= w[static_cast<std::size_t>(traffic.picks.experts[first + static_cast<std::size_t>(j)])];
        }
        sum += spacing;
        above_one += spacing > 1.0 ? 1.0 : 0.0;
      }
      const double mean = sum / n;
      const double share = above_one / n;
      const double tail = std::exp(-1.0);
      std::printf("  %s, pick %d: spacing mean %.4f (expected 1 +- %.4f), P(D > 1) %.4f (expected %.4f +- %.4f)\n",
                  routing.c_str(), i + 1, mean, 1.0 / std::sqrt(n), share, tail, std::sqrt(tail * (1 - tail) / n));
      EXPECT_NEAR(mean, 1.0, kSigmas / std::sqrt(n)) << routing << " pick " << i + 1;
      EXPECT_NEAR(share, tail, kSigmas * std::sqrt(tail * (1 - tail) / n)) << routing << " pick " << i + 1;
    }
  }
}

TEST(ScoreValidation, TopDownScoresMatchBruteForceOrderStatistics) {
  TrafficOptions o;
  o.ep = 8;
  o.num_experts = 64;
  o.num_topk = 6;
  o.tokens_per_rank = 10000;
  o.routing = parse_routing("zipf:1.2");
  o.seed = 9;
  o.record_picks = true;
  o.record_scores = true;
  const LayerTraffic traffic = build_layer_traffic(std::vector<int>(8, 0), o);
  const std::vector<double> w = expert_popularity(o.routing, o.num_experts, layer_seed(o.seed, 0));
  const auto n = static_cast<std::size_t>(traffic.picks.num_tokens);
  std::mt19937_64 engine(12345);
  std::extreme_value_distribution<double> gumbel(0.0, 1.0);
  std::vector<std::vector<double>> brute(6);
  std::vector<double> logits(w.size());
  for (std::size_t token = 0; token < n; ++token) {
    for (std::size_t e = 0; e < w.size(); ++e) logits[e] = std::log(w[e]) + gumbel(engine);
    std::partial_sort(logits.begin(), logits.begin() + 6, logits.end(), std::greater<>());
    for (std::size_t i = 0; i < 6; ++i) brute[i].push_back(logits[i]);
  }
  auto mean_and_error = [](const std::vector<double>& x) {
    double mean = 0.0;
    for (const double v : x) mean += v;
    mean /= static_cast<double>(x.size());
    double squares = 0.0;
    for (const double v : x) squares += (v - mean) * (v - mean);
    return std::pair{mean, std::sqrt(squares / static_cast<double>(x.size() - 1) / static_cast<double>(x.size()))};
  };
  for (std::size_t i = 0; i < 6; ++i) {
    std::vector<double> sampled(n);
    for (std::size_t token = 0; token < n; ++token) sampled[token] = traffic.picks.scores[token * 6 + i];
    const auto [m1, e1] = mean_and_error(sampled);
    const auto [m2, e2] = mean_and_error(brute[i]);
    const double error = std::sqrt(e1 * e1 + e2 * e2);
    std::printf("  zipf:1.2, score %zu: top-down mean %.4f, brute force %.4f, difference %.4f +- %.4f\n", i + 1, m1, m2,
                m1 - m2, error);
    EXPECT_NEAR(m1, m2, kSigmas * error) << "score " << i + 1;
  }
}

}  // namespace
}  // namespace moesim::workloads
