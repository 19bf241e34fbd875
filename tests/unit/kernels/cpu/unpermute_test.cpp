// The CPU combine against the FP64 reference on the shape table, a worked case with a dropped copy, and a token
// whose copies were all dropped (zeros, not the poison).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"
#include "tests/unit/kernels/kernels_test_support.hpp"

namespace moesim::kernels {
namespace {

TEST(CpuUnpermute, MatchesTheReferenceOnTheShapeTable) {
  auto cpu = make_cpu_backend(2);
  test::expect_table_passes(*cpu, harness::validate_unpermute, false);
}

TEST(CpuUnpermute, WeightsKeptCopiesAndSkipsDroppedOnes) {
  auto cpu = make_cpu_backend(1);
  // Token 0: copies in rows 1 (weight 0.25) and 0 (weight 0.75). Token 1: one copy dropped, one in row 2.
  // Token 2: both dropped.
  const std::vector<Bf16> y = {to_bf16(4.0f),  to_bf16(8.0f), to_bf16(2.0f),
                               to_bf16(-1.0f), to_bf16(3.0f), to_bf16(5.0f)};  // 3 rows of hidden 2
  const std::vector<std::int32_t> row_of_copy = {1, 0, -1, 2, -1, -1};
  const std::vector<float> weight = {0.25f, 0.75f, 0.5f, 0.5f, 1.0f, 1.0f};
  std::vector<Bf16> out(6, Bf16{0x7fc0});  // NaN: must be overwritten
  UnpermuteArgs a;
  a.tokens = 3;
  a.hidden = 2;
  a.topk = 2;
  a.y = y.data();
  a.row_of_copy = row_of_copy.data();
  a.weight = weight.data();
  a.out = out.data();
  cpu->unpermute(a);
  EXPECT_EQ(to_float(out[0]), 0.25f * 2.0f + 0.75f * 4.0f);
  EXPECT_EQ(to_float(out[1]), 0.25f * -1.0f + 0.75f * 8.0f);
  EXPECT_EQ(to_float(out[2]), 0.5f * 3.0f);
  EXPECT_EQ(to_float(out[3]), 0.5f * 5.0f);
  EXPECT_EQ(out[4].bits, 0);
  EXPECT_EQ(out[5].bits, 0);
}

}  // namespace
}  // namespace moesim::kernels
