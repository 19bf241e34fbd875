// check_args: the first bad field named, with what was expected and what was given; empty arrays may be null.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"
#include "tests/test_support.hpp"

namespace moesim::kernels {
namespace {

using test::contains;
using test::error_of;

struct RouterBuffers {
  std::vector<Bf16> x = std::vector<Bf16>(4 * 8);
  std::vector<Bf16> w = std::vector<Bf16>(8 * 8);
  std::vector<float> scores = std::vector<float>(4 * 8);
  std::vector<std::int32_t> expert = std::vector<std::int32_t>(4 * 8);
  std::vector<float> weight = std::vector<float>(4 * 8);

  RouterArgs args() {
    RouterArgs a;
    a.tokens = 4;
    a.hidden = 8;
    a.experts = 8;
    a.topk = 2;
    a.x = x.data();
    a.w = w.data();
    a.scores = scores.data();
    a.expert = expert.data();
    a.weight = weight.data();
    return a;
  }
};

TEST(CheckArgs, RouterAcceptsValidArguments) {
  RouterBuffers b;
  check_args(b.args());
  RouterArgs grouped = b.args();
  grouped.groups = 4;
  grouped.group_limit = 1;
  check_args(grouped);  // topk 2 <= 1 group x 2 experts
}

TEST(CheckArgs, RouterNamesTheBadField) {
  RouterBuffers b;
  RouterArgs a = b.args();
  a.topk = 9;
  EXPECT_EQ(error_of([&] { check_args(a); }), "router: topk: must be in [1, experts = 8], got 9");
  a = b.args();
  a.hidden = 0;
  EXPECT_EQ(error_of([&] { check_args(a); }), "router: hidden: must be >= 1, got 0");
  a = b.args();
  a.groups = 3;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "router: groups: must be a divisor of experts = 8, got 3"));
  a = b.args();
  a.groups = 4;
  a.group_limit = 5;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "router: group_limit: must be in [1, groups = 4], got 5"));
  a.group_limit = 1;
  a.topk = 3;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "router: topk: must be at most group_limit x experts"));
  a = b.args();
  a.x = nullptr;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "router: x: must be non-null"));
  a = b.args();
  a.tokens = -1;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "router: tokens: must be >= 0, got -1"));
  a = b.args();
  a.tokens = std::int64_t{1} << 31;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "tokens x topk rows are int32"));
}

TEST(CheckArgs, EmptyArraysMayBeNull) {
  RouterArgs router;
  router.tokens = 0;
  router.hidden = 4;
  router.experts = 2;
  router.topk = 1;
  std::vector<Bf16> w(8);
  router.w = w.data();
  check_args(router);  // no tokens: x, scores, expert and weight may be null

  UnpermuteArgs unpermute;
  unpermute.hidden = 4;
  unpermute.topk = 2;
  check_args(unpermute);
  unpermute.tokens = 1;
  EXPECT_TRUE(contains(error_of([&] { check_args(unpermute); }), "unpermute: y: must be non-null (tokens x topk = 2)"));
}

TEST(CheckArgs, PermuteNeedsWeightsOnlyToDropByScore) {
  std::vector<std::int32_t> expert(4), routed(2), offsets(3), rows(4), tokens(4);
  std::vector<Bf16> x(4 * 3), permuted(4 * 3);
  PermuteArgs a;
  a.tokens = 4;
  a.hidden = 3;
  a.experts = 2;
  a.topk = 1;
  a.expert = expert.data();
  a.x = x.data();
  a.routed = routed.data();
  a.offsets = offsets.data();
  a.row_of_copy = rows.data();
  a.token_of_row = tokens.data();
  a.permuted = permuted.data();
  a.capacity = 2;
  check_args(a);  // drop-position reads no weights
  a.policy = DropPolicy::kDropScore;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "permute: weight: must be non-null"));
  a.capacity = 0;
  check_args(a);  // dropless drops nothing, whatever the policy
  a.policy = static_cast<DropPolicy>(7);
  EXPECT_TRUE(
      contains(error_of([&] { check_args(a); }), "permute: policy: must be drop-position or drop-score, got 7"));
}

TEST(CheckArgs, GroupedFfnReadsTheHostOffsets) {
  std::vector<std::int32_t> offsets = {0, 5, 3};
  std::vector<Bf16> data(2 * 4 * 4 * 8);
  GroupedFfnArgs a;
  a.experts = 2;
  a.hidden = 4;
  a.ffn = 4;
  a.offsets = offsets.data();
  a.host_offsets = offsets.data();
  a.x = a.w_gate = a.w_up = a.w_down = data.data();
  a.h = a.y = data.data();
  EXPECT_EQ(error_of([&] { check_args(a); }), "grouped_ffn: host_offsets[2]: must be >= host_offsets[1] = 5, got 3");
  offsets = {1, 5, 6};
  EXPECT_EQ(error_of([&] { check_args(a); }), "grouped_ffn: host_offsets[0]: must be 0, got 1");
  a.host_offsets = nullptr;
  EXPECT_TRUE(contains(error_of([&] { check_args(a); }), "grouped_ffn: host_offsets: must be non-null"));
  offsets = {0, 2, 6};
  a.host_offsets = offsets.data();
  check_args(a);
}

TEST(CheckArgs, GemmNeedsPositiveInnerSizes) {
  std::vector<Bf16> data(64);
  GemmArgs a;
  a.m = 2;
  a.n = 0;
  a.k = 4;
  a.a = a.b = data.data();
  a.c = data.data();
  EXPECT_EQ(error_of([&] { check_args(a); }), "dense_gemm: n: must be >= 1, got 0");
  a.n = 4;
  a.m = 0;
  a.a = nullptr;
  a.c = nullptr;
  check_args(a);  // no rows: a and c may be null
}

TEST(CheckArgs, TheCpuBackendChecksBeforeRunning) {
  auto cpu = make_cpu_backend(1);
  RouterBuffers b;
  RouterArgs a = b.args();
  a.topk = 0;
  EXPECT_TRUE(contains(error_of([&] { cpu->router(a); }), "router: topk: must be in [1, experts = 8], got 0"));
}

}  // namespace
}  // namespace moesim::kernels
