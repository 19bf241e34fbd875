// Units: simulated time is an integer count of picoseconds; sizes are bytes; bandwidths are bytes per second.
//
// Every physical quantity in a config file carries its unit ("400 Gb/s", "450 GB/s", "1 us", "64 MiB"), so a
// number can never be read in the wrong unit. These helpers parse and format them, and convert between the
// integer time base and seconds. Decimal prefixes (k, M, G, T) are powers of 1000; binary ones (KiB, MiB,
// GiB, TiB) powers of 1024. "b" is a bit, "B" a byte.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace moesim {

using TimePs = std::int64_t;  // simulated time, picoseconds

inline constexpr TimePs kPsPerNs = 1'000;
inline constexpr TimePs kPsPerUs = 1'000'000;
inline constexpr TimePs kPsPerMs = 1'000'000'000;
inline constexpr TimePs kPsPerS = 1'000'000'000'000;

inline TimePs time_from_ns(double ns) {
  return std::llround(ns * static_cast<double>(kPsPerNs));
}
inline TimePs time_from_us(double us) {
  return std::llround(us * static_cast<double>(kPsPerUs));
}
constexpr double seconds_from_time(TimePs t) {
  return static_cast<double>(t) / static_cast<double>(kPsPerS);
}
constexpr double us_from_time(TimePs t) {
  return static_cast<double>(t) / static_cast<double>(kPsPerUs);
}

constexpr double bytes_per_s_from_gbps(double gigabits_per_s) {
  return gigabits_per_s * 1e9 / 8.0;
}
constexpr double bytes_per_s_from_GBps(double gigabytes_per_s) {
  return gigabytes_per_s * 1e9;
}

// Parsers throw std::invalid_argument with a message that says what was expected; callers prefix the
// file and key. Each accepts optional whitespace between the number and the unit.
double parse_bandwidth(std::string_view text);  // "400 Gb/s", "450 GB/s", "1.6 Tb/s", "3.35 TB/s" -> bytes/s
TimePs parse_duration(std::string_view text);   // "1 us", "500 ns", "2.5 ms", "0 s" -> picoseconds
double parse_size(std::string_view text);       // "64 MiB", "7168 B", "1.5 GB", "80 GiB" -> bytes

std::string format_time(TimePs t);                 // "12.345 us", "1.234 ms"
std::string format_bytes(double bytes);            // "64.0 MiB"
std::string format_bandwidth(double bytes_per_s);  // "45.6 GB/s"
// The shortest text that reads back as the same double ("0.1", "1e-300"), locale-independent: for messages that
// quote a value.
std::string format_number(double value);

}  // namespace moesim
