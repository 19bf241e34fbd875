// The CPU permute against the naive loops on the shape table (both drop policies, all skews), the same bits for
// any thread count, and the expert index checked on the host.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/harness/inputs.hpp"
#include "tests/test_support.hpp"
#include "tests/unit/kernels/kernels_test_support.hpp"

namespace moesim::kernels {
namespace {

struct PermuteRun {
  std::vector<std::int32_t> routed, offsets, row_of_copy, token_of_row;
  std::vector<Bf16> permuted;
};

PermuteRun run_permute(Backend& cpu, const std::vector<std::int32_t>& expert, const std::vector<float>& weight,
                       const std::vector<Bf16>& x, std::int64_t tokens, std::int64_t hidden, int experts, int topk,
                       std::int64_t capacity, DropPolicy policy) {
  PermuteRun r;
  const auto copies = static_cast<std::size_t>(tokens * topk);
  r.routed.resize(static_cast<std::size_t>(experts));
  r.offsets.resize(static_cast<std::size_t>(experts) + 1);
  r.row_of_copy.resize(copies);
  r.token_of_row.resize(copies);
  r.permuted.resize(copies * static_cast<std::size_t>(hidden));
  PermuteArgs a;
  a.tokens = tokens;
  a.hidden = hidden;
  a.experts = experts;
  a.topk = topk;
  a.capacity = capacity;
  a.policy = policy;
  a.expert = expert.data();
  a.weight = weight.data();
  a.x = x.data();
  a.routed = r.routed.data();
  a.offsets = r.offsets.data();
  a.row_of_copy = r.row_of_copy.data();
  a.token_of_row = r.token_of_row.data();
  a.permuted = r.permuted.data();
  cpu.permute(a);
  return r;
}

TEST(CpuPermute, MatchesTheNaiveLoopsOnTheShapeTable) {
  auto cpu = make_cpu_backend(2);
  test::expect_table_passes(*cpu, harness::validate_permute, false);
}

TEST(CpuPermute, SameBitsForAnyThreadCount) {
  harness::Rng rng(9, "permute threads");
  const std::int64_t tokens = 500;
  const std::int64_t hidden = 33;
  const int experts = 12;
  const int topk = 3;
  const auto routing =
      harness::sample_routing(tokens, experts, topk, harness::Skew{harness::Skew::Kind::kZipf, 1.3}, false, rng);
  const auto x = harness::random_bf16(static_cast<std::size_t>(tokens * hidden), 1.0, rng);
  auto one = make_cpu_backend(1);
  const PermuteRun first =
      run_permute(*one, routing.expert, routing.weight, x, tokens, hidden, experts, topk, 100, DropPolicy::kDropScore);
  for (const int threads : {2, 3, 8}) {
    auto cpu = make_cpu_backend(threads);
    const PermuteRun r = run_permute(*cpu, routing.expert, routing.weight, x, tokens, hidden, experts, topk, 100,
                                     DropPolicy::kDropScore);
    EXPECT_EQ(r.row_of_copy, first.row_of_copy);
    EXPECT_EQ(r.token_of_row, first.token_of_row);
    const auto rows = static_cast<std::size_t>(first.offsets.back() * hidden);
    EXPECT_EQ(test::bits({r.permuted.begin(), r.permuted.begin() + static_cast<std::ptrdiff_t>(rows)}),
              test::bits({first.permuted.begin(), first.permuted.begin() + static_cast<std::ptrdiff_t>(rows)}));
  }
}

TEST(CpuPermute, RejectsAnExpertOutOfRange) {
  auto cpu = make_cpu_backend(1);
  const std::vector<std::int32_t> expert = {0, 4};
  const std::vector<Bf16> x(2);
  EXPECT_EQ(moesim::test::error_of([&] { run_permute(*cpu, expert, {}, x, 2, 1, 4, 1, 0, DropPolicy::kDropPosition); }),
            "permute: expert[1]: must be in [0, experts = 4), got 4");
}

}  // namespace
}  // namespace moesim::kernels
