#include "workloads/routing.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim::workloads {
namespace {

TEST(ParseRouting, Uniform) {
  const RoutingSpec spec = parse_routing("uniform");
  EXPECT_EQ(spec.kind, RoutingSpec::Kind::kUniform);
  EXPECT_EQ(spec.node_limit, 0);
  EXPECT_EQ(spec.describe(), "uniform");
}

TEST(ParseRouting, Zipf) {
  const RoutingSpec spec = parse_routing("zipf:1.2");
  EXPECT_EQ(spec.kind, RoutingSpec::Kind::kZipf);
  EXPECT_DOUBLE_EQ(spec.zipf_exponent, 1.2);
  EXPECT_EQ(spec.describe(), "zipf:1.2");
}

TEST(ParseRouting, DescribeMentionsTheNodeLimit) {
  RoutingSpec spec = parse_routing("zipf:0.5");
  spec.node_limit = 4;
  EXPECT_EQ(spec.describe(), "zipf:0.5, node-limit 4");
}

TEST(ParseRouting, NewDistributions) {
  // Each form fills its own parameter, and describe() writes the text back.
  const RoutingSpec dirichlet = parse_routing("dirichlet:0.3");
  EXPECT_EQ(dirichlet.kind, RoutingSpec::Kind::kDirichlet);
  EXPECT_DOUBLE_EQ(dirichlet.dirichlet_alpha, 0.3);
  const RoutingSpec lognormal = parse_routing("lognormal:1.5");
  EXPECT_EQ(lognormal.kind, RoutingSpec::Kind::kLognormal);
  EXPECT_DOUBLE_EQ(lognormal.lognormal_cv, 1.5);
  const RoutingSpec hot = parse_routing("hot:16:0.45");
  EXPECT_EQ(hot.kind, RoutingSpec::Kind::kHot);
  EXPECT_EQ(hot.hot_experts, 16);
  EXPECT_DOUBLE_EQ(hot.hot_share, 0.45);
  for (const char* text : {"uniform", "zipf:1.2", "zipf:0.1", "dirichlet:0.3", "dirichlet:4", "lognormal:1.5",
                           "lognormal:0.25", "hot:16:0.45", "hot:1:0.999"}) {
    EXPECT_EQ(parse_routing(text).describe(), text);
    EXPECT_EQ(parse_routing(parse_routing(text).describe()).describe(), text);
  }
}

TEST(ParseRouting, DescribeMentionsBothLimits) {
  RoutingSpec spec = parse_routing("zipf:1.2");
  spec.node_limit = 4;
  spec.device_limit = 6;
  EXPECT_EQ(spec.describe(), "zipf:1.2, node-limit 4, device-limit 6");
  spec.node_limit = 0;
  EXPECT_EQ(spec.describe(), "zipf:1.2, device-limit 6");
}

TEST(ParseRouting, RejectsAnythingElse) {
  // Every rejection lists all the accepted forms, then names the text and what is wrong with it.
  const std::string expected =
      "routing: expected uniform, zipf:S (S > 0), dirichlet:A (A > 0), lognormal:CV (CV > 0) or hot:H:P (integer "
      "H >= 1, 0 < P < 1); got '";
  for (const char* text : {"zipf:-1",       "zipf:0",       "zipf:",
                           "zipf:abc",      "zipf:1.2x",    "zipf:inf",
                           "zipf:nan",      "Uniform",      "",
                           "zipf",          "uniform:1",    "dirichlet",
                           "dirichlet:",    "dirichlet:0",  "dirichlet:-0.5",
                           "dirichlet:inf", "lognormal:-1", "lognormal:0",
                           "lognormal:x",   "hot",          "hot:3",
                           "hot:3:",        "hot:0:0.5",    "hot:-2:0.5",
                           "hot:1.5:0.5",   "hot:x:0.5",    "hot::0.5",
                           "hot:3:0",       "hot:3:1",      "hot:3:1.5",
                           "hot:3:0.5:1",   "pareto:2",     "hot:3:nan"}) {
    try {
      parse_routing(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind(expected + text + "' (", 0), 0u) << e.what();
    }
  }
}

TEST(ParseRouting, SaysWhatIsWrong) {
  auto reason = [](const std::string& text) {
    try {
      parse_routing(text);
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      return what.substr(what.find("' (", what.find("; got '")) + 1);
    }
    return std::string("accepted");
  };
  EXPECT_EQ(reason("dirichlet:0"), " (A must be > 0)");
  EXPECT_EQ(reason("lognormal:-1"), " (CV must be > 0)");
  EXPECT_EQ(reason("hot:0:0.5"), " (H must be >= 1)");
  EXPECT_EQ(reason("hot:3:1.5"), " (P must be in (0, 1))");
  EXPECT_EQ(reason("hot:3"), " (hot needs both H and P)");
  EXPECT_EQ(reason("hot:2.5:0.5"), " (H must be an integer)");
  EXPECT_EQ(reason("zipf:abc"), " (zipf needs a number S)");
  EXPECT_EQ(reason("gauss:1"), " (unknown distribution)");
}

TEST(ExpertPopularity, UniformIsOneOverE) {
  const std::vector<double> p = expert_popularity(parse_routing("uniform"), 7, 42);
  ASSERT_EQ(p.size(), 7u);
  for (const double x : p) EXPECT_DOUBLE_EQ(x, 1.0 / 7);
}

TEST(ExpertPopularity, ZipfWeightsArePowersOfTheRank) {
  // Sorted from most to least popular, expert r has weight (r + 1)^-S over the normalising sum.
  const double s = 1.5;
  const int num_experts = 32;
  std::vector<double> p = expert_popularity(parse_routing("zipf:1.5"), num_experts, 7);
  ASSERT_EQ(p.size(), static_cast<std::size_t>(num_experts));
  EXPECT_NEAR(std::accumulate(p.begin(), p.end(), 0.0), 1.0, 1e-12);
  std::sort(p.begin(), p.end(), std::greater<>());
  double harmonic = 0.0;
  for (int r = 1; r <= num_experts; ++r) harmonic += std::pow(r, -s);
  for (int r = 0; r < num_experts; ++r) EXPECT_NEAR(p[r], std::pow(r + 1, -s) / harmonic, 1e-15) << "rank " << r;
}

TEST(ExpertPopularity, PermutationFollowsTheSeed) {
  // The same seed gives the same placement; another seed moves the hot experts elsewhere.
  const RoutingSpec spec = parse_routing("zipf:1");
  const std::vector<double> a = expert_popularity(spec, 64, 1);
  EXPECT_EQ(a, expert_popularity(spec, 64, 1));
  EXPECT_NE(a, expert_popularity(spec, 64, 2));
  // The hottest expert is not pinned to index 0 for every seed.
  int num_seeds_with_hottest_at_zero = 0;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<double> p = expert_popularity(spec, 64, seed);
    num_seeds_with_hottest_at_zero += std::max_element(p.begin(), p.end()) == p.begin() ? 1 : 0;
  }
  EXPECT_LT(num_seeds_with_hottest_at_zero, 20);
}

TEST(ExpertPopularity, HugeExponentStaysFinite) {
  // Weights of the cold experts underflow to zero, but nothing becomes NaN and the sum stays 1.
  const std::vector<double> p = expert_popularity(parse_routing("zipf:1000"), 256, 3);
  double total = 0.0;
  for (const double x : p) {
    EXPECT_TRUE(std::isfinite(x));
    EXPECT_GE(x, 0.0);
    total += x;
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(ExpertPopularity, RejectsNoExperts) {
  EXPECT_THROW(expert_popularity(parse_routing("uniform"), 0, 1), std::invalid_argument);
}

// Sum to 1, every entry finite and >= 0.
void expect_distribution(const std::vector<double>& p, std::size_t size) {
  ASSERT_EQ(p.size(), size);
  double total = 0.0;
  for (const double x : p) {
    EXPECT_TRUE(std::isfinite(x));
    EXPECT_GE(x, 0.0);
    total += x;
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(ExpertPopularity, SeededDistributionsAreDistributionsThatFollowTheSeed) {
  // The same seed gives the same popularity, another seed another one; tiny A (weights near e^-1000) and large CV
  // must still normalise without NaN.
  for (const char* text : {"dirichlet:0.01", "dirichlet:0.3", "dirichlet:1", "dirichlet:50", "lognormal:0.1",
                           "lognormal:1", "lognormal:20"}) {
    SCOPED_TRACE(text);
    const RoutingSpec spec = parse_routing(text);
    const std::vector<double> p = expert_popularity(spec, 256, 5);
    expect_distribution(p, 256);
    EXPECT_EQ(p, expert_popularity(spec, 256, 5));
    EXPECT_NE(p, expert_popularity(spec, 256, 6));
  }
}

TEST(ExpertPopularity, SeededDistributionsDrawFromTheirOwnStreams) {
  // Dirichlet(1) weights are Exp(1) draws and log-normal weights exp(sigma Z): if the two shared a stream with each
  // other or with zipf's permutation, their orders would coincide. They do not, for any of a few seeds.
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    const std::vector<double> dirichlet = expert_popularity(parse_routing("dirichlet:1"), 64, seed);
    const std::vector<double> lognormal = expert_popularity(parse_routing("lognormal:1"), 64, seed);
    const std::vector<double> zipf = expert_popularity(parse_routing("zipf:1"), 64, seed);
    auto order = [](const std::vector<double>& p) {
      std::vector<int> idx(p.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(), [&](int a, int b) { return p[a] > p[b]; });
      return idx;
    };
    EXPECT_NE(order(dirichlet), order(lognormal));
    EXPECT_NE(order(dirichlet), order(zipf));
    EXPECT_NE(order(lognormal), order(zipf));
  }
}

TEST(ExpertPopularity, HotIsTheExpectedShare) {
  // hot:5:0.6 over 20 experts: the 5 hot experts (a seeded choice) expect 0.6 / 5 of the choices each, the 15
  // cold ones 0.4 / 15.
  const RoutingSpec spec = parse_routing("hot:5:0.6");
  const std::vector<int> hot = hot_experts(spec, 20, 3);
  ASSERT_EQ(hot.size(), 5u);
  EXPECT_TRUE(std::is_sorted(hot.begin(), hot.end()));
  EXPECT_EQ(std::adjacent_find(hot.begin(), hot.end()), hot.end());
  const std::vector<double> p = expert_popularity(spec, 20, 3);
  expect_distribution(p, 20);
  for (int e = 0; e < 20; ++e) {
    const bool is_hot = std::find(hot.begin(), hot.end(), e) != hot.end();
    EXPECT_DOUBLE_EQ(p[static_cast<std::size_t>(e)], is_hot ? 0.6 / 5 : 0.4 / 15) << "expert " << e;
  }
}

TEST(ExpertPopularity, HotSetFollowsTheSeed) {
  // The same seed picks the same hot set; over 20 seeds, the hot set is not always the same one.
  const RoutingSpec spec = parse_routing("hot:4:0.5");
  EXPECT_EQ(hot_experts(spec, 64, 1), hot_experts(spec, 64, 1));
  int num_same = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) num_same += hot_experts(spec, 64, seed) == hot_experts(spec, 64, 0);
  EXPECT_LT(num_same, 20);
}

TEST(ExpertPopularity, HotNeedsFewerHotThanExperts) {
  // H = E would leave no cold expert to take the other 1 - P of the choices.
  EXPECT_THROW(expert_popularity(parse_routing("hot:8:0.5"), 8, 1), std::invalid_argument);
  EXPECT_NO_THROW(expert_popularity(parse_routing("hot:7:0.5"), 8, 1));
  EXPECT_THROW(hot_experts(parse_routing("zipf:1"), 8, 1), std::invalid_argument);
}

TEST(ExpertPopularity, HandBuiltSpecsAreChecked) {
  // Specs that bypass parse_routing are checked where they are used.
  RoutingSpec spec;
  spec.kind = RoutingSpec::Kind::kDirichlet;
  EXPECT_THROW(expert_popularity(spec, 8, 1), std::invalid_argument);
  spec.kind = RoutingSpec::Kind::kLognormal;
  spec.lognormal_cv = -1.0;
  EXPECT_THROW(expert_popularity(spec, 8, 1), std::invalid_argument);
  spec.kind = RoutingSpec::Kind::kHot;
  spec.hot_experts = 2;
  spec.hot_share = 1.0;
  EXPECT_THROW(expert_popularity(spec, 8, 1), std::invalid_argument);
}

TEST(Variates, GammaIsPositiveAndFinite) {
  // Shapes far below 1 give variates like e^-300 and less: the log stays finite where the variate would flush to 0.
  Rng rng(1, 2);
  for (const double shape : {0.001, 0.3, 1.0, 4.0, 1000.0}) {
    for (int i = 0; i < 1000; ++i) EXPECT_TRUE(std::isfinite(log_gamma_variate(shape, rng))) << shape;
  }
  EXPECT_THROW(log_gamma_variate(0.0, rng), std::invalid_argument);
  EXPECT_THROW(log_gamma_variate(-1.0, rng), std::invalid_argument);
}

TEST(Variates, SameStreamSameVariates) {
  Rng a(7, 9);
  Rng b(7, 9);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(normal_variate(a), normal_variate(b));
    EXPECT_EQ(log_gamma_variate(0.5, a), log_gamma_variate(0.5, b));
  }
}

TEST(Drift, OffsetsAreARandomWalkWithVarianceSigmaSquaredPerStep) {
  // After s steps each offset is SIGMA times a sum of s standard normals: mean 0, variance SIGMA^2 s. Over E
  // experts the sample variance has standard error about var sqrt(2 / E); allow 5 of them.
  RoutingSpec spec;
  spec.drift = 0.1;
  const int num_experts = 4096;
  EXPECT_EQ(drift_offsets(spec, num_experts, 3, 0), std::vector<double>(num_experts, 0.0));
  for (const int step : {1, 4, 16}) {
    const std::vector<double> offset = drift_offsets(spec, num_experts, 3, step);
    double mean = 0.0;
    for (const double x : offset) mean += x;
    mean /= num_experts;
    double variance = 0.0;
    for (const double x : offset) variance += (x - mean) * (x - mean);
    variance /= num_experts - 1;
    const double expected = 0.01 * step;
    EXPECT_NEAR(variance, expected, 5 * expected * std::sqrt(2.0 / num_experts)) << "step " << step;
    EXPECT_NEAR(mean, 0.0, 5 * std::sqrt(expected / num_experts)) << "step " << step;
  }
  // Step s + 1 continues the walk of step s: their difference is one step's increment.
  const std::vector<double> a = drift_offsets(spec, 8, 3, 5);
  const std::vector<double> b = drift_offsets(spec, 8, 3, 6);
  const std::vector<double> c = drift_offsets(spec, 8, 3, 5);
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);
  spec.drift = -1.0;
  EXPECT_THROW(drift_offsets(spec, 8, 3, 1), std::invalid_argument);
}

TEST(LayerSeed, LayerZeroKeepsTheSeedAndOthersDiffer) {
  EXPECT_EQ(layer_seed(42, 0), 42u);
  EXPECT_NE(layer_seed(42, 1), 42u);
  EXPECT_NE(layer_seed(42, 1), layer_seed(42, 2));
  EXPECT_THROW(layer_seed(42, -1), std::invalid_argument);
}

TEST(RoutingSpec, DescribeNamesGroupsAndDrift) {
  RoutingSpec spec = parse_routing("zipf:1");
  spec.expert_groups = 8;
  spec.group_limit = 4;
  spec.drift = 0.05;
  EXPECT_EQ(spec.describe(), "zipf:1, groups 8 top-4, drift 0.05");
}

}  // namespace
}  // namespace moesim::workloads
