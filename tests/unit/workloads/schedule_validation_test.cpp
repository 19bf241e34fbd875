// Pipeline schedules against their published closed forms, printed side by side.
//
// With p stages, m micro-batches, forward f and backward b per micro-batch and stage, and free p2p:
//   GPipe and 1F1B   makespan (m + p - 1)(f + b): the first micro-batch's forward crosses p - 1 stages before the
//                    last stage starts, and the last backward crosses them again after it ends; in between each
//                    stage is busy m (f + b). Bubble fraction (p - 1) / (m + p - 1) (Huang et al.; Narayanan et
//                    al., SC'21, section 2.2.1).
//   interleaved      makespan (m + (p - 1) / v)(f + b) with v chunks per stage (SC'21, section 2.2.2: the bubble
//                    (p - 1)(f + b) / v, "reduced by a factor of v"). In chunk passes of f / v and b / v this is
//                    (m v + p - 1)(f + b) / v, exact in integers when v divides f and b.
// With a p2p latency c on every hand-over between stages:
//   GPipe            m (f + b) + (p - 1)(f + b + 2 c): the fill and the drain each pay c per hop, the steady
//                    stream of micro-batches hides it.
//   1F1B             periodic in p micro-batches: stage 0 holds at most p in flight and a micro-batch's round trip
//                    through the pipe and back is p (f + b) + 2 (p - 1) c, so every p more micro-batches add exactly
//                    that (1F1B does not hide the latency the way GPipe does).
// The evaluator knows none of these formulas: it only times the orders under the data dependencies.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include "workloads/schedule.hpp"

namespace moesim::workloads {
namespace {

// (f, b) per micro-batch and stage: equal, backward twice the forward (the usual rule), and lopsided both ways.
const std::vector<std::pair<TimePs, TimePs>> kCosts = {{6, 6}, {6, 12}, {12, 6}, {30, 72}};

TEST(PipelineValidation, GpipeAndOneFOneBMakespanIsMPlusPMinusOneTimesFPlusB) {
  int checked = 0;
  for (const auto schedule : {PipelineSchedule::kGpipe, PipelineSchedule::k1F1B}) {
    for (const int p : {1, 2, 3, 4, 8, 16}) {
      for (const int m : {1, 2, 3, 4, 5, 8, 13, 16, 32, 64}) {
        for (const auto& [f, b] : kCosts) {
          const TimePs expected = (m + p - 1) * (f + b);
          const TimePs got = pipeline_makespan(schedule, p, m, 1, {f, b}, 0);
          EXPECT_EQ(got, expected) << pipeline_schedule_name(schedule) << " p=" << p << " m=" << m << " f=" << f
                                   << " b=" << b;
          if (f == 6 && b == 12 && (m == 1 || m == 8 || m == 64) && (p == 4 || p == 16)) {
            const double bubble = 1.0 - static_cast<double>(m * (f + b)) / static_cast<double>(got);
            std::printf(
                "%-6s p=%2d m=%2d: expectation (m+p-1)(f+b) = %5lld, bubble (p-1)/(m+p-1) = %.4f / "
                "evaluated %5lld, bubble %.4f\n",
                pipeline_schedule_name(schedule), p, m, static_cast<long long>(expected),
                static_cast<double>(p - 1) / (m + p - 1), static_cast<long long>(got), bubble);
          }
          ++checked;
        }
      }
    }
  }
  std::printf("%d (schedule, p, m, f, b) points checked\n", checked);
}

TEST(PipelineValidation, InterleavedBubbleShrinksByTheNumberOfChunks) {
  int checked = 0;
  for (const int p : {1, 2, 3, 4, 8}) {
    for (const int groups : {1, 2, 3, 4, 8}) {
      const int m = groups * p;
      for (const int v : {2, 3, 4, 6}) {
        for (const auto& [f, b] : kCosts) {
          // Chunk passes of f / v and b / v: scale f and b by v so that they divide exactly.
          const TimePs chunk_f = f;
          const TimePs chunk_b = b;
          const TimePs stage_f = chunk_f * v;
          const TimePs stage_b = chunk_b * v;
          const TimePs expected = (m * v + p - 1) * (stage_f + stage_b) / v;  // (m + (p - 1) / v)(f + b)
          const TimePs got = pipeline_makespan(PipelineSchedule::kInterleaved1F1B, p, m, v, {chunk_f, chunk_b}, 0);
          EXPECT_EQ(got, expected) << "p=" << p << " m=" << m << " v=" << v << " f=" << stage_f << " b=" << stage_b;
          const TimePs one_f_one_b = pipeline_makespan(PipelineSchedule::k1F1B, p, m, 1, {stage_f, stage_b}, 0);
          // The bubble itself: v times smaller than 1F1B's.
          EXPECT_EQ((one_f_one_b - m * (stage_f + stage_b)), v * (got - m * (stage_f + stage_b)));
          if (f == 6 && b == 12 && (p == 4 || p == 8) && (groups == 1 || groups == 4)) {
            std::printf(
                "interleaved p=%d m=%2d v=%d: expectation (m+(p-1)/v)(f+b) = %5lld, bubble (p-1)/(vm+p-1) = "
                "%.4f / evaluated %5lld, bubble %.4f (1f1b: %lld)\n",
                p, m, v, static_cast<long long>(expected), static_cast<double>(p - 1) / (v * m + p - 1),
                static_cast<long long>(got),
                1.0 - static_cast<double>(m * (stage_f + stage_b)) / static_cast<double>(got),
                static_cast<long long>(one_f_one_b));
          }
          ++checked;
        }
      }
    }
  }
  std::printf("%d (p, m, v, f, b) points checked\n", checked);
}

TEST(PipelineValidation, GpipePaysTheP2pLatencyOnlyInFillAndDrain) {
  for (const int p : {2, 4, 8}) {
    for (const int m : {1, 4, 16}) {
      for (const TimePs c : {1, 5, 40}) {
        const TimePs f = 6;
        const TimePs b = 12;
        const TimePs expected = m * (f + b) + (p - 1) * (f + b + 2 * c);
        const TimePs got = pipeline_makespan(PipelineSchedule::kGpipe, p, m, 1, {f, b}, c);
        EXPECT_EQ(got, expected) << "p=" << p << " m=" << m << " c=" << c;
        if (m == 16 && c == 5) {
          std::printf("gpipe p=%d m=%d c=%lld: expectation m(f+b)+(p-1)(f+b+2c) = %lld / evaluated %lld\n", p, m,
                      static_cast<long long>(c), static_cast<long long>(expected), static_cast<long long>(got));
        }
      }
    }
  }
}

TEST(PipelineValidation, OneFOneBIsPeriodicInPMicrobatchesWithP2pLatency) {
  for (const int p : {1, 2, 3, 4, 8}) {
    for (const int m : {1, 2, 3, 5, 8, 16}) {
      for (const TimePs c : {0, 1, 5, 40}) {
        for (const auto& [f, b] : kCosts) {
          const TimePs period = p * (f + b) + 2 * c * (p - 1);
          const TimePs got = pipeline_makespan(PipelineSchedule::k1F1B, p, m + p, 1, {f, b}, c) -
                             pipeline_makespan(PipelineSchedule::k1F1B, p, m, 1, {f, b}, c);
          EXPECT_EQ(got, period) << "p=" << p << " m=" << m << " c=" << c << " f=" << f << " b=" << b;
          if (f == 6 && b == 12 && m == 8 && c == 5) {
            std::printf("1f1b p=%d c=%lld: expectation T(m+p)-T(m) = p(f+b)+2(p-1)c = %lld / evaluated %lld\n", p,
                        static_cast<long long>(c), static_cast<long long>(period), static_cast<long long>(got));
          }
        }
      }
    }
  }
}

TEST(PipelineValidation, P2pLatencyNeverSpeedsUpAStep) {
  // A sanity bound where no closed form is claimed (interleaved hides a small latency in its longer warm-up):
  // the makespan grows with c, and never falls below the free-p2p one.
  for (const auto& [schedule, v] : std::vector<std::pair<PipelineSchedule, int>>{
           {PipelineSchedule::kGpipe, 1}, {PipelineSchedule::k1F1B, 1}, {PipelineSchedule::kInterleaved1F1B, 2}}) {
    for (const int p : {2, 4}) {
      TimePs previous = 0;
      for (const TimePs c : {0, 1, 2, 5, 10, 40}) {
        const TimePs got = pipeline_makespan(schedule, p, 4 * p, v, {6, 12}, c);
        EXPECT_GE(got, previous) << pipeline_schedule_name(schedule) << " p=" << p << " c=" << c;
        previous = got;
      }
    }
  }
}

}  // namespace
}  // namespace moesim::workloads
