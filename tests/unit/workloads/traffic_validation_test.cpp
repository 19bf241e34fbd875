// Sampled traffic against closed-form (or exactly enumerated) expectations, printed side by side.
//
// Every count checked here is a sum of independent per-token indicators (or bounded per-token counts), so it
// is binomial (or close to normal) with a variance we can write down; each check allows 5 standard deviations.
// The seeds are fixed, so a pass is reproducible; 5 sigma makes a false alarm on a correct sampler improbable
// (about 6e-7 per check) while a biased sampler at these sample sizes would miss by far more.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "workloads/traffic.hpp"

namespace moesim::workloads {
namespace {

constexpr double kSigmas = 5.0;

// Index of [row][col] in a row-major matrix `width` wide.
std::size_t cell(int row, int width, int col) {
  return static_cast<std::size_t>(row) * static_cast<std::size_t>(width) + static_cast<std::size_t>(col);
}

std::vector<int> shape(int num_nodes, int gpus_per_node) {
  std::vector<int> node_of_gpu(static_cast<std::size_t>(num_nodes * gpus_per_node));
  for (std::size_t g = 0; g < node_of_gpu.size(); ++g) node_of_gpu[g] = static_cast<int>(g) / gpus_per_node;
  return node_of_gpu;
}

TrafficOptions make_options(int ep, std::int64_t tokens_per_rank, int num_experts, int num_topk,
                            const std::string& routing, int node_limit, std::uint64_t seed) {
  TrafficOptions options;
  options.ep = ep;
  options.tokens_per_rank = tokens_per_rank;
  options.num_experts = num_experts;
  options.num_topk = num_topk;
  options.routing = parse_routing(routing);
  options.routing.node_limit = node_limit;
  options.seed = seed;
  return options;
}

// C(n, k) as a double (exact for the small arguments used here).
double choose(int n, int k) {
  if (k < 0 || k > n) return 0.0;
  double result = 1.0;
  for (int i = 1; i <= k; ++i) result = result * (n - k + i) / i;
  return result;
}

// Checks that `actual` is within kSigmas standard deviations of `mean`; returns |z| for the summary.
double expect_near_mean(double actual, double mean, double stddev, const std::string& what) {
  const double z = stddev > 0.0 ? (actual - mean) / stddev : (actual == mean ? 0.0 : INFINITY);
  EXPECT_LE(std::abs(z), kSigmas) << what << ": expected " << mean << " +- " << stddev << ", got " << actual;
  return std::abs(z);
}

TEST(TrafficValidation, UniformTokensAndCopiesPerRank) {
  // E = 64 experts, top-6, ep = 16 ranks of m = 4 experts, 2 nodes of 8 GPUs. A token misses a given rank when
  // all 6 of its experts are among the other E - m, so it reaches the rank with probability
  //   1 - C(E - m, k) / C(E, k),
  // and a given node (E/2 = 32 experts) with probability 1 - C(E - 32, k) / C(E, k). The copies a token sends to
  // a rank are hypergeometric: mean k m / E, variance k (m/E) (1 - m/E) (E - k) / (E - 1).
  const int num_experts = 64;
  const int k = 6;
  const int ep = 16;
  const int m = num_experts / ep;
  const std::int64_t t = 40000;
  const LayerTraffic traffic =
      build_layer_traffic(shape(2, 8), make_options(ep, t, num_experts, k, "uniform", 0, 2024));
  const EpGroupTraffic& group = traffic.groups[0];

  const double p_rank = 1.0 - choose(num_experts - m, k) / choose(num_experts, k);
  const double tokens_mean = static_cast<double>(t) * p_rank;
  const double tokens_sd = std::sqrt(static_cast<double>(t) * p_rank * (1.0 - p_rank));
  const double q = static_cast<double>(m) / num_experts;
  const double copies_mean = static_cast<double>(t) * k * q;
  const double copies_sd =
      std::sqrt(static_cast<double>(t) * k * q * (1.0 - q) * (num_experts - k) / (num_experts - 1));
  const int per_node = num_experts / 2;
  const double p_node = 1.0 - choose(num_experts - per_node, k) / choose(num_experts, k);
  const double node_mean = static_cast<double>(t) * p_node;
  const double node_sd = std::sqrt(static_cast<double>(t) * p_node * (1.0 - p_node));

  double worst_tokens = 0.0;
  double worst_copies = 0.0;
  double worst_node = 0.0;
  for (int s = 0; s < ep; ++s) {
    for (int d = 0; d < ep; ++d) {
      const auto idx = cell(s, ep, d);
      const std::string where = "src " + std::to_string(s) + " dst " + std::to_string(d);
      worst_tokens = std::max(worst_tokens, expect_near_mean(static_cast<double>(group.tokens_to_rank[idx]),
                                                             tokens_mean, tokens_sd, "tokens_to_rank " + where));
      worst_copies = std::max(worst_copies, expect_near_mean(static_cast<double>(group.copies_to_rank[idx]),
                                                             copies_mean, copies_sd, "copies_to_rank " + where));
    }
    for (int n = 0; n < 2; ++n) {
      const auto idx = cell(s, 2, n);
      worst_node = std::max(worst_node, expect_near_mean(static_cast<double>(group.tokens_to_node[idx]), node_mean,
                                                         node_sd, "tokens_to_node src " + std::to_string(s)));
    }
  }
  std::printf("uniform E=%d top-%d ep=%d, %lld tokens per rank\n", num_experts, k, ep, static_cast<long long>(t));
  std::printf("  tokens_to_rank: expectation %.1f +- %.1f, actual [0][1] %lld, [5][9] %lld; worst |z| %.2f\n",
              tokens_mean, tokens_sd, static_cast<long long>(group.tokens_to_rank[1]),
              static_cast<long long>(group.tokens_to_rank[5 * ep + 9]), worst_tokens);
  std::printf("  copies_to_rank: expectation %.1f +- %.1f, actual [0][1] %lld, [5][9] %lld; worst |z| %.2f\n",
              copies_mean, copies_sd, static_cast<long long>(group.copies_to_rank[1]),
              static_cast<long long>(group.copies_to_rank[5 * ep + 9]), worst_copies);
  std::printf("  tokens_to_node: expectation %.1f +- %.1f, actual [0][0] %lld, [7][1] %lld; worst |z| %.2f\n",
              node_mean, node_sd, static_cast<long long>(group.tokens_to_node[0]),
              static_cast<long long>(group.tokens_to_node[7 * 2 + 1]), worst_node);
}

TEST(TrafficValidation, ZipfTop1FrequenciesMatchThePopularity) {
  // With top-1, each token picks expert e with probability p_e, independently: the count of e is
  // Binomial(N, p_e). Checked per expert (5 sigma) and overall by Pearson's chi-square with E - 1 degrees of
  // freedom (mean E - 1, variance 2 (E - 1)).
  const int num_experts = 32;
  const std::int64_t t = 20000;
  const auto cluster = shape(2, 8);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(16, t, num_experts, 1, "zipf:1.2", 0, 99));
  const std::vector<double> p = expert_popularity(traffic.options.routing, num_experts, traffic.options.seed);
  const double n = static_cast<double>(t) * static_cast<double>(cluster.size());

  double chi_square = 0.0;
  double worst = 0.0;
  std::printf("zipf:1.2 top-1, %.0f tokens: expert, expectation, actual\n", n);
  for (int e = 0; e < num_experts; ++e) {
    const double expected = n * p[static_cast<std::size_t>(e)];
    const double actual = static_cast<double>(traffic.tokens_per_expert[static_cast<std::size_t>(e)]);
    chi_square += (actual - expected) * (actual - expected) / expected;
    worst =
        std::max(worst, expect_near_mean(actual, expected, std::sqrt(expected * (1.0 - p[static_cast<std::size_t>(e)])),
                                         "expert " + std::to_string(e)));
    if (e < 6) std::printf("  %2d  %9.1f  %9.0f\n", e, expected, actual);
  }
  const double dof = num_experts - 1;
  std::printf("  chi-square %.1f (expectation %.0f +- %.1f); worst |z| %.2f\n", chi_square, dof, std::sqrt(2 * dof),
              worst);
  EXPECT_LE(chi_square, dof + kSigmas * std::sqrt(2 * dof));
}

TEST(TrafficValidation, ZipfTop2IsSamplingWithoutReplacement) {
  // Successive sampling: expert e is among a token's two experts with probability
  //   p_e + sum_{j != e} p_j p_e / (1 - p_j)
  // (first pick, or second after some j). A sampler that allowed duplicates or drew the second expert from p
  // unconditioned would miss this for the hot experts.
  const int num_experts = 16;
  const std::int64_t t = 20000;
  const auto cluster = shape(2, 8);
  const LayerTraffic traffic = build_layer_traffic(cluster, make_options(16, t, num_experts, 2, "zipf:1.5", 0, 5));
  const std::vector<double> p = expert_popularity(traffic.options.routing, num_experts, traffic.options.seed);
  const double n = static_cast<double>(t) * static_cast<double>(cluster.size());
  double worst = 0.0;
  std::printf("zipf:1.5 top-2, %.0f tokens: expert, p, inclusion probability, expectation, actual\n", n);
  for (int e = 0; e < num_experts; ++e) {
    double inclusion = p[static_cast<std::size_t>(e)];
    for (int j = 0; j < num_experts; ++j) {
      if (j != e)
        inclusion +=
            p[static_cast<std::size_t>(j)] * p[static_cast<std::size_t>(e)] / (1.0 - p[static_cast<std::size_t>(j)]);
    }
    const double actual = static_cast<double>(traffic.tokens_per_expert[static_cast<std::size_t>(e)]);
    worst = std::max(worst, expect_near_mean(actual, n * inclusion, std::sqrt(n * inclusion * (1.0 - inclusion)),
                                             "expert " + std::to_string(e)));
    if (e < 6)
      std::printf("  %2d  %.4f  %.4f  %9.1f  %9.0f\n", e, p[static_cast<std::size_t>(e)], inclusion, n * inclusion,
                  actual);
  }
  std::printf("  worst |z| %.2f\n", worst);
}

// The exact law of limited successive sampling, by enumerating every ordered pick sequence: pick i takes an
// eligible expert (not picked; once `node_limit` nodes are touched, on a touched node; once `rank_limit` ranks are
// touched, on a touched rank) with probability proportional to weight_of_pick(i)[e]. Per-expert inclusion, per-node
// and per-rank hit probabilities.
struct ExactLaw {
  std::vector<double> inclusion;
  std::vector<double> node_hit;
  std::vector<double> rank_hit;
};

ExactLaw enumerate_limited(const std::function<const std::vector<double>&(int)>& weight_of_pick,
                           const std::vector<int>& node_of_expert, const std::vector<int>& rank_of_expert,
                           int num_nodes, int num_ranks, int k, int node_limit, int rank_limit) {
  const auto num_experts = static_cast<int>(node_of_expert.size());
  ExactLaw law{std::vector<double>(node_of_expert.size(), 0.0),
               std::vector<double>(static_cast<std::size_t>(num_nodes)),
               std::vector<double>(static_cast<std::size_t>(num_ranks))};
  std::vector<bool> picked(node_of_expert.size(), false);
  std::vector<int> node_count(static_cast<std::size_t>(num_nodes), 0);
  std::vector<int> rank_count(static_cast<std::size_t>(num_ranks), 0);
  std::function<void(int, int, int, double)> recurse = [&](int depth, int nodes_touched, int ranks_touched,
                                                           double probability) {
    if (depth == k) {
      for (int e = 0; e < num_experts; ++e) {
        if (picked[static_cast<std::size_t>(e)]) law.inclusion[static_cast<std::size_t>(e)] += probability;
      }
      for (int n = 0; n < num_nodes; ++n) {
        if (node_count[static_cast<std::size_t>(n)] > 0) law.node_hit[static_cast<std::size_t>(n)] += probability;
      }
      for (int r = 0; r < num_ranks; ++r) {
        if (rank_count[static_cast<std::size_t>(r)] > 0) law.rank_hit[static_cast<std::size_t>(r)] += probability;
      }
      return;
    }
    const std::vector<double>& w = weight_of_pick(depth);
    auto eligible = [&](int e) {
      const auto i = static_cast<std::size_t>(e);
      const bool is_rank_touched = rank_count[static_cast<std::size_t>(rank_of_expert[i])] > 0;
      const bool is_node_touched = node_count[static_cast<std::size_t>(node_of_expert[i])] > 0;
      return !picked[i] && w[i] > 0.0 &&
             (is_rank_touched || (ranks_touched < rank_limit && (is_node_touched || nodes_touched < node_limit)));
    };
    double total = 0.0;
    for (int e = 0; e < num_experts; ++e) total += eligible(e) ? w[static_cast<std::size_t>(e)] : 0.0;
    ASSERT_GT(total, 0.0) << "a pick sequence ran out of eligible experts at depth " << depth;
    for (int e = 0; e < num_experts; ++e) {
      if (!eligible(e)) continue;
      const auto i = static_cast<std::size_t>(e);
      const auto node = static_cast<std::size_t>(node_of_expert[i]);
      const auto rank = static_cast<std::size_t>(rank_of_expert[i]);
      const int is_new_node = node_count[node] == 0 ? 1 : 0;
      const int is_new_rank = rank_count[rank] == 0 ? 1 : 0;
      picked[i] = true;
      ++node_count[node];
      ++rank_count[rank];
      recurse(depth + 1, nodes_touched + is_new_node, ranks_touched + is_new_rank, probability * w[i] / total);
      --rank_count[rank];
      --node_count[node];
      picked[i] = false;
    }
  };
  recurse(0, 0, 0, 1.0);
  return law;
}

// Compares sampled traffic of one group (n tokens in all) with the exact law, 5 sigma per expert, node and rank;
// prints the nodes and ranks. Returns the worst |z|.
double expect_exact_law(const LayerTraffic& traffic, const ExactLaw& law, double n) {
  const EpGroupTraffic& group = traffic.groups[0];
  const int ep = traffic.options.ep;
  double worst = 0.0;
  for (std::size_t e = 0; e < law.inclusion.size(); ++e) {
    const double q = law.inclusion[e];
    worst = std::max(worst, expect_near_mean(static_cast<double>(traffic.tokens_per_expert[e]), n * q,
                                             std::sqrt(n * q * (1.0 - q)), "expert " + std::to_string(e)));
  }
  std::printf("  unit, exact hit probability, expectation, actual\n");
  for (int node = 0; node < group.num_nodes; ++node) {
    std::int64_t hits = 0;
    for (int s = 0; s < ep; ++s) hits += group.tokens_to_node[cell(s, group.num_nodes, node)];
    const double h = law.node_hit[static_cast<std::size_t>(node)];
    worst = std::max(worst, expect_near_mean(static_cast<double>(hits), n * h, std::sqrt(n * h * (1.0 - h)),
                                             "node " + std::to_string(node)));
    std::printf("  node %d  %.5f  %9.1f  %9lld\n", node, h, n * h, static_cast<long long>(hits));
  }
  for (int rank = 0; rank < ep; ++rank) {
    std::int64_t hits = 0;
    for (int s = 0; s < ep; ++s) hits += group.tokens_to_rank[cell(s, ep, rank)];
    const double h = law.rank_hit[static_cast<std::size_t>(rank)];
    worst = std::max(worst, expect_near_mean(static_cast<double>(hits), n * h, std::sqrt(n * h * (1.0 - h)),
                                             "rank " + std::to_string(rank)));
    std::printf("  rank %d  %.5f  %9.1f  %9lld\n", rank, h, n * h, static_cast<long long>(hits));
  }
  std::printf("  worst |z| over experts, nodes and ranks %.2f\n", worst);
  return worst;
}

// The layout of the exact-law tests: 3 nodes of 2 GPUs, one group of 6 ranks with 2 experts each (4 per node),
// top-3, and t tokens per rank (n in all), enough for the sampled frequencies to pin the law down.
struct SmallLayout {
  std::vector<int> cluster = shape(3, 2);
  int num_experts = 12;
  int k = 3;
  std::int64_t t = 50000;
  double n = 50000.0 * 6;
  std::vector<int> node_of_expert = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2};
  std::vector<int> rank_of_expert = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5};
};

TEST(TrafficValidation, NodeLimitedRoutingMatchesTheExactLaw) {
  // 3 nodes of 2 GPUs, one group of 6 ranks with 2 experts each (4 per node), top-3. The exact inclusion and
  // node-hit probabilities come from enumerating all 12 x 11 x 10 pick sequences; the sampler must match them
  // with and without skew, whether the limit binds hard (1 node) or mildly (2 nodes).
  const auto [cluster, num_experts, k, t, n, node_of_expert, rank_of_expert] = SmallLayout{};

  for (const char* routing : {"uniform", "zipf:1.5", "zipf:4"}) {
    for (const int limit : {1, 2}) {
      SCOPED_TRACE(std::string(routing) + ", node limit " + std::to_string(limit));
      const LayerTraffic traffic = build_layer_traffic(cluster, make_options(6, t, num_experts, k, routing, limit, 31));
      const std::vector<double> p = expert_popularity(traffic.options.routing, num_experts, traffic.options.seed);
      const ExactLaw law = enumerate_limited([&](int) -> const std::vector<double>& { return p; }, node_of_expert,
                                             rank_of_expert, 3, 6, k, limit, 6);
      std::printf("%s, node limit %d, %.0f tokens\n", routing, limit, n);
      expect_exact_law(traffic, law, n);
    }
  }
}

TEST(TrafficValidation, DeviceLimitedRoutingMatchesTheExactLaw) {
  // The same layout (3 nodes, 6 ranks of 2 experts, top-3) with a device limit of 2 ranks, alone and together with
  // a node limit of 1 node: every expert's inclusion and every node's and rank's hit probability must match the
  // enumerated law of successive sampling restricted to the touched ranks (and nodes) once a limit is reached. (A
  // node limit of 2 could not bind here: 2 ranks lie on at most 2 nodes.)
  const auto [cluster, num_experts, k, t, n, node_of_expert, rank_of_expert] = SmallLayout{};
  for (const char* routing : {"uniform", "zipf:1.5", "dirichlet:0.5", "lognormal:2"}) {
    for (const int node_limit : {0, 1}) {
      SCOPED_TRACE(std::string(routing) + ", node limit " + std::to_string(node_limit) + ", device limit 2");
      TrafficOptions options = make_options(6, t, num_experts, k, routing, node_limit, 47);
      options.routing.device_limit = 2;
      const LayerTraffic traffic = build_layer_traffic(cluster, options);
      const std::vector<double> p = expert_popularity(options.routing, num_experts, options.seed);
      const ExactLaw law = enumerate_limited([&](int) -> const std::vector<double>& { return p; }, node_of_expert,
                                             rank_of_expert, 3, 6, k, node_limit > 0 ? node_limit : 3, 2);
      std::printf("%s, node limit %d, device limit 2, %.0f tokens\n", routing, node_limit, n);
      expect_exact_law(traffic, law, n);
    }
  }
}

TEST(TrafficValidation, HotRoutingUnderLimitsMatchesTheExactLaw) {
  // hot:4:0.5 with top-3: k P = 1.5, so a token makes 1 hot pick with probability 1/2 and 2 otherwise; hot picks
  // come first, each uniform over the eligible hot experts, then the cold picks uniform over the eligible cold ones.
  // The exact law is the even mixture of the two enumerated processes. Same layout as above, with no limit, either
  // limit or both; the seed is the first whose hot set the limits accept.
  const auto [cluster, num_experts, k, t, n, node_of_expert, rank_of_expert] = SmallLayout{};
  for (const int node_limit : {0, 1}) {
    for (const int device_limit : {0, 2}) {
      SCOPED_TRACE("node limit " + std::to_string(node_limit) + ", device limit " + std::to_string(device_limit));
      LayerTraffic traffic;
      bool is_accepted = false;
      for (std::uint64_t seed = 1; seed < 200 && !is_accepted; ++seed) {
        try {
          TrafficOptions options = make_options(6, t, num_experts, k, "hot:4:0.5", node_limit, seed);
          options.routing.device_limit = device_limit;
          traffic = build_layer_traffic(cluster, options);
          is_accepted = true;
        } catch (const std::invalid_argument&) {
        }
      }
      ASSERT_TRUE(is_accepted);
      std::vector<double> hot(static_cast<std::size_t>(num_experts), 0.0);
      for (const int e : hot_experts(traffic.options.routing, num_experts, traffic.options.seed)) {
        hot[static_cast<std::size_t>(e)] = 1.0;
      }
      std::vector<double> cold(hot.size());
      for (std::size_t e = 0; e < hot.size(); ++e) cold[e] = 1.0 - hot[e];
      ExactLaw law{std::vector<double>(hot.size(), 0.0), std::vector<double>(3, 0.0), std::vector<double>(6, 0.0)};
      for (const int num_hot : {1, 2}) {
        const ExactLaw part = enumerate_limited(
            [&](int pick) -> const std::vector<double>& { return pick < num_hot ? hot : cold; }, node_of_expert,
            rank_of_expert, 3, 6, k, node_limit > 0 ? node_limit : 3, device_limit > 0 ? device_limit : 6);
        for (std::size_t i = 0; i < law.inclusion.size(); ++i) law.inclusion[i] += 0.5 * part.inclusion[i];
        for (std::size_t i = 0; i < law.node_hit.size(); ++i) law.node_hit[i] += 0.5 * part.node_hit[i];
        for (std::size_t i = 0; i < law.rank_hit.size(); ++i) law.rank_hit[i] += 0.5 * part.rank_hit[i];
      }
      std::printf("hot:4:0.5 (seed %llu), node limit %d, device limit %d, %.0f tokens\n",
                  static_cast<unsigned long long>(traffic.options.seed), node_limit, device_limit, n);
      expect_exact_law(traffic, law, n);
    }
  }
}

}  // namespace
}  // namespace moesim::workloads
