// The judgement of one output: one BF16 ulp passes, a real error fails, NaN (the poison) fails, an all-zero output
// fails where the reference is not zero, and exact comparisons count every differing element.
#include "kernels/harness/compare.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace moesim::kernels::harness {
namespace {

TEST(Compare, OneBf16UlpPassesAFewPercentFails) {
  const std::vector<double> ref = {1.0, -0.5, 0.25};
  std::vector<Bf16> got = {to_bf16(1.0f + 0x1p-7f), to_bf16(-0.5f), to_bf16(0.25f)};
  const Comparison ok = compare_bf16("y", got, ref);
  EXPECT_TRUE(ok.passed());
  EXPECT_DOUBLE_EQ(ok.error, 0x1p-7);
  got[1] = to_bf16(-0.53f);
  const Comparison bad = compare_bf16("y", got, ref);
  EXPECT_FALSE(bad.passed());
  EXPECT_EQ(bad.mismatches, 1);
  EXPECT_NE(bad.first_bad.find("[1]"), std::string::npos);
}

TEST(Compare, TheReferenceIsRoundedToTheOutputType) {
  // 1 + 2^-9 rounds to 1 in BF16: an output of exactly 1 has no error at all.
  EXPECT_EQ(compare_bf16("y", {to_bf16(1.0f)}, {1.0 + 0x1p-9}).error, 0.0);
  EXPECT_EQ(compare_fp32("s", {1.0f}, {1.0 + 0x1p-30}).error, 0.0);
}

TEST(Compare, PoisonFails) {
  const Comparison c = compare_fp32("scores", {0.5f, NAN}, {0.5, 0.5});
  EXPECT_FALSE(c.passed());
  EXPECT_TRUE(std::isinf(c.error));
}

TEST(Compare, AllZeroOutputFailsTheNonZeroCheck) {
  Comparison c = compare_bf16("out", {to_bf16(0.0f), to_bf16(0.0f)}, {0.0, 1e-3});
  EXPECT_TRUE(c.is_nonzero_required);
  EXPECT_FALSE(c.is_nonzero);
  EXPECT_FALSE(c.passed());
  c = compare_bf16("out", {to_bf16(0.0f)}, {0.0});
  EXPECT_FALSE(c.is_nonzero_required) << "nothing to check when the reference is zero too";
  EXPECT_TRUE(c.passed());
  EXPECT_TRUE(compare_bf16("out", {}, {}).passed());
}

TEST(Compare, ExactCountsEveryDifference) {
  const Comparison c =
      compare_exact("row_of_copy", std::vector<std::int32_t>{0, 5, -1, 3}, std::vector<std::int32_t>{0, 4, -1, 2});
  EXPECT_TRUE(c.is_exact);
  EXPECT_EQ(c.mismatches, 2);
  EXPECT_EQ(c.first_bad, "[1]: 5 vs 4");
  EXPECT_FALSE(c.passed());
  EXPECT_FALSE(compare_exact("x", std::vector<std::int32_t>{1}, std::vector<std::int32_t>{1, 2}).passed());
  const Comparison rows = compare_exact("permuted", std::vector<Bf16>{Bf16{0}}, std::vector<Bf16>{Bf16{0}});
  EXPECT_TRUE(rows.passed()) << "zeros moved are zeros";
}

}  // namespace
}  // namespace moesim::kernels::harness
