// The permute index math on the host: capacity, counts, offsets, both drop policies on a worked example, the maps
// inverse to each other on random routings, and the round trip unpermute(permute(x)) = x.
#include "kernels/index_math.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/harness/inputs.hpp"
#include "tests/test_support.hpp"

namespace moesim::kernels {
namespace {

using harness::Rng;
using harness::Routing;
using harness::Skew;

TEST(IndexMath, CapacityIsTheCeilingOfTheFairShareTimesTheFactor) {
  EXPECT_EQ(expert_capacity(10, 2, 4, 1.0), 5);   // 20 copies over 4 experts
  EXPECT_EQ(expert_capacity(10, 2, 4, 1.25), 7);  // ceil(6.25)
  EXPECT_EQ(expert_capacity(10, 1, 4, 1.0), 3);   // ceil(2.5)
  EXPECT_EQ(expert_capacity(10, 2, 4, 0.0), 0);   // dropless
  EXPECT_EQ(expert_capacity(0, 2, 4, 1.0), 0);
}

TEST(IndexMath, CountsKeptCountsAndOffsets) {
  const std::vector<std::int32_t> expert = {0, 2, 2, 2, 0};
  EXPECT_EQ(count_per_expert(expert.data(), 5, 3), (std::vector<std::int32_t>{2, 0, 3}));
  EXPECT_EQ(kept_per_expert({2, 0, 3}, 2), (std::vector<std::int32_t>{2, 0, 2}));
  EXPECT_EQ(kept_per_expert({2, 0, 3}, 0), (std::vector<std::int32_t>{2, 0, 3}));
  EXPECT_EQ(exclusive_scan({3, 0, 2}), (std::vector<std::int32_t>{0, 3, 3, 5}));
  EXPECT_EQ(exclusive_scan({}), (std::vector<std::int32_t>{0}));
  const std::vector<std::int32_t> bad = {0, 3};
  EXPECT_EQ(test::error_of([&] { count_per_expert(bad.data(), 2, 3); }),
            "permute: expert[1]: must be in [0, experts = 3), got 3");
}

// The maps alone, from a routing (x and permuted are not touched by permutation_maps).
struct Maps {
  std::vector<std::int32_t> routed, offsets, row_of_copy, token_of_row;
};

Maps maps_of(const std::vector<std::int32_t>& expert, const std::vector<float>& weight, std::int64_t tokens, int topk,
             int experts, std::int64_t capacity, DropPolicy policy) {
  Maps m;
  m.routed.resize(static_cast<std::size_t>(experts));
  m.offsets.resize(static_cast<std::size_t>(experts) + 1);
  m.row_of_copy.resize(expert.size());
  m.token_of_row.resize(expert.size());
  Bf16 unused{};
  PermuteArgs a;
  a.tokens = tokens;
  a.hidden = 1;
  a.experts = experts;
  a.topk = topk;
  a.capacity = capacity;
  a.policy = policy;
  a.expert = expert.data();
  a.weight = weight.data();
  a.x = &unused;
  a.permuted = &unused;
  a.routed = m.routed.data();
  a.offsets = m.offsets.data();
  a.row_of_copy = m.row_of_copy.data();
  a.token_of_row = m.token_of_row.data();
  permutation_maps(a);
  return m;
}

// Four tokens, top-2, three experts. Copies c = 2t + j go to experts 0 1 | 0 2 | 0 1 | 2 0, so expert 0 receives
// copies 0, 2, 4 and 7; at capacity 2 it must drop two of them.
const std::vector<std::int32_t> kExpert = {0, 1, 0, 2, 0, 1, 2, 0};

TEST(IndexMath, DropByPositionKeepsTheFirstCopies) {
  const Maps m = maps_of(kExpert, std::vector<float>(8, 1.0f), 4, 2, 3, 2, DropPolicy::kDropPosition);
  EXPECT_EQ(m.routed, (std::vector<std::int32_t>{4, 2, 2}));
  EXPECT_EQ(m.offsets, (std::vector<std::int32_t>{0, 2, 4, 6}));
  // Expert 0 keeps copies 0 and 2 (rows 0, 1), expert 1 copies 1 and 5 (rows 2, 3), expert 2 copies 3, 6 (4, 5).
  EXPECT_EQ(m.row_of_copy, (std::vector<std::int32_t>{0, 2, 1, 4, -1, 3, 5, -1}));
  EXPECT_EQ(m.token_of_row, (std::vector<std::int32_t>{0, 1, 0, 2, 1, 3, -1, -1}));
}

TEST(IndexMath, DropByScoreKeepsTheHeaviestCopiesInCopyOrder) {
  // Expert 0's copies 0, 2, 4, 7 weigh 0.1, 0.9, 0.5, 0.9: it keeps 2 and 7 (the tie at 0.9 does not matter here,
  // both fit), and its rows follow copy order: copy 2 then copy 7.
  const std::vector<float> weight = {0.1f, 0.3f, 0.9f, 0.3f, 0.5f, 0.3f, 0.3f, 0.9f};
  const Maps m = maps_of(kExpert, weight, 4, 2, 3, 2, DropPolicy::kDropScore);
  EXPECT_EQ(m.row_of_copy, (std::vector<std::int32_t>{-1, 2, 0, 4, -1, 3, 5, 1}));
  EXPECT_EQ(m.token_of_row, (std::vector<std::int32_t>{1, 3, 0, 2, 1, 3, -1, -1}));
}

TEST(IndexMath, DropByScoreBreaksTiesByCopyIndex) {
  // All weights equal: the lower copies win, which is drop-by-position's answer.
  const std::vector<float> weight(8, 0.5f);
  const Maps by_score = maps_of(kExpert, weight, 4, 2, 3, 2, DropPolicy::kDropScore);
  const Maps by_position = maps_of(kExpert, weight, 4, 2, 3, 2, DropPolicy::kDropPosition);
  EXPECT_EQ(by_score.row_of_copy, by_position.row_of_copy);
  // Three-way tie for one place among 0.5s, one heavier copy: it and the lowest 0.5 copy are kept.
  const std::vector<float> three = {0.5f, 0.3f, 0.5f, 0.3f, 0.8f, 0.3f, 0.3f, 0.5f};
  const Maps m = maps_of(kExpert, three, 4, 2, 3, 2, DropPolicy::kDropScore);
  EXPECT_EQ(m.row_of_copy[0], 0);
  EXPECT_EQ(m.row_of_copy[4], 1);
  EXPECT_EQ(m.row_of_copy[2], -1);
  EXPECT_EQ(m.row_of_copy[7], -1);
}

TEST(IndexMath, DroplessKeepsEverything) {
  const Maps m = maps_of(kExpert, {}, 4, 2, 3, 0, DropPolicy::kDropScore);
  EXPECT_EQ(m.offsets, (std::vector<std::int32_t>{0, 4, 6, 8}));
  for (std::int32_t row : m.row_of_copy) EXPECT_GE(row, 0);
}

TEST(IndexMath, MapsAreInverseOnRandomRoutings) {
  for (const DropPolicy policy : {DropPolicy::kDropPosition, DropPolicy::kDropScore}) {
    for (const double factor : {0.0, 0.5, 1.0, 1.5}) {
      Rng rng(7, "maps");
      const std::int64_t tokens = 300;
      const int topk = 3;
      const int experts = 11;
      const Routing r = harness::sample_routing(tokens, experts, topk, Skew{Skew::Kind::kZipf, 1.1}, false, rng);
      const std::int64_t capacity = expert_capacity(tokens, topk, experts, factor);
      const Maps m = maps_of(r.expert, r.weight, tokens, topk, experts, capacity, policy);
      const std::int32_t kept = m.offsets.back();
      std::int64_t kept_copies = 0;
      std::vector<std::int32_t> last_copy_of_expert(static_cast<std::size_t>(experts), -1);
      for (std::int32_t c = 0; c < tokens * topk; ++c) {
        const std::int32_t row = m.row_of_copy[static_cast<std::size_t>(c)];
        if (row < 0) continue;
        ++kept_copies;
        const std::int32_t e = r.expert[static_cast<std::size_t>(c)];
        ASSERT_GE(row, m.offsets[static_cast<std::size_t>(e)]) << "the row lies in its expert's range";
        ASSERT_LT(row, m.offsets[static_cast<std::size_t>(e) + 1]);
        ASSERT_EQ(m.token_of_row[static_cast<std::size_t>(row)], c / topk) << "token_of_row inverts row_of_copy";
        ASSERT_GT(c, last_copy_of_expert[static_cast<std::size_t>(e)]) << "rows follow copy order";
        last_copy_of_expert[static_cast<std::size_t>(e)] = c;
      }
      EXPECT_EQ(kept_copies, kept);
      for (std::size_t row = static_cast<std::size_t>(kept); row < m.token_of_row.size(); ++row)
        ASSERT_EQ(m.token_of_row[row], -1);
      for (int e = 0; e < experts; ++e) {
        const std::int32_t n = m.offsets[static_cast<std::size_t>(e) + 1] - m.offsets[static_cast<std::size_t>(e)];
        EXPECT_EQ(n, capacity > 0 ? std::min<std::int64_t>(m.routed[static_cast<std::size_t>(e)], capacity)
                                  : m.routed[static_cast<std::size_t>(e)]);
      }
    }
  }
}

TEST(IndexMath, UnpermuteOfPermuteWithUnitWeightsAndTopOneIsTheIdentity) {
  auto cpu = make_cpu_backend(2);
  Rng rng(3, "round trip");
  const std::int64_t tokens = 77;
  const std::int64_t hidden = 19;
  const int experts = 5;
  const Routing r = harness::sample_routing(tokens, experts, 1, Skew{Skew::Kind::kZipf, 1.0}, false, rng);
  const std::vector<Bf16> x = harness::random_bf16(static_cast<std::size_t>(tokens * hidden), 4.0, rng);
  std::vector<std::int32_t> routed(experts), offsets(experts + 1), row_of_copy(tokens), token_of_row(tokens);
  std::vector<Bf16> permuted(static_cast<std::size_t>(tokens * hidden));
  PermuteArgs p;
  p.tokens = tokens;
  p.hidden = hidden;
  p.experts = experts;
  p.topk = 1;
  p.expert = r.expert.data();
  p.x = x.data();
  p.routed = routed.data();
  p.offsets = offsets.data();
  p.row_of_copy = row_of_copy.data();
  p.token_of_row = token_of_row.data();
  p.permuted = permuted.data();
  cpu->permute(p);
  const std::vector<float> ones(static_cast<std::size_t>(tokens), 1.0f);
  std::vector<Bf16> out(x.size());
  UnpermuteArgs u;
  u.tokens = tokens;
  u.hidden = hidden;
  u.topk = 1;
  u.y = permuted.data();
  u.row_of_copy = row_of_copy.data();
  u.weight = ones.data();
  u.out = out.data();
  cpu->unpermute(u);
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(out[i].bits, x[i].bits) << "element " << i;

  // With a capacity, the dropped tokens come back as zeros and the kept ones unchanged.
  p.capacity = 10;
  cpu->permute(p);
  cpu->unpermute(u);
  int dropped = 0;
  for (std::int64_t t = 0; t < tokens; ++t) {
    const bool is_dropped = row_of_copy[static_cast<std::size_t>(t)] < 0;
    dropped += is_dropped ? 1 : 0;
    for (std::int64_t h = 0; h < hidden; ++h) {
      const auto i = static_cast<std::size_t>(t * hidden + h);
      ASSERT_EQ(out[i].bits, is_dropped ? 0 : x[i].bits);
    }
  }
  EXPECT_GT(dropped, 0);
}

}  // namespace
}  // namespace moesim::kernels
