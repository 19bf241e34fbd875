#include "kernels/bf16.hpp"

#include <algorithm>
#include <cmath>

namespace moesim::kernels {

Bf16 bf16_from_double(double value) {
  // Zero, infinities and NaN convert exactly through float (sign kept, NaN quietened).
  if (value == 0 || !std::isfinite(value)) return to_bf16(static_cast<float>(value));
  int exponent = 0;
  std::frexp(value, &exponent);  // |value| in [2^(exponent-1), 2^exponent)
  // BF16 keeps 8 significant bits; below 2^-126 the spacing stays that of the smallest normal (subnormals).
  const int lead = std::max(exponent - 1, -126);
  const double quantum = std::ldexp(1.0, lead - 7);
  // value / quantum is exact (a power-of-two scaling); nearbyint rounds ties to even in the default mode.
  const double rounded = std::nearbyint(value / quantum) * quantum;
  if (std::fabs(rounded) >= 0x1p128) return Bf16{static_cast<std::uint16_t>(value < 0 ? 0xff80U : 0x7f80U)};
  return to_bf16(static_cast<float>(rounded));  // exact: at most 8 significant bits
}

}  // namespace moesim::kernels
