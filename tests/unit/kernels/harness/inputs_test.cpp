// Sampled routings: distinct experts per token, the skews doing what they say, reproducible from the seed.
#include "kernels/harness/inputs.hpp"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "tests/test_support.hpp"

namespace moesim::kernels::harness {
namespace {

std::vector<int> load(const Routing& r, int experts) {
  std::vector<int> n(static_cast<std::size_t>(experts), 0);
  for (auto e : r.expert) ++n[static_cast<std::size_t>(e)];
  return n;
}

TEST(SampleRouting, DistinctExpertsInRange) {
  Rng rng(1, "distinct");
  const Routing r = sample_routing(200, 9, 4, Skew{Skew::Kind::kZipf, 1.5}, false, rng);
  ASSERT_EQ(r.expert.size(), 800u);
  for (int t = 0; t < 200; ++t) {
    std::set<int> seen;
    for (int j = 0; j < 4; ++j) {
      const int e = r.expert[static_cast<std::size_t>(t * 4 + j)];
      EXPECT_TRUE(e >= 0 && e < 9);
      EXPECT_TRUE(seen.insert(e).second) << "token " << t << " picks expert " << e << " twice";
    }
  }
  for (float w : r.weight) EXPECT_TRUE(w > 0 && w <= 1);
}

TEST(SampleRouting, SkewsShapeTheLoad) {
  Rng rng(2, "skews");
  const auto one = load(sample_routing(100, 6, 1, Skew{Skew::Kind::kAllToOne, 0}, false, rng), 6);
  EXPECT_EQ(one[0], 100) << "every token to expert 0";
  const auto empty = load(sample_routing(500, 6, 2, Skew{Skew::Kind::kOneEmpty, 0}, false, rng), 6);
  EXPECT_EQ(empty[5], 0) << "the last expert receives nothing";
  EXPECT_GT(empty[0], 0);
  const auto zipf = load(sample_routing(2000, 8, 1, Skew{Skew::Kind::kZipf, 2.0}, false, rng), 8);
  EXPECT_GT(zipf[0], 4 * zipf[7]) << "Zipf 2: expert 0 is 64x as popular as expert 7";
  EXPECT_THROW(sample_routing(4, 3, 3, Skew{Skew::Kind::kOneEmpty, 0}, false, rng), std::invalid_argument);
}

TEST(SampleRouting, QuantisedWeightsTie) {
  Rng rng(3, "quantised");
  for (float w : sample_routing(50, 4, 2, Skew{}, true, rng).weight) EXPECT_TRUE(w == 0.25f || w == 0.5f || w == 0.75f);
}

TEST(SampleRouting, SameSeedSameRouting) {
  Rng a(4, "same");
  Rng b(4, "same");
  Rng c(4, "other");
  const Routing ra = sample_routing(64, 16, 2, Skew{}, false, a);
  EXPECT_EQ(ra.expert, sample_routing(64, 16, 2, Skew{}, false, b).expert);
  EXPECT_NE(ra.expert, sample_routing(64, 16, 2, Skew{}, false, c).expert);
}

TEST(Skew, NamesParseBack) {
  for (const std::string name : {"uniform", "zipf:1.5", "all_to_one", "one_empty"})
    EXPECT_EQ(parse_skew(name).name(), name);
  EXPECT_TRUE(test::contains(test::error_of([] { parse_skew("zipf:-1"); }), "skew: expected uniform, zipf:ALPHA"));
  EXPECT_THROW(parse_skew("zipf:1x"), std::invalid_argument);
  EXPECT_THROW(parse_skew("hot"), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::kernels::harness
