#include "workloads/routing.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

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

TEST(ParseRouting, RejectsAnythingElse) {
  for (const char* text : {"zipf:-1", "zipf:0", "zipf:", "zipf:abc", "zipf:1.2x", "zipf:inf", "zipf:nan", "Uniform", "",
                           "zipf", "dirichlet:1"}) {
    try {
      parse_routing(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("routing: expected uniform or zipf:S with S > 0, got '") + text + "'");
    }
  }
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

}  // namespace
}  // namespace moesim::workloads
