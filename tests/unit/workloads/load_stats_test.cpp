#include "workloads/load_stats.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/rng.hpp"
#include "tests/test_support.hpp"

namespace moesim::workloads {
namespace {

using test::contains;
using test::error_of;

// The definition in load_stats.hpp, over all n^2 ordered pairs.
double gini_by_pairs(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  const double mean = std::accumulate(x.begin(), x.end(), 0.0) / n;
  double sum = 0.0;
  for (const double a : x) {
    for (const double b : x) sum += std::fabs(a - b);
  }
  return sum / (2.0 * n * n * mean);
}

// {0, 0, 0, 1}: total 1, mean 0.25, max/mean 4.
//   variance = (3 x 0.25^2 + 0.75^2) / 4 = (0.1875 + 0.5625) / 4 = 0.1875, sd = 0.433, cv = 0.433 / 0.25 = sqrt(3)
//   Gini: only the largest value has a non-zero term, (2 x 4 - 4 - 1) x 1 = 3, over n^2 mean = 16 x 0.25 = 4: 0.75,
//   which is the maximum 1 - 1/n for n = 4 (all the load on one entry).
TEST(LoadStats, OneHotVector) {
  const LoadStats stats = load_stats(std::vector<double>{0, 0, 0, 1});
  EXPECT_EQ(stats.count, 4);
  EXPECT_DOUBLE_EQ(stats.total, 1.0);
  EXPECT_DOUBLE_EQ(stats.mean, 0.25);
  EXPECT_DOUBLE_EQ(stats.min, 0.0);
  EXPECT_DOUBLE_EQ(stats.max, 1.0);
  EXPECT_DOUBLE_EQ(stats.max_over_mean, 4.0);
  EXPECT_DOUBLE_EQ(stats.cv, std::sqrt(3.0));
  EXPECT_DOUBLE_EQ(stats.gini, 0.75);
}

// {4, 1, 3, 2} (order does not matter): total 10, mean 2.5, max/mean 1.6.
//   deviations -1.5, -0.5, 0.5, 1.5; squares sum to 5; variance 1.25; cv = sqrt(1.25) / 2.5 = sqrt(0.2) = 0.447
//   Gini over sorted {1, 2, 3, 4}: (-3 x 1) + (-1 x 2) + (1 x 3) + (3 x 4) = 10, over n^2 mean = 16 x 2.5 = 40: 0.25.
//   Check by pairs: |differences| of the 6 unordered pairs are 1, 2, 3, 1, 2, 1 = 10; 2 x 10 / (2 x 16 x 2.5) = 0.25.
TEST(LoadStats, SmallVectorByHand) {
  const std::vector<double> loads = {4, 1, 3, 2};
  const LoadStats stats = load_stats(loads);
  EXPECT_EQ(stats.count, 4);
  EXPECT_DOUBLE_EQ(stats.total, 10.0);
  EXPECT_DOUBLE_EQ(stats.mean, 2.5);
  EXPECT_DOUBLE_EQ(stats.min, 1.0);
  EXPECT_DOUBLE_EQ(stats.max, 4.0);
  EXPECT_DOUBLE_EQ(stats.max_over_mean, 1.6);
  EXPECT_DOUBLE_EQ(stats.cv, std::sqrt(0.2));
  EXPECT_DOUBLE_EQ(stats.gini, 0.25);
  EXPECT_DOUBLE_EQ(gini_by_pairs(loads), 0.25);
}

// Odd n leaves the middle value out of the Gini sum. {0, 6, 0}: mean 2; deviations -2, 4, -2, squares 24,
// variance 8, cv = sqrt(8) / 2 = sqrt(2); Gini (3 - 1) x 6 / (9 x 2) = 2/3 = 1 - 1/3, the maximum for n = 3.
TEST(LoadStats, OddLength) {
  const LoadStats stats = load_stats(std::vector<double>{0, 6, 0});
  EXPECT_DOUBLE_EQ(stats.max_over_mean, 3.0);
  EXPECT_DOUBLE_EQ(stats.cv, std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(stats.gini, 2.0 / 3.0);
}

// Equal loads are perfectly balanced: Gini and CV exactly 0 (not a rounding residue), max/mean exactly 1.
TEST(LoadStats, EqualLoadsAreBalanced) {
  const LoadStats stats = load_stats(std::vector<double>(7, 0.1));
  EXPECT_EQ(stats.gini, 0.0);
  EXPECT_NEAR(stats.cv, 0.0, 1e-15);
  EXPECT_NEAR(stats.max_over_mean, 1.0, 1e-15);
  EXPECT_EQ(load_stats(std::vector<double>{3, 3, 3, 3}).cv, 0.0);
}

TEST(LoadStats, SingleEntry) {
  const LoadStats stats = load_stats(std::vector<double>{5});
  EXPECT_EQ(stats.count, 1);
  EXPECT_DOUBLE_EQ(stats.mean, 5.0);
  EXPECT_DOUBLE_EQ(stats.max_over_mean, 1.0);
  EXPECT_EQ(stats.cv, 0.0);
  EXPECT_EQ(stats.gini, 0.0);
}

// A zero mean makes every ratio undefined; the header defines them as 0.
TEST(LoadStats, AllZeroLoads) {
  const LoadStats stats = load_stats(std::vector<double>{0, 0, 0});
  EXPECT_EQ(stats.total, 0.0);
  EXPECT_EQ(stats.max_over_mean, 0.0);
  EXPECT_EQ(stats.cv, 0.0);
  EXPECT_EQ(stats.gini, 0.0);
}

// The sorted O(n log n) form against the O(n^2) definition on seeded random loads.
TEST(LoadStats, GiniMatchesPairwiseDefinition) {
  Rng rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<double> loads(1 + rng.below(40));
    for (double& x : loads) x = rng.uniform() * rng.uniform() * 100.0;
    EXPECT_NEAR(load_stats(loads).gini, gini_by_pairs(loads), 1e-12) << "trial " << trial;
  }
}

TEST(LoadStats, IntegerLoadsMatchDoubles) {
  const LoadStats a = load_stats(std::vector<std::int64_t>{4, 1, 3, 2});
  const LoadStats b = load_stats(std::vector<double>{4, 1, 3, 2});
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.total, b.total);
  EXPECT_EQ(a.max_over_mean, b.max_over_mean);
  EXPECT_EQ(a.cv, b.cv);
  EXPECT_EQ(a.gini, b.gini);
}

TEST(LoadStats, RejectsBadInput) {
  EXPECT_TRUE(contains(error_of([] { load_stats(std::vector<double>{}); }), "expected at least one entry"));
  EXPECT_TRUE(contains(error_of([] { load_stats(std::vector<std::int64_t>{}); }), "expected at least one entry"));
  EXPECT_TRUE(contains(error_of([] {
                         load_stats(std::vector<double>{1, -0.5});
                       }),
                       "loads[1]: must be finite and >= 0, got -0.5"));
  EXPECT_TRUE(contains(error_of([] { load_stats(std::vector<double>{NAN}); }), "loads[0]"));
  EXPECT_TRUE(contains(error_of([] { load_stats(std::vector<double>{1, INFINITY}); }), "got inf"));
  EXPECT_TRUE(contains(error_of([] {
                         load_stats(std::vector<std::int64_t>{2, 0, -3});
                       }),
                       "loads[2]: must be >= 0, got -3"));
}

// {0, 1, 2, 3, 4, 5, 9.99, 10} in 5 bins over [0, 10]: width 2, bins [0, 2) [2, 4) [4, 6) [6, 8) [8, 10].
//   0, 1 -> bin 0;  2, 3 -> bin 1;  4, 5 -> bin 2;  none in bin 3;  9.99 and the maximum 10 (last bin closed) -> 4.
TEST(LoadStatsHistogram, BinsByHand) {
  const Histogram hist = load_histogram({0, 1, 2, 3, 4, 5, 9.99, 10}, 5);
  EXPECT_DOUBLE_EQ(hist.bin_width, 2.0);
  EXPECT_EQ(hist.counts, (std::vector<std::int64_t>{2, 2, 2, 0, 2}));
}

// All zero: the width is defined as 1 and everything lands in bin 0.
TEST(LoadStatsHistogram, AllZeroLoads) {
  const Histogram hist = load_histogram({0, 0}, 3);
  EXPECT_EQ(hist.bin_width, 1.0);
  EXPECT_EQ(hist.counts, (std::vector<std::int64_t>{2, 0, 0}));
}

TEST(LoadStatsHistogram, OneBinTakesEverything) {
  const Histogram hist = load_histogram({0.5, 3, 7}, 1);
  EXPECT_DOUBLE_EQ(hist.bin_width, 7.0);
  EXPECT_EQ(hist.counts, (std::vector<std::int64_t>{3}));
}

// Values on bin edges that are not exact in binary (multiples of 0.1): each lands in the bin i with
// i w <= x < (i + 1) w as the products are computed, the last bin closed, whatever x / w rounds to.
TEST(LoadStatsHistogram, EdgesFollowTheDefinition) {
  Rng rng(5);
  for (int trial = 0; trial < 100; ++trial) {
    const int num_bins = 1 + static_cast<int>(rng.below(12));
    std::vector<double> loads(1 + rng.below(30));
    for (double& x : loads) x = static_cast<double>(rng.below(50)) * 0.1;
    const Histogram hist = load_histogram(loads, num_bins);
    ASSERT_EQ(static_cast<int>(hist.counts.size()), num_bins);
    std::vector<std::int64_t> expected(num_bins, 0);
    for (const double x : loads) {
      for (int i = 0; i < num_bins; ++i) {
        const bool last = i == num_bins - 1;
        if (i * hist.bin_width <= x && (last || x < (i + 1) * hist.bin_width)) {
          ++expected[i];
          break;
        }
      }
    }
    EXPECT_EQ(hist.counts, expected) << "trial " << trial;
  }
}

TEST(LoadStatsHistogram, RejectsBadInput) {
  EXPECT_TRUE(contains(error_of([] { load_histogram({1, 2}, 0); }), "num_bins: must be >= 1, got 0"));
  EXPECT_TRUE(contains(error_of([] { load_histogram({}, 4); }), "expected at least one entry"));
  EXPECT_TRUE(contains(error_of([] { load_histogram({1, -1}, 4); }), "loads[1]"));
}

}  // namespace
}  // namespace moesim::workloads
