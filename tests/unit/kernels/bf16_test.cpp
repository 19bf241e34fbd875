// BF16 conversion: round to nearest, ties to even, NaN and infinities kept, and the FP64 path rounding only once.
#include "kernels/bf16.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace moesim::kernels {
namespace {

float from_bits(std::uint32_t bits) {
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::uint16_t bits_of(float value) {
  return to_bf16(value).bits;
}

TEST(Bf16, KeepsValuesThatFitExactly) {
  EXPECT_EQ(bits_of(1.0f), 0x3f80);
  EXPECT_EQ(bits_of(-2.0f), 0xc000);
  EXPECT_EQ(bits_of(0.0f), 0x0000);
  EXPECT_EQ(bits_of(-0.0f), 0x8000);
  EXPECT_EQ(to_float(Bf16{0x3fc0}), 1.5f);
}

TEST(Bf16, RoundsToNearestWithTiesToEven) {
  // 1 + 2^-8 lies halfway between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81, odd): the even one wins.
  EXPECT_EQ(bits_of(from_bits(0x3f808000)), 0x3f80);
  // Halfway between 0x3f81 (odd) and 0x3f82 (even): rounds up to the even one.
  EXPECT_EQ(bits_of(from_bits(0x3f818000)), 0x3f82);
  // Off the tie, plain nearest.
  EXPECT_EQ(bits_of(from_bits(0x3f808001)), 0x3f81);
  EXPECT_EQ(bits_of(from_bits(0x3f807fff)), 0x3f80);
  EXPECT_EQ(bits_of(from_bits(0xbf808001)), 0xbf81);  // symmetric for negatives
  // Subnormals follow the same rule.
  EXPECT_EQ(bits_of(from_bits(0x00008000)), 0x0000);
  EXPECT_EQ(bits_of(from_bits(0x00018000)), 0x0002);
}

TEST(Bf16, KeepsNanAndInfinity) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bits_of(inf), 0x7f80);
  EXPECT_EQ(bits_of(-inf), 0xff80);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the dropped half would become infinity if truncated: it must stay NaN.
  const float low_payload_nan = from_bits(0x7f800001);
  ASSERT_TRUE(std::isnan(low_payload_nan));
  EXPECT_TRUE(std::isnan(to_float(to_bf16(low_payload_nan))));
  EXPECT_EQ(bits_of(from_bits(0xff800001)) & 0x8000, 0x8000);  // sign kept
}

TEST(Bf16, RoundsPastTheLargestFiniteToInfinity) {
  EXPECT_EQ(bits_of(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(bits_of(from_bits(0x7f7f7fff)), 0x7f7f);  // below the tie: the largest finite BF16
  EXPECT_EQ(bits_of(from_bits(0x7f7f8000)), 0x7f80);  // the tie, 0x7f7f odd: up, to infinity
}

TEST(Bf16, FromDoubleAgreesWithFloatOnFloats) {
  std::uint32_t state = 12345;
  for (int i = 0; i < 100000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float f = from_bits(state);
    if (std::isnan(f)) continue;
    ASSERT_EQ(bf16_from_double(f).bits, to_bf16(f).bits) << "bits 0x" << std::hex << state;
  }
}

TEST(Bf16, FromDoubleRoundsOnce) {
  // Just above the tie between 1 and 1 + 2^-7. Through float the 2^-30 is lost first, leaving an exact tie that
  // goes to even (down): rounding twice gives the wrong answer; rounding once goes up.
  const double above_tie = 1.0 + 0x1p-8 + 0x1p-30;
  EXPECT_EQ(to_bf16(static_cast<float>(above_tie)).bits, 0x3f80);
  EXPECT_EQ(bf16_from_double(above_tie).bits, 0x3f81);
  EXPECT_EQ(bf16_from_double(-above_tie).bits, 0xbf81);
}

TEST(Bf16, FromDoubleEdges) {
  EXPECT_EQ(bf16_from_double(1e39).bits, 0x7f80);  // beyond float: infinity
  EXPECT_EQ(bf16_from_double(-1e39).bits, 0xff80);
  EXPECT_TRUE(std::isnan(to_float(bf16_from_double(std::nan("")))));
  EXPECT_EQ(bf16_from_double(1e-50).bits, 0x0000);  // far below the smallest subnormal: zero
  EXPECT_EQ(bf16_from_double(-0.0).bits, 0x8000);
  EXPECT_EQ(bf16_from_double(0x1p-133).bits, 0x0001);  // the smallest BF16 subnormal
}

}  // namespace
}  // namespace moesim::kernels
