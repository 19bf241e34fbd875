#include "workloads/capacity.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace moesim::workloads {
namespace {

using test::error_of;

constexpr CapacityPolicy kAllPolicies[] = {CapacityPolicy::kDropless, CapacityPolicy::kDropPosition,
                                           CapacityPolicy::kDropScore, CapacityPolicy::kReroute,
                                           CapacityPolicy::kPadded};

TEST(CapacityPolicy, NamesRoundTrip) {
  EXPECT_STREQ(capacity_policy_name(CapacityPolicy::kDropless), "dropless");
  EXPECT_STREQ(capacity_policy_name(CapacityPolicy::kDropPosition), "drop-position");
  EXPECT_STREQ(capacity_policy_name(CapacityPolicy::kDropScore), "drop-score");
  EXPECT_STREQ(capacity_policy_name(CapacityPolicy::kReroute), "reroute");
  EXPECT_STREQ(capacity_policy_name(CapacityPolicy::kPadded), "padded");
  for (CapacityPolicy policy : kAllPolicies) EXPECT_EQ(parse_capacity_policy(capacity_policy_name(policy)), policy);
}

TEST(CapacityPolicy, UnknownNameListsTheFive) {
  for (const std::string bad : {"drop", "Dropless", "", "padded "}) {
    const std::string message = error_of([&] { parse_capacity_policy(bad); });
    EXPECT_NE(message.find("'" + bad + "'"), std::string::npos) << message;
    for (CapacityPolicy policy : kAllPolicies) {
      EXPECT_NE(message.find(capacity_policy_name(policy)), std::string::npos) << message;
    }
  }
}

TEST(CapacitySpec, DefaultIsDropless) {
  const CapacitySpec spec;
  EXPECT_TRUE(spec.is_dropless());
  EXPECT_FALSE((CapacitySpec{CapacityPolicy::kPadded, 1.25, 0}).is_dropless());
}

TEST(Capacity, WorkedExamples) {
  // 4096 tokens x top-8 over 256 experts is 128 copies per expert on average.
  // x 1.25 = 160 exactly (125/100 x 128 = 16000/100).
  EXPECT_EQ(expert_capacity(4096, 8, 256, 1.25, 0), 160);
  // x 1.1 = 140.8, rounded up to 141.
  EXPECT_EQ(expert_capacity(4096, 8, 256, 1.1, 0), 141);
  // x 1.0 = 128: no slack at all.
  EXPECT_EQ(expert_capacity(4096, 8, 256, 1.0, 0), 128);
  // x 2.0 = 256.
  EXPECT_EQ(expert_capacity(4096, 8, 256, 2.0, 0), 256);
  // A fraction of a copy still needs a slot: 1 x 1 / 256 x 1.0 = 0.0039 -> 1.
  EXPECT_EQ(expert_capacity(1, 1, 256, 1.0, 0), 1);
  // Factors below 1 shrink the capacity: 128 x 0.5 = 64.
  EXPECT_EQ(expert_capacity(4096, 8, 256, 0.5, 0), 64);
}

TEST(Capacity, DecimalFactorIsExactWhereDoubleIsNot) {
  // In double, 100 x 1.1 is 110.00000000000001 and a naive ceil gives 111. The factor is read as 1.1 = 11/10, so
  // 100 x 1 / 1 x 11/10 = 110 exactly.
  ASSERT_GT(100.0 * 1.1, 110.0);  // the trap this test is about
  EXPECT_EQ(expert_capacity(100, 1, 1, 1.1, 0), 110);
  // With a division: 100 x 1 / 2 = 50, x 1.12 = 56 exactly; double gives 56.00000000000001 -> 57.
  ASSERT_GT(100.0 * 1 / 2 * 1.12, 56.0);
  EXPECT_EQ(expert_capacity(100, 1, 2, 1.12, 0), 56);
  // And where double happens to be right, so are we: 10 x 0.7 = 7.
  EXPECT_EQ(expert_capacity(10, 1, 1, 0.7, 0), 7);
}

TEST(Capacity, FactorWithMoreThanNineDecimalsIsRoundedToNine) {
  // 1.0000000001 is 1.000000000 to 9 decimals (within 1e-6 relative), so 128 x F counts as 128, not 128.0000000128
  // rounded up to 129.
  EXPECT_EQ(expert_capacity(4096, 8, 256, 1.0000000001, 0), 128);
}

TEST(Capacity, MinCapacityWins) {
  // 16 tokens x top-2 / 64 experts x 1.0 = 0.5 -> 1, below min_capacity 4.
  EXPECT_EQ(expert_capacity(16, 2, 64, 1.0, 4), 4);
  // 4096 x 8 / 256 x 1.25 = 160 is above min_capacity 100, so 160; at 200 the minimum wins.
  EXPECT_EQ(expert_capacity(4096, 8, 256, 1.25, 100), 160);
  EXPECT_EQ(expert_capacity(4096, 8, 256, 1.25, 200), 200);
}

TEST(Capacity, ZeroTokensGiveTheMinimum) {
  // ceil(0 x k / E x F) = 0, so C = max(min_capacity, 0).
  EXPECT_EQ(expert_capacity(0, 8, 256, 1.25, 0), 0);
  EXPECT_EQ(expert_capacity(0, 8, 256, 1.25, 3), 3);
}

TEST(Capacity, LargeTokenCountsStayExact) {
  // 2^62 x 8 / 256 = 2^57; x 1.25 = 2^57 + 2^55 = 180143985094819840, far beyond double's 2^53 of exact integers.
  const std::int64_t tokens = std::int64_t{1} << 62;
  EXPECT_EQ(expert_capacity(tokens, 8, 256, 1.25, 0), (std::int64_t{1} << 57) + (std::int64_t{1} << 55));
  // (2^62 + 1) x 8 / 256 = 2^57 + 1/32; x 1.0 rounds up to 2^57 + 1.
  EXPECT_EQ(expert_capacity(tokens + 1, 8, 256, 1.0, 0), (std::int64_t{1} << 57) + 1);
  // The largest token count with top-1 on one expert: exactly int64 max.
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ(expert_capacity(max, 1, 1, 1.0, 0), max);
}

TEST(Capacity, FactorsOutsideTheDecimalWindowFallBack) {
  // 1e-12 has no 9-decimal form (10^9 x 1e-12 = 0.001), so long double is used: 1000 x 1e-12 = 1e-9 -> 1.
  EXPECT_EQ(expert_capacity(1000, 1, 1, 1e-12, 0), 1);
  // 1e12 x 10^9 does not fit an int64 numerator; 3 x 1e12 is exact in long double.
  EXPECT_EQ(expert_capacity(3, 1, 1, 1e12, 0), 3'000'000'000'000);
}

TEST(Capacity, OverflowIsAnError) {
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  EXPECT_NE(error_of([&] { expert_capacity(max, 8, 1, 1.0, 0); }).find("does not fit an int64"), std::string::npos);
  EXPECT_NE(error_of([&] { expert_capacity(max, 1, 1, 1.5, 0); }).find("does not fit an int64"), std::string::npos);
  EXPECT_NE(error_of([&] { expert_capacity(max, 1, 1, 1e12, 0); }).find("does not fit an int64"), std::string::npos);
}

TEST(Capacity, InvalidArgumentsNameTheArgument) {
  EXPECT_EQ(error_of([] { expert_capacity(-1, 8, 256, 1.0, 0); }), "tokens: must be >= 0, got -1");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 0, 256, 1.0, 0); }), "num_topk: must be >= 1, got 0");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 8, 0, 1.0, 0); }), "num_experts: must be >= 1, got 0");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 8, 256, 0.0, 0); }), "capacity factor: must be finite and > 0, got 0");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 8, 256, -1.25, 0); }),
            "capacity factor: must be finite and > 0, got -1.25");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 8, 256, std::nan(""), 0); }),
            "capacity factor: must be finite and > 0, got nan");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 8, 256, std::numeric_limits<double>::infinity(), 0); }),
            "capacity factor: must be finite and > 0, got inf");
  EXPECT_EQ(error_of([] { expert_capacity(4096, 8, 256, 1.0, -2); }), "min_capacity: must be >= 0, got -2");
}

}  // namespace
}  // namespace moesim::workloads
