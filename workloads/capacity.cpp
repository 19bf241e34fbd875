// Expert capacity: the policy names and C = max(min_capacity, ceil(T x k / E x F)).
//
// Why exact arithmetic: capacity factors are typed as decimals (1.1, 1.25) and the product T x k / E x F is often an
// integer in decimal that double arithmetic lands just above (100 x 1.1 is 110.00000000000001 in double), and the
// ceil then adds a whole slot per (rank, expert). So the factor is read as the decimal the user meant, F = s / 10^9
// with s = round(F x 10^9), whenever that decimal is within 1e-6 relative of the double (every factor from about
// 5e-4 up to 9e9 is; a factor with more than 9 decimals is thereby rounded to 9), and
//   C = ceil(T k s / (E 10^9))
// is computed in unsigned __int128. T k < 2^94 always fits; T k s may not (s < 2^63), so the quotient is split as
// q = T k = a D + b with D = E 10^9 < 2^61: ceil(q s / D) = a s + ceil(b s / D), where b s < 2^124 fits and a s is
// checked against the int64 range. Factors outside that window (tiny ones, whose 9-decimal rounding would be off by
// more than 1e-6, and huge ones) fall back to long double, whose 64-bit mantissa holds T x k exactly up to 2^64.
#include "workloads/capacity.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "common/units.hpp"

namespace moesim::workloads {
namespace {

// __extension__: -Wpedantic otherwise warns that __int128 is not ISO C++ (GCC and Clang both have it).
__extension__ typedef unsigned __int128 u128;

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();
constexpr double kDecimalScale = 1e9;
constexpr double kDecimalTolerance = 1e-6;  // relative
// s = round(F x 10^9) must fit an int64; 9e18 leaves room below 2^63 ~ 9.22e18 for the rounding.
constexpr double kMaxScaledFactor = 9e18;

constexpr CapacityPolicy kPolicies[] = {CapacityPolicy::kDropless, CapacityPolicy::kDropPosition,
                                        CapacityPolicy::kDropScore, CapacityPolicy::kReroute, CapacityPolicy::kPadded};

[[noreturn]] void overflow(std::int64_t tokens, int num_topk, int num_experts, double factor) {
  throw std::invalid_argument("expert capacity: ceil(" + std::to_string(tokens) + " x " + std::to_string(num_topk) +
                              " / " + std::to_string(num_experts) + " x " + format_number(factor) +
                              ") does not fit an int64");
}

// The factor as s / 10^9, or 0 when it is not close enough to a 9-decimal number (or too large) to be read so.
std::int64_t decimal_numerator(double factor) {
  const double scaled = factor * kDecimalScale;
  if (!(scaled < kMaxScaledFactor)) return 0;
  const std::int64_t s = std::llround(scaled);
  if (s < 1 || std::fabs(scaled - static_cast<double>(s)) > kDecimalTolerance * scaled) return 0;
  return s;
}

}  // namespace

const char* capacity_policy_name(CapacityPolicy policy) {
  switch (policy) {
    case CapacityPolicy::kDropless:
      return "dropless";
    case CapacityPolicy::kDropPosition:
      return "drop-position";
    case CapacityPolicy::kDropScore:
      return "drop-score";
    case CapacityPolicy::kReroute:
      return "reroute";
    case CapacityPolicy::kPadded:
      return "padded";
  }
  return "unknown";
}

CapacityPolicy parse_capacity_policy(const std::string& name) {
  std::string names;
  for (CapacityPolicy policy : kPolicies) {
    if (name == capacity_policy_name(policy)) return policy;
    names += (names.empty() ? "" : ", ") + std::string(capacity_policy_name(policy));
  }
  throw std::invalid_argument("capacity policy: expected one of " + names + "; got '" + name + "'");
}

std::int64_t expert_capacity(std::int64_t tokens, int num_topk, int num_experts, double factor,
                             std::int64_t min_capacity) {
  if (tokens < 0) throw std::invalid_argument("tokens: must be >= 0, got " + std::to_string(tokens));
  if (num_topk < 1) throw std::invalid_argument("num_topk: must be >= 1, got " + std::to_string(num_topk));
  if (num_experts < 1) throw std::invalid_argument("num_experts: must be >= 1, got " + std::to_string(num_experts));
  if (!std::isfinite(factor) || factor <= 0.0) {
    throw std::invalid_argument("capacity factor: must be finite and > 0, got " + format_number(factor));
  }
  if (min_capacity < 0) {
    throw std::invalid_argument("min_capacity: must be >= 0, got " + std::to_string(min_capacity));
  }

  std::int64_t capacity = 0;
  if (const std::int64_t s = decimal_numerator(factor); s > 0) {
    const u128 q = static_cast<u128>(tokens) * static_cast<u128>(num_topk);
    const u128 d = static_cast<u128>(num_experts) * static_cast<u128>(1'000'000'000);
    const u128 a = q / d;
    const u128 b = q % d;
    const auto s128 = static_cast<u128>(s);
    if (a > static_cast<u128>(kMaxInt64) / s128) overflow(tokens, num_topk, num_experts, factor);
    const u128 exact = a * s128 + (b * s128 + d - 1) / d;
    if (exact > static_cast<u128>(kMaxInt64)) overflow(tokens, num_topk, num_experts, factor);
    capacity = static_cast<std::int64_t>(exact);
  } else {
    const long double product = static_cast<long double>(tokens) * static_cast<long double>(num_topk) /
                                static_cast<long double>(num_experts) * static_cast<long double>(factor);
    const long double rounded_up = std::ceil(product);
    // 2^63 is exact in long double; anything at or above it does not fit.
    if (!(rounded_up < static_cast<long double>(kMaxInt64) + 1.0L)) overflow(tokens, num_topk, num_experts, factor);
    capacity = static_cast<std::int64_t>(rounded_up);
  }
  return capacity > min_capacity ? capacity : min_capacity;
}

}  // namespace moesim::workloads
