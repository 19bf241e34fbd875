// BF16 storage and conversions on the host.
//
// A BF16 value is the upper half of an IEEE binary32 (1 sign, 8 exponent, 7 fraction bits), so widening is a shift
// and narrowing rounds the dropped 16 bits to nearest, ties to even. NaN stays NaN (quietened, sign kept), infinities
// stay infinite and finite values past the largest BF16 round to infinity, as IEEE rounding does. The FP64
// references round a double straight to BF16 (bf16_from_double): going through float first would round twice.
#pragma once

#include <cstdint>
#include <cstring>

namespace moesim::kernels {

struct Bf16 {
  std::uint16_t bits = 0;
};

inline bool operator==(Bf16 a, Bf16 b) {
  return a.bits == b.bits;
}  // bitwise: the exact checks compare this

inline float to_float(Bf16 value) {
  const std::uint32_t u = static_cast<std::uint32_t>(value.bits) << 16;
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline Bf16 to_bf16(float value) {
  std::uint32_t u = 0;
  std::memcpy(&u, &value, sizeof u);
  if ((u & 0x7fffffffU) > 0x7f800000U) return Bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040U)};
  // Adding 0x7fff plus the lowest kept bit carries into the kept half exactly when the dropped half is above one
  // half, or equal to it with an odd kept half: round to nearest, ties to even. Overflow carries into infinity.
  u += 0x7fffU + ((u >> 16) & 1U);
  return Bf16{static_cast<std::uint16_t>(u >> 16)};
}

// `value` rounded once to the nearest BF16 (ties to even), for references computed in FP64.
Bf16 bf16_from_double(double value);

}  // namespace moesim::kernels
