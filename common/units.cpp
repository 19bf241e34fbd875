#include "common/units.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <utility>

namespace moesim {
namespace {

struct Unit {
  std::string_view name;
  double scale;
};

// Splits "12.5 GB/s" into 12.5 and "GB/s"; throws if there is no leading number.
std::pair<double, std::string_view> split_quantity(std::string_view text, std::string_view what) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  double value = 0.0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data()) {
    throw std::invalid_argument("expected " + std::string(what) + ", got '" + std::string(text) + "'");
  }
  std::string_view unit(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  if (!std::isfinite(value) || value < 0.0) {
    throw std::invalid_argument("expected a finite, non-negative " + std::string(what) + ", got '" + std::string(text) +
                                "'");
  }
  return {value, unit};
}

template <std::size_t N>
double scaled(std::string_view text, std::string_view what, const std::array<Unit, N>& units) {
  const auto [value, unit] = split_quantity(text, what);
  for (const Unit& u : units) {
    if (unit == u.name) return value * u.scale;
  }
  std::string names;
  for (const Unit& u : units) names += (names.empty() ? "" : ", ") + std::string(u.name);
  throw std::invalid_argument("expected " + std::string(what) + " with a unit (one of " + names + "), got '" +
                              std::string(text) + "'");
}

}  // namespace

double parse_bandwidth(std::string_view text) {
  static constexpr std::array<Unit, 8> kUnits{{{"Mb/s", 1e6 / 8},
                                               {"Gb/s", 1e9 / 8},
                                               {"Tb/s", 1e12 / 8},
                                               {"kB/s", 1e3},
                                               {"MB/s", 1e6},
                                               {"GB/s", 1e9},
                                               {"TB/s", 1e12},
                                               {"B/s", 1.0}}};
  return scaled(text, "a bandwidth such as '400 Gb/s' or '450 GB/s'", kUnits);
}

TimePs parse_duration(std::string_view text) {
  static constexpr std::array<Unit, 5> kUnits{{{"ps", 1.0}, {"ns", 1e3}, {"us", 1e6}, {"ms", 1e9}, {"s", 1e12}}};
  const double ps = scaled(text, "a duration such as '1 us' or '500 ns'", kUnits);
  if (ps > 9.2e18) throw std::invalid_argument("duration '" + std::string(text) + "' is too long");
  return static_cast<TimePs>(std::llround(ps));
}

double parse_size(std::string_view text) {
  static constexpr std::array<Unit, 9> kUnits{{{"B", 1.0},
                                               {"kB", 1e3},
                                               {"MB", 1e6},
                                               {"GB", 1e9},
                                               {"TB", 1e12},
                                               {"KiB", 1024.0},
                                               {"MiB", 1048576.0},
                                               {"GiB", 1073741824.0},
                                               {"TiB", 1099511627776.0}}};
  return scaled(text, "a size such as '64 MiB' or '7168 B'", kUnits);
}

std::string format_time(TimePs t) {
  char buf[64];
  const double ps = static_cast<double>(t);
  if (std::abs(ps) >= 1e12) {
    std::snprintf(buf, sizeof buf, "%.3f s", ps / 1e12);
  } else if (std::abs(ps) >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.3f ms", ps / 1e9);
  } else if (std::abs(ps) >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.3f us", ps / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f ns", ps / 1e3);
  }
  return buf;
}

std::string format_bytes(double bytes) {
  static constexpr std::array<const char*, 5> kNames{"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t i = 0;
  while (i + 1 < kNames.size() && std::abs(bytes) >= 1024.0) {
    bytes /= 1024.0;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.2f %s", bytes, kNames[i]);
  return buf;
}

std::string format_bandwidth(double bytes_per_s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GB/s", bytes_per_s / 1e9);
  return buf;
}

std::string format_number(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace moesim
