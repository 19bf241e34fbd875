// The CPU router against the FP64 reference on the shape table, and worked cases: ties to the lower index, the
// group limit, a bias that steers the choice but not the weights, unnormalised weights, any thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/harness/inputs.hpp"
#include "tests/unit/kernels/kernels_test_support.hpp"

namespace moesim::kernels {
namespace {

// One token with hidden 1 and x = 1, so that each expert's logit is its weight in w.
struct OneToken {
  std::vector<Bf16> x = {to_bf16(1.0f)};
  std::vector<Bf16> w;
  std::vector<float> scores;
  std::vector<std::int32_t> expert;
  std::vector<float> weight;

  OneToken(const std::vector<float>& logits, int topk)
      : scores(logits.size()), expert(static_cast<std::size_t>(topk)), weight(static_cast<std::size_t>(topk)) {
    for (float l : logits) w.push_back(to_bf16(l));
  }
  RouterArgs args(ScoreFunction score) {
    RouterArgs a;
    a.tokens = 1;
    a.hidden = 1;
    a.experts = static_cast<int>(w.size());
    a.topk = static_cast<int>(expert.size());
    a.score = score;
    a.x = x.data();
    a.w = w.data();
    a.scores = scores.data();
    a.expert = expert.data();
    a.weight = weight.data();
    return a;
  }
};

TEST(CpuRouter, MatchesTheReferenceOnTheShapeTable) {
  auto cpu = make_cpu_backend(2);
  test::expect_table_passes(*cpu, harness::validate_router, false);
}

TEST(CpuRouter, TiesGoToTheLowerExpert) {
  auto cpu = make_cpu_backend(1);
  OneToken t({0.5f, 2.0f, 2.0f, 2.0f}, 2);
  cpu->router(t.args(ScoreFunction::kSoftmax));
  EXPECT_EQ(t.expert, (std::vector<std::int32_t>{1, 2}));
  EXPECT_FLOAT_EQ(t.weight[0], 0.5f);  // equal scores, normalised over the two chosen
  EXPECT_FLOAT_EQ(t.weight[1], 0.5f);
}

TEST(CpuRouter, GroupLimitRanksGroupsByTheirTwoBestScores) {
  auto cpu = make_cpu_backend(1);
  // Sigmoid scores 0.88 0.88 | 0.95 0.05: group 0 sums 1.76, group 1 only 1.0, although it holds the best expert.
  OneToken t({2.0f, 2.0f, 3.0f, -3.0f}, 1);
  RouterArgs a = t.args(ScoreFunction::kSigmoid);
  cpu->router(a);
  EXPECT_EQ(t.expert[0], 2) << "without a group limit, the best expert";
  a.groups = 2;
  a.group_limit = 1;
  cpu->router(a);
  EXPECT_EQ(t.expert[0], 0) << "with one group of two allowed, the best of group 0 (a tie, to the lower index)";
  EXPECT_FLOAT_EQ(t.weight[0], 1.0f);
}

TEST(CpuRouter, BiasSteersTheChoiceButNotTheWeights) {
  auto cpu = make_cpu_backend(1);
  OneToken t({1.0f, 0.0f, -1.0f}, 2);
  const std::vector<float> bias = {0.0f, 0.0f, 0.9f};
  RouterArgs a = t.args(ScoreFunction::kSigmoid);
  a.bias = bias.data();
  a.normalize = false;
  cpu->router(a);
  // Sigmoid scores 0.73, 0.5, 0.27; with the bias expert 2 ranks first (1.17), expert 0 second.
  EXPECT_EQ(t.expert, (std::vector<std::int32_t>{2, 0}));
  EXPECT_NEAR(t.weight[0], 1 / (1 + std::exp(1.0)), 1e-6) << "the unbiased score of expert 2";
  EXPECT_NEAR(t.weight[1], 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_FLOAT_EQ(t.scores[2], t.weight[0]);
}

TEST(CpuRouter, SoftmaxScoresSumToOne) {
  auto cpu = make_cpu_backend(1);
  OneToken t({0.1f, -2.0f, 3.0f, 0.0f, 1.0f}, 5);  // top-k = experts
  cpu->router(t.args(ScoreFunction::kSoftmax));
  float sum = 0;
  for (float s : t.scores) sum += s;
  EXPECT_NEAR(sum, 1.0f, 1e-6);
  EXPECT_EQ(t.expert, (std::vector<std::int32_t>{2, 4, 0, 3, 1}));
}

TEST(CpuRouter, SameBitsForAnyThreadCount) {
  harness::Rng rng(5, "router threads");
  const std::int64_t tokens = 333;
  const std::int64_t hidden = 70;
  const int experts = 24;
  const int topk = 4;
  const auto x = harness::random_bf16(static_cast<std::size_t>(tokens * hidden), 1.0, rng);
  const auto w = harness::random_bf16(static_cast<std::size_t>(hidden * experts), 0.2, rng);
  std::vector<std::vector<float>> scores_by_threads;
  std::vector<std::vector<std::int32_t>> experts_by_threads;
  for (const int threads : {1, 2, 3, 7}) {
    auto cpu = make_cpu_backend(threads);
    std::vector<float> scores(static_cast<std::size_t>(tokens * experts));
    std::vector<std::int32_t> expert(static_cast<std::size_t>(tokens * topk));
    std::vector<float> weight(expert.size());
    RouterArgs a;
    a.tokens = tokens;
    a.hidden = hidden;
    a.experts = experts;
    a.topk = topk;
    a.groups = 4;
    a.group_limit = 2;
    a.x = x.data();
    a.w = w.data();
    a.scores = scores.data();
    a.expert = expert.data();
    a.weight = weight.data();
    cpu->router(a);
    scores_by_threads.push_back(scores);
    experts_by_threads.push_back(expert);
  }
  for (std::size_t i = 1; i < scores_by_threads.size(); ++i) {
    EXPECT_EQ(scores_by_threads[i], scores_by_threads[0]);  // float == float: bitwise here (no NaN)
    EXPECT_EQ(experts_by_threads[i], experts_by_threads[0]);
  }
}

}  // namespace
}  // namespace moesim::kernels
