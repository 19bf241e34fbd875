// The CPU grouped SwiGLU experts and the dense GEMM against the FP64 references on the quick shape table, a case
// small enough to work out by hand, and the same bits for any thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/harness/inputs.hpp"
#include "tests/unit/kernels/kernels_test_support.hpp"

namespace moesim::kernels {
namespace {

TEST(CpuGroupedFfn, MatchesTheReferenceOnTheShapeTable) {
  auto cpu = make_cpu_backend(2);
  // The quick table: the model-sized shapes take seconds in the FP64 reference (moesim-kernels validate runs them).
  test::expect_table_passes(*cpu, harness::validate_grouped_ffn, true);
}

TEST(CpuDenseGemm, MatchesTheReferenceOnTheShapeTable) {
  auto cpu = make_cpu_backend(2);
  test::expect_table_passes(*cpu, harness::validate_dense_gemm, true);
}

TEST(CpuGroupedFfn, WorkedExample) {
  // Two experts, hidden 1, ffn 1; expert 0 has no rows, expert 1 has two. Row r: h = silu(x wg) (x wu),
  // y = h wd, each rounded to BF16.
  auto cpu = make_cpu_backend(1);
  const std::vector<std::int32_t> offsets = {0, 0, 2};
  const std::vector<Bf16> x = {to_bf16(1.0f), to_bf16(-2.0f)};
  const std::vector<Bf16> w_gate = {to_bf16(9.0f), to_bf16(1.0f)};
  const std::vector<Bf16> w_up = {to_bf16(9.0f), to_bf16(2.0f)};
  const std::vector<Bf16> w_down = {to_bf16(9.0f), to_bf16(0.5f)};
  std::vector<Bf16> h(2), y(2);
  GroupedFfnArgs a;
  a.experts = 2;
  a.hidden = 1;
  a.ffn = 1;
  a.offsets = a.host_offsets = offsets.data();
  a.x = x.data();
  a.w_gate = w_gate.data();
  a.w_up = w_up.data();
  a.w_down = w_down.data();
  a.h = h.data();
  a.y = y.data();
  cpu->grouped_ffn(a);
  const auto silu = [](double g) { return g / (1 + std::exp(-g)); };
  const double h0 = silu(1.0) * 2.0;    // 1.4621...
  const double h1 = silu(-2.0) * -4.0;  // 0.9536...
  EXPECT_EQ(h[0].bits, bf16_from_double(h0).bits);
  EXPECT_EQ(h[1].bits, bf16_from_double(h1).bits);
  EXPECT_EQ(y[0].bits, to_bf16(to_float(h[0]) * 0.5f).bits) << "y from h as stored (BF16)";
  EXPECT_EQ(y[1].bits, to_bf16(to_float(h[1]) * 0.5f).bits);
}

TEST(CpuGroupedFfn, SameBitsForAnyThreadCount) {
  harness::Rng rng(11, "ffn threads");
  const int experts = 4;
  const std::int64_t hidden = 40;
  const std::int64_t ffn = 24;
  const std::vector<std::int32_t> offsets = {0, 17, 17, 60, 61};
  const auto rows = static_cast<std::size_t>(offsets.back());
  const auto weights = static_cast<std::size_t>(experts * hidden * ffn);
  const auto x = harness::random_bf16(rows * hidden, 1.0, rng);
  const auto wg = harness::random_bf16(weights, 0.2, rng);
  const auto wu = harness::random_bf16(weights, 0.2, rng);
  const auto wd = harness::random_bf16(weights, 0.2, rng);
  std::vector<std::vector<std::uint16_t>> ys;
  for (const int threads : {1, 2, 5}) {
    auto cpu = make_cpu_backend(threads);
    std::vector<Bf16> h(rows * ffn), y(rows * hidden);
    GroupedFfnArgs a;
    a.experts = experts;
    a.hidden = hidden;
    a.ffn = ffn;
    a.offsets = a.host_offsets = offsets.data();
    a.x = x.data();
    a.w_gate = wg.data();
    a.w_up = wu.data();
    a.w_down = wd.data();
    a.h = h.data();
    a.y = y.data();
    cpu->grouped_ffn(a);
    ys.push_back(test::bits(y));
  }
  EXPECT_EQ(ys[1], ys[0]);
  EXPECT_EQ(ys[2], ys[0]);
}

}  // namespace
}  // namespace moesim::kernels
