// Helpers shared by the kernels tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/harness/validate.hpp"

namespace moesim::kernels::test {

// Runs `validate_op` (one of harness::validate_*) on every shape of the table (the quick ones only when asked) and
// expects each to pass, printing the row of any that does not.
template <typename ValidateOp>
void expect_table_passes(Backend& backend, ValidateOp validate_op, bool is_quick_only, std::uint64_t seed = 1) {
  for (const auto& shape : harness::select_shapes(is_quick_only)) {
    const harness::OpResult result = validate_op(backend, shape, seed);
    EXPECT_TRUE(result.passed()) << harness::validation_text(backend, {result}, seed);
  }
}

inline std::vector<std::uint16_t> bits(const std::vector<Bf16>& values) {
  std::vector<std::uint16_t> out;
  out.reserve(values.size());
  for (const Bf16 v : values) out.push_back(v.bits);
  return out;
}

}  // namespace moesim::kernels::test
