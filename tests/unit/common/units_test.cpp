#include "common/units.hpp"

#include <stdexcept>

#include <gtest/gtest.h>

namespace moesim {
namespace {

TEST(Units, ParsesBandwidthsInBitsAndBytes) {
  // 400 Gb/s is 400e9 / 8 = 50e9 bytes per second; 450 GB/s is 450e9.
  EXPECT_DOUBLE_EQ(parse_bandwidth("400 Gb/s"), 50e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth("450 GB/s"), 450e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth("3.35TB/s"), 3.35e12);
  EXPECT_THROW(parse_bandwidth("400"), std::invalid_argument);
  EXPECT_THROW(parse_bandwidth("400 Gbps"), std::invalid_argument);
  EXPECT_THROW(parse_bandwidth("-1 GB/s"), std::invalid_argument);
}

TEST(Units, ParsesDurationsToPicoseconds) {
  EXPECT_EQ(parse_duration("1 us"), 1'000'000);
  EXPECT_EQ(parse_duration("150 ns"), 150'000);
  EXPECT_EQ(parse_duration("2.5 ms"), 2'500'000'000);
  EXPECT_THROW(parse_duration("1"), std::invalid_argument);
}

TEST(Units, ParsesSizesWithDecimalAndBinaryPrefixes) {
  EXPECT_DOUBLE_EQ(parse_size("64 MiB"), 64.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(parse_size("80 GB"), 80e9);
  EXPECT_DOUBLE_EQ(parse_size("7168 B"), 7168.0);
  EXPECT_THROW(parse_size("lots"), std::invalid_argument);
}

TEST(Units, ConvertsTimes) {
  EXPECT_EQ(time_from_us(1.5), 1'500'000);
  EXPECT_DOUBLE_EQ(seconds_from_time(kPsPerS / 4), 0.25);
  EXPECT_EQ(format_time(time_from_us(12.5)), "12.500 us");
}

}  // namespace
}  // namespace moesim
