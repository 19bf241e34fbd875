#include "workloads/replication.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/rng.hpp"
#include "tests/test_support.hpp"

namespace moesim::workloads {
namespace {

using test::contains;
using test::error_of;

double sum(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0);
}

double max_over_mean(const std::vector<double>& values) {
  return *std::max_element(values.begin(), values.end()) / (sum(values) / static_cast<double>(values.size()));
}

// The promises of plan_replication that hold whatever the loads: well-formed begin/rank, every expert with 1 to
// ep replicas on distinct ranks listed in ascending order, every rank with exactly `slots_per_rank` replicas, and
// rank loads that add up to the expert loads (splitting an expert among replicas loses nothing).
void expect_valid_plan(const ExpertReplicas& plan, const std::vector<double>& expert_load, int ep, int slots_per_rank) {
  const int num_experts = static_cast<int>(expert_load.size());
  ASSERT_EQ(plan.num_experts(), num_experts);
  ASSERT_EQ(plan.begin.front(), 0);
  ASSERT_EQ(plan.begin.back(), static_cast<int>(plan.rank.size()));
  ASSERT_EQ(static_cast<int>(plan.rank.size()), ep * slots_per_rank);
  std::vector<int> replicas_on_rank(ep, 0);
  for (int e = 0; e < num_experts; ++e) {
    const int n = plan.num_replicas(e);
    EXPECT_GE(n, 1) << "expert " << e;
    EXPECT_LE(n, ep) << "expert " << e;
    for (int i = plan.begin[e]; i < plan.begin[e + 1]; ++i) {
      const int r = plan.rank[i];
      ASSERT_GE(r, 0);
      ASSERT_LT(r, ep);
      ++replicas_on_rank[r];
      // Strictly ascending also means no rank holds two replicas of e.
      if (i > plan.begin[e]) {
        EXPECT_LT(plan.rank[i - 1], r) << "expert " << e;
      }
    }
    for (std::int64_t token_idx = 0; token_idx < std::int64_t{2} * n; ++token_idx) {
      EXPECT_EQ(plan.rank_for(e, token_idx), plan.rank[plan.begin[e] + token_idx % n]);
    }
  }
  for (int r = 0; r < ep; ++r) EXPECT_EQ(replicas_on_rank[r], slots_per_rank) << "rank " << r;
  const std::vector<double> loads = rank_loads(plan, expert_load, ep);
  EXPECT_NEAR(sum(loads), sum(expert_load), 1e-9 * std::max(1.0, sum(expert_load)));
}

TEST(ReplicationSingle, OneReplicaPerExpertOnItsRank) {
  const ExpertReplicas plan = single_replicas({2, 0, 1, 0});
  EXPECT_EQ(plan.begin, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(plan.rank, (std::vector<int>{2, 0, 1, 0}));
  EXPECT_EQ(plan.num_experts(), 4);
  EXPECT_EQ(plan.num_replicas(2), 1);
  // One replica: every token of expert 0 goes to rank 2.
  EXPECT_EQ(plan.rank_for(0, 0), 2);
  EXPECT_EQ(plan.rank_for(0, 7), 2);
  // Rank 0 holds experts 1 and 3: 2 + 4; rank 1 holds expert 2: 3; rank 2 holds expert 0: 1.
  EXPECT_EQ(rank_loads(plan, {1, 2, 3, 4}, 3), (std::vector<double>{6, 3, 1}));
}

TEST(ReplicationSingle, RejectsNegativeRank) {
  EXPECT_TRUE(contains(error_of([] { single_replicas({0, -1}); }), "rank_of_expert[1]: must be >= 0, got -1"));
}

// Loads {8, 1, 1, 2} on ep = 2 ranks with 1 extra slot each: 4 / 2 + 1 = 3 slots per rank, 2 extra replicas.
//   replicate (load per replica):  {8, 1, 1, 2}        -> expert 0 gets a 2nd replica: {4, 1, 1, 2}
//                                  expert 0 now has ep = 2 replicas and is out; the highest of the rest is
//                                  expert 3 (2)        -> expert 3 gets a 2nd replica: {4, 1, 1, 1}
//   pack, heaviest first, ties by id: expert 0 (4, 4), then experts 1, 2, 3 at 1 each:
//     expert 0 -> ranks 0 and 1 (both empty; lower rank first)        loads {4, 4}
//     expert 1 -> rank 0 (tie at 4, lower rank)                       loads {5, 4}
//     expert 2 -> rank 1 (4 < 5)                                      loads {5, 5}
//     expert 3 -> ranks 0 and 1 (tie at 5)                            loads {6, 6}
// Contiguous placement (experts 0, 1 on rank 0; 2, 3 on rank 1) would give {9, 3}.
TEST(ReplicationPlan, HandWorkedExample) {
  const std::vector<double> load = {8, 1, 1, 2};
  const ExpertReplicas plan = plan_replication(load, 2, 1);
  EXPECT_EQ(plan.begin, (std::vector<int>{0, 2, 3, 4, 6}));
  EXPECT_EQ(plan.rank, (std::vector<int>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(rank_loads(plan, load, 2), (std::vector<double>{6, 6}));
  EXPECT_EQ(rank_loads(single_replicas({0, 0, 1, 1}), load, 2), (std::vector<double>{9, 3}));
  // Tokens of expert 0 alternate between its replicas on ranks 0 and 1.
  EXPECT_EQ(plan.rank_for(0, 0), 0);
  EXPECT_EQ(plan.rank_for(0, 1), 1);
  EXPECT_EQ(plan.rank_for(0, 2), 0);
  expect_valid_plan(plan, load, 2, 3);
}

// No extra slots: no replication, only a balanced re-packing. Loads {5, 1, 4, 2, 3, 6} on 3 ranks of 2 slots:
//   order by load: experts 5 (6), 0 (5), 2 (4), 4 (3), 3 (2), 1 (1)
//     expert 5 -> rank 0 {6, 0, 0};  expert 0 -> rank 1 {6, 5, 0};  expert 2 -> rank 2 {6, 5, 4}
//     expert 4 -> rank 2 {6, 5, 7}, rank 2 full;  expert 3 -> rank 1 {6, 7, 7}, full;  expert 1 -> rank 0 {7, 7, 7}
// Perfectly balanced, where contiguous ({5, 1}, {4, 2}, {3, 6}) gives {6, 6, 9}.
TEST(ReplicationPlan, ZeroExtraSlotsIsABalancedRepacking) {
  const std::vector<double> load = {5, 1, 4, 2, 3, 6};
  const ExpertReplicas plan = plan_replication(load, 3, 0);
  EXPECT_EQ(plan.begin, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(plan.rank, (std::vector<int>{1, 0, 2, 1, 2, 0}));
  EXPECT_EQ(rank_loads(plan, load, 3), (std::vector<double>{7, 7, 7}));
  EXPECT_EQ(rank_loads(single_replicas({0, 0, 1, 1, 2, 2}), load, 3), (std::vector<double>{6, 6, 9}));
  expect_valid_plan(plan, load, 3, 2);
}

// With every load 0 all keys tie, so the ids decide: the 2 extra slots go to expert 0 (up to ep = 2 replicas),
// then to expert 1; packing in id order puts each expert on the lowest ranks with room.
TEST(ReplicationPlan, AllZeroLoadsFollowTheIdTieBreaks) {
  const std::vector<double> load = {0, 0, 0, 0};
  const ExpertReplicas plan = plan_replication(load, 2, 1);
  EXPECT_EQ(plan.begin, (std::vector<int>{0, 2, 4, 5, 6}));
  EXPECT_EQ(plan.rank, (std::vector<int>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(rank_loads(plan, load, 2), (std::vector<double>{0, 0}));
}

TEST(ReplicationPlan, OneRankHoldsEveryExpert) {
  const std::vector<double> load = {3, 1, 2};
  const ExpertReplicas plan = plan_replication(load, 1, 0);
  EXPECT_EQ(plan.begin, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(plan.rank, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(rank_loads(plan, load, 1), (std::vector<double>{6}));
}

// The largest allowed extra count, E - E / ep, fills every rank with one replica of every expert.
TEST(ReplicationPlan, MaximumExtraSlotsReplicateEveryExpertEverywhere) {
  const std::vector<double> load = {9, 1, 4, 2};
  const ExpertReplicas plan = plan_replication(load, 2, 2);
  EXPECT_EQ(plan.begin, (std::vector<int>{0, 2, 4, 6, 8}));
  EXPECT_EQ(plan.rank, (std::vector<int>{0, 1, 0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(rank_loads(plan, load, 2), (std::vector<double>{8, 8}));
}

// Zipf(1) popularity over E = 256 experts, hottest first: expert e carries 1 / (e + 1). Contiguous placement on 64
// ranks puts experts 0..3 together on rank 0, 1 + 1/2 + 1/3 + 1/4 = 2.08 against a mean of H_256 / 64 = 0.096,
// about 22x. With one extra slot per rank (64 extra replicas) the hot experts are spread over many ranks; the
// hottest alone needs at least 1 / 0.096 = 11 replicas to bring its share under the mean.
TEST(ReplicationPlan, SkewedLoadsAreFlattened) {
  constexpr int kNumExperts = 256;
  constexpr int kEp = 64;
  std::vector<double> load(kNumExperts);
  for (int e = 0; e < kNumExperts; ++e) load[e] = 1.0 / (e + 1);
  std::vector<int> contiguous(kNumExperts);
  for (int e = 0; e < kNumExperts; ++e) contiguous[e] = e / (kNumExperts / kEp);

  const double before = max_over_mean(rank_loads(single_replicas(contiguous), load, kEp));
  const ExpertReplicas plan = plan_replication(load, kEp, 1);
  const double after = max_over_mean(rank_loads(plan, load, kEp));
  std::printf("Zipf(1), E = 256, ep = 64: max/mean rank load contiguous %.3f, replicated (1 extra slot) %.3f\n", before,
              after);
  EXPECT_GT(before, 20.0);
  EXPECT_LT(after, 1.2);
  EXPECT_GE(plan.num_replicas(0), 11);
  expect_valid_plan(plan, load, kEp, kNumExperts / kEp + 1);
}

TEST(ReplicationPlan, IsDeterministic) {
  std::vector<double> load(32);
  Rng rng(7);
  for (double& x : load) x = static_cast<double>(rng.below(5));
  const ExpertReplicas a = plan_replication(load, 8, 3);
  const ExpertReplicas b = plan_replication(load, 8, 3);
  EXPECT_EQ(a.begin, b.begin);
  EXPECT_EQ(a.rank, b.rank);
}

// Rank loads are sums of rounded quotients, so a tie that exact arithmetic would break towards the lower rank
// can go the other way by one ulp; on this input the plain greedy leaves expert 6 with one rank fewer than it
// has replicas, and the swap step of plan_replication has to make room.
TEST(ReplicationPlan, SwapMakesRoomWhenTooFewRanksAreFree) {
  const std::vector<double> load = {2, 3, 3, 1, 1, 1, 1, 2, 2};
  expect_valid_plan(plan_replication(load, 3, 4), load, 3, 9 / 3 + 4);
}

// Random small cases, integer loads so that ties are common, every ep that divides E, every allowed extra count.
TEST(ReplicationPlan, InvariantsHoldOnRandomCases) {
  Rng rng(2024);
  for (int trial = 0; trial < 3000; ++trial) {
    const int num_experts = 1 + static_cast<int>(rng.below(16));
    std::vector<int> divisors;
    for (int d = 1; d <= num_experts; ++d) {
      if (num_experts % d == 0) divisors.push_back(d);
    }
    const int ep = divisors[rng.below(divisors.size())];
    const int extra = static_cast<int>(rng.below(num_experts - num_experts / ep + 1));
    std::vector<double> load(num_experts);
    const std::uint64_t range = 1 + rng.below(6);
    for (double& x : load) x = static_cast<double>(rng.below(range));
    SCOPED_TRACE("trial " + std::to_string(trial) + ": E " + std::to_string(num_experts) + ", ep " +
                 std::to_string(ep) + ", extra " + std::to_string(extra));
    expect_valid_plan(plan_replication(load, ep, extra), load, ep, num_experts / ep + extra);
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

TEST(ReplicationPlan, LargeGroupIsValid) {
  std::vector<double> load(256);
  for (int e = 0; e < 256; ++e) load[e] = 1.0 / std::sqrt(e + 1.0);
  expect_valid_plan(plan_replication(load, 256, 16), load, 256, 1 + 16);
}

TEST(ReplicationPlan, RejectsBadInput) {
  const std::vector<double> four = {1, 2, 3, 4};
  EXPECT_TRUE(contains(error_of([] { plan_replication({}, 1, 0); }), "expected at least one expert"));
  EXPECT_TRUE(contains(error_of([&] { plan_replication(four, 0, 0); }), "ep: must be >= 1, got 0"));
  EXPECT_TRUE(
      contains(error_of([&] { plan_replication(four, 3, 0); }), "ep: must divide the number of experts (4), got 3"));
  EXPECT_TRUE(contains(error_of([&] { plan_replication(four, 8, 0); }), "got 8"));
  EXPECT_TRUE(contains(error_of([&] { plan_replication(four, 2, -1); }), "extra_slots_per_rank: must be in [0, 2]"));
  EXPECT_TRUE(contains(error_of([&] { plan_replication(four, 2, 3); }), "got 3"));
  EXPECT_TRUE(contains(error_of([] {
                         plan_replication({1, -2}, 1, 0);
                       }),
                       "expert_load[1]: must be finite and >= 0, got -2"));
  EXPECT_TRUE(contains(error_of([] { plan_replication({NAN, 1}, 2, 0); }), "expert_load[0]"));
  EXPECT_TRUE(contains(error_of([] { plan_replication({1, INFINITY}, 2, 0); }), "got inf"));
}

TEST(ReplicationRankLoads, RejectsMismatchedInput) {
  const ExpertReplicas plan = single_replicas({0, 1});
  EXPECT_TRUE(contains(error_of([&] { rank_loads(plan, {1, 2, 3}, 2); }), "expected 2 entries, got 3"));
  EXPECT_TRUE(contains(error_of([&] { rank_loads(plan, {1, 2}, 1); }), "must be in [0, 1), got 1"));
  EXPECT_TRUE(contains(error_of([&] { rank_loads(plan, {1, 2}, 0); }), "ep: must be >= 1"));
  ExpertReplicas broken = plan;
  broken.begin = {0, 1, 3};
  EXPECT_TRUE(contains(error_of([&] { rank_loads(broken, {1, 2}, 2); }), "replicas: expected begin"));
  broken.begin = {0, 0, 2};
  EXPECT_TRUE(contains(error_of([&] { rank_loads(broken, {1, 2}, 2); }), "expert 0 must have at least one replica"));
}

}  // namespace
}  // namespace moesim::workloads
