#include "workloads/schedule.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace moesim::workloads {
namespace {

// "F0 F1 B0 ..." for one chunk, "F0.1" (micro-batch 0, chunk 1) with several: orders read as the papers draw them.
std::string render(const std::vector<PipelineOp>& ops, bool with_chunks) {
  std::string out;
  for (const PipelineOp& op : ops) {
    if (!out.empty()) out += ' ';
    out += (op.is_forward ? "F" : "B") + std::to_string(op.microbatch_idx);
    if (with_chunks) out += "." + std::to_string(op.chunk_idx);
  }
  return out;
}

std::string error_of(PipelineSchedule schedule, int p, int m, int v) {
  try {
    pipeline_order(schedule, p, m, v);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::string evaluate_error(const std::vector<std::vector<PipelineOp>>& order, int m, int v,
                           const std::vector<StageCost>& costs, TimePs p2p_ps) {
  try {
    evaluate_pipeline(order, m, v, costs, p2p_ps);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(PipelineSchedule, NamesRoundTrip) {
  for (const auto schedule : {PipelineSchedule::kGpipe, PipelineSchedule::k1F1B, PipelineSchedule::kInterleaved1F1B}) {
    EXPECT_EQ(parse_pipeline_schedule(pipeline_schedule_name(schedule)), schedule);
  }
  EXPECT_STREQ(pipeline_schedule_name(PipelineSchedule::kGpipe), "gpipe");
  EXPECT_STREQ(pipeline_schedule_name(PipelineSchedule::k1F1B), "1f1b");
  EXPECT_STREQ(pipeline_schedule_name(PipelineSchedule::kInterleaved1F1B), "interleaved");
}

TEST(PipelineSchedule, UnknownNameListsTheChoices) {
  try {
    parse_pipeline_schedule("1F1B");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "pipeline schedule: expected one of gpipe, 1f1b, interleaved; got '1F1B'");
  }
}

TEST(PipelineSchedule, ValidationSaysWhatWasExpected) {
  EXPECT_EQ(error_of(PipelineSchedule::k1F1B, 0, 4, 1), "pipeline stages: must be >= 1, got 0");
  EXPECT_EQ(error_of(PipelineSchedule::kGpipe, 4, 0, 1), "pipeline micro-batches: must be >= 1, got 0");
  EXPECT_EQ(error_of(PipelineSchedule::k1F1B, 4, 4, 0), "pipeline chunks: must be >= 1, got 0");
  EXPECT_EQ(error_of(PipelineSchedule::k1F1B, 4, 8, 2),
            "pipeline chunks: 1f1b runs one model chunk per stage, got 2 (use interleaved for more)");
  EXPECT_EQ(error_of(PipelineSchedule::kGpipe, 4, 8, 3),
            "pipeline chunks: gpipe runs one model chunk per stage, got 3 (use interleaved for more)");
  EXPECT_EQ(error_of(PipelineSchedule::kInterleaved1F1B, 4, 8, 1),
            "pipeline chunks: interleaved needs >= 2 model chunks per stage, got 1 (use 1f1b for one)");
  EXPECT_EQ(error_of(PipelineSchedule::kInterleaved1F1B, 4, 6, 2),
            "pipeline micro-batches: interleaved needs a multiple of the 4 stages, got 6");
  EXPECT_EQ(error_of(PipelineSchedule::kInterleaved1F1B, 4, 1 << 27, 4),
            "pipeline micro-batches x chunks: must be <= 268435456, got 536870912");
  // 1F1B accepts fewer micro-batches than stages (it degenerates towards GPipe), interleaved accepts one stage.
  EXPECT_EQ(error_of(PipelineSchedule::k1F1B, 8, 3, 1), "");
  EXPECT_EQ(error_of(PipelineSchedule::kInterleaved1F1B, 1, 3, 2), "");
  EXPECT_THROW(pipeline_peak_in_flight(PipelineSchedule::k1F1B, 4, 4, 8), std::invalid_argument);
  EXPECT_THROW(pipeline_peak_in_flight(PipelineSchedule::k1F1B, 4, -1, 8), std::invalid_argument);
}

TEST(PipelineOrder, GpipeRunsAllForwardsThenAllBackwards) {
  const auto order = pipeline_order(PipelineSchedule::kGpipe, 3, 4);
  ASSERT_EQ(order.size(), 3u);
  for (const auto& stage : order) EXPECT_EQ(render(stage, false), "F0 F1 F2 F3 B0 B1 B2 B3");
}

TEST(PipelineOrder, OneFOneBWarmsUpWithPMinusSMinusOneForwards) {
  // PipeDream-Flush, p = 4, m = 6: stage s runs 3 - s forwards, then forward / backward pairs, then the rest of
  // the backwards. The last stage has no warm-up at all.
  const auto order = pipeline_order(PipelineSchedule::k1F1B, 4, 6);
  EXPECT_EQ(render(order[0], false), "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5");
  EXPECT_EQ(render(order[1], false), "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5");
  EXPECT_EQ(render(order[2], false), "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5");
  EXPECT_EQ(render(order[3], false), "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5");
}

TEST(PipelineOrder, OneFOneBWithFewerMicrobatchesThanStagesIsGpipeOnTheEarlyStages) {
  // p = 4, m = 2: stages 0 and 1 would warm up with 3 and 2 forwards, more than there are micro-batches.
  const auto order = pipeline_order(PipelineSchedule::k1F1B, 4, 2);
  EXPECT_EQ(render(order[0], false), "F0 F1 B0 B1");
  EXPECT_EQ(render(order[1], false), "F0 F1 B0 B1");
  EXPECT_EQ(render(order[2], false), "F0 F1 B0 B1");
  EXPECT_EQ(render(order[3], false), "F0 B0 F1 B1");
}

TEST(PipelineOrder, InterleavedGoesRoundTheChunksInGroupsOfPMicrobatches) {
  // p = 2, v = 2, m = 4 (8 chunk passes per stage). Forwards: chunk 0 of micro-batches 0-1, chunk 1 of the same,
  // then micro-batches 2-3; backwards visit chunk 1 first. Warm-up (v - 1) p + 2 (p - s - 1): 4 on stage 0, 2 on
  // stage 1.
  const auto order = pipeline_order(PipelineSchedule::kInterleaved1F1B, 2, 4, 2);
  EXPECT_EQ(render(order[0], true), "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0");
  EXPECT_EQ(render(order[1], true), "F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 B3.0");
}

TEST(PipelineOrder, EveryOpAppearsExactlyOncePerStage) {
  for (const auto& [schedule, p, m, v] : std::vector<std::tuple<PipelineSchedule, int, int, int>>{
           {PipelineSchedule::kGpipe, 1, 1, 1},
           {PipelineSchedule::kGpipe, 4, 7, 1},
           {PipelineSchedule::k1F1B, 1, 5, 1},
           {PipelineSchedule::k1F1B, 8, 3, 1},
           {PipelineSchedule::k1F1B, 4, 16, 1},
           {PipelineSchedule::kInterleaved1F1B, 1, 3, 2},
           {PipelineSchedule::kInterleaved1F1B, 4, 4, 2},
           {PipelineSchedule::kInterleaved1F1B, 4, 12, 3},
           {PipelineSchedule::kInterleaved1F1B, 3, 9, 5},
       }) {
    SCOPED_TRACE(std::string(pipeline_schedule_name(schedule)) + " p=" + std::to_string(p) + " m=" + std::to_string(m) +
                 " v=" + std::to_string(v));
    const auto order = pipeline_order(schedule, p, m, v);
    ASSERT_EQ(order.size(), static_cast<std::size_t>(p));
    for (const auto& stage : order) {
      std::set<std::tuple<bool, int, int>> seen;
      for (const PipelineOp& op : stage) {
        EXPECT_TRUE(op.microbatch_idx >= 0 && op.microbatch_idx < m && op.chunk_idx >= 0 && op.chunk_idx < v);
        EXPECT_TRUE(seen.insert({op.is_forward, op.microbatch_idx, op.chunk_idx}).second);
      }
      EXPECT_EQ(seen.size(), 2u * static_cast<std::size_t>(m * v));
    }
  }
}

TEST(PipelineOrder, PeakInFlightMatchesTheOrder) {
  // 1F1B holds min(p - s, m) micro-batches at stage s (the memory model sizes activations with it); GPipe all m;
  // interleaved its warm-up plus one, in chunk passes.
  for (const int p : {1, 2, 4, 8}) {
    for (const int m : {1, 2, 3, 4, 8, 16}) {
      const auto one_f_one_b = pipeline_order(PipelineSchedule::k1F1B, p, m);
      const auto gpipe = pipeline_order(PipelineSchedule::kGpipe, p, m);
      for (int s = 0; s < p; ++s) {
        const auto su = static_cast<std::size_t>(s);
        EXPECT_EQ(peak_in_flight(one_f_one_b[su]), std::min(p - s, m)) << "p=" << p << " m=" << m << " s=" << s;
        EXPECT_EQ(pipeline_peak_in_flight(PipelineSchedule::k1F1B, p, s, m), std::min(p - s, m));
        EXPECT_EQ(peak_in_flight(gpipe[su]), m);
        EXPECT_EQ(pipeline_peak_in_flight(PipelineSchedule::kGpipe, p, s, m), m);
      }
      for (const int v : {2, 3}) {
        if (m % p != 0) continue;
        const auto interleaved = pipeline_order(PipelineSchedule::kInterleaved1F1B, p, m, v);
        for (int s = 0; s < p; ++s) {
          const int expected = std::min((v - 1) * p + 2 * (p - s - 1) + 1, m * v);
          EXPECT_EQ(peak_in_flight(interleaved[static_cast<std::size_t>(s)]), expected);
          EXPECT_EQ(pipeline_peak_in_flight(PipelineSchedule::kInterleaved1F1B, p, s, m, v), expected);
        }
      }
    }
  }
}

TEST(PipelineEvaluator, ABackwardsOutputLeadSendsItsGradientsEarly) {
  // Two stages, one micro-batch, forward 10, backward 20, p2p 3. Stage 0 forward 0-10, stage 1 forward 13-23,
  // stage 1 backward 23-43. Its input gradients are ready 5 before its end (the weight gradients after them),
  // so stage 0's backward starts at 43 - 5 + 3 = 41 (not 46) and ends at 61.
  const auto order = pipeline_order(PipelineSchedule::k1F1B, 2, 1, 1);
  std::vector<StageCost> costs = {{10, 20}, {10, 20, 5}};
  EXPECT_EQ(evaluate_pipeline(order, 1, 1, costs, 3).makespan_ps, 61);
  costs[1].backward_output_lead_ps = 0;
  EXPECT_EQ(evaluate_pipeline(order, 1, 1, costs, 3).makespan_ps, 66);
  costs[1].backward_output_lead_ps = 21;  // more than the backward
  EXPECT_THROW(evaluate_pipeline(order, 1, 1, costs, 3), std::invalid_argument);
}

TEST(PipelineEvaluator, RespectsDependenciesAndStageOrder) {
  // Every op starts no earlier than its stage's previous op ends and its input arrives (p2p latency across
  // stages), and at least one of the two is tight (the evaluator never idles without a reason).
  const int p = 4;
  const int m = 8;
  const int v = 2;
  const TimePs c = 3;
  const std::vector<StageCost> costs = {{5, 9}, {4, 11}, {6, 8}, {5, 10}};
  for (const auto schedule : {PipelineSchedule::kGpipe, PipelineSchedule::k1F1B, PipelineSchedule::kInterleaved1F1B}) {
    const int chunks = schedule == PipelineSchedule::kInterleaved1F1B ? v : 1;
    const auto order = pipeline_order(schedule, p, m, chunks);
    const auto timeline = evaluate_pipeline(order, m, chunks, costs, c);
    std::vector<std::vector<std::vector<TimePs>>> end(
        2, std::vector<std::vector<TimePs>>(p, std::vector<TimePs>(static_cast<std::size_t>(m * chunks), -1)));
    const auto at = [&](bool is_forward, int s, int mb, int chunk) -> TimePs& {
      return end[is_forward ? 0 : 1][static_cast<std::size_t>(s)]
                [static_cast<std::size_t>(mb) * static_cast<std::size_t>(chunks) + static_cast<std::size_t>(chunk)];
    };
    TimePs makespan = 0;
    for (int s = 0; s < p; ++s) {
      for (const TimedPipelineOp& t : timeline.stages[static_cast<std::size_t>(s)]) {
        at(t.op.is_forward, s, t.op.microbatch_idx, t.op.chunk_idx) = t.end_ps;
        makespan = std::max(makespan, t.end_ps);
      }
    }
    EXPECT_EQ(timeline.makespan_ps, makespan);
    for (int s = 0; s < p; ++s) {
      const auto& ops = timeline.stages[static_cast<std::size_t>(s)];
      ASSERT_EQ(ops.size(), order[static_cast<std::size_t>(s)].size());
      TimePs free = 0;
      for (std::size_t i = 0; i < ops.size(); ++i) {
        const TimedPipelineOp& t = ops[i];
        EXPECT_EQ(t.op, order[static_cast<std::size_t>(s)][i]);
        const StageCost& cost = costs[static_cast<std::size_t>(s)];
        EXPECT_EQ(t.end_ps - t.start_ps, t.op.is_forward ? cost.forward_ps : cost.backward_ps);
        const int mb = t.op.microbatch_idx;
        const int ch = t.op.chunk_idx;
        TimePs ready = 0;
        if (t.op.is_forward) {
          if (s > 0)
            ready = at(true, s - 1, mb, ch) + c;
          else if (ch > 0)
            ready = at(true, p - 1, mb, ch - 1) + c;
        } else {
          if (s < p - 1)
            ready = at(false, s + 1, mb, ch) + c;
          else if (ch < chunks - 1)
            ready = at(false, 0, mb, ch + 1) + c;
          else
            ready = at(true, s, mb, ch);
        }
        EXPECT_EQ(t.start_ps, std::max(free, ready));
        free = t.end_ps;
      }
    }
  }
}

TEST(PipelineEvaluator, OneStageHasNoBubbleAndNoP2p) {
  // With one stage every op runs back to back whatever the schedule; the chunk-to-chunk hand-over stays on the
  // stage, so the p2p latency never applies.
  EXPECT_EQ(pipeline_makespan(PipelineSchedule::k1F1B, 1, 5, 1, {3, 7}, 100), 5 * (3 + 7));
  EXPECT_EQ(pipeline_makespan(PipelineSchedule::kInterleaved1F1B, 1, 5, 3, {3, 7}, 100), 15 * (3 + 7));
}

TEST(PipelineEvaluator, RejectsMalformedOrders) {
  const std::vector<StageCost> two = {{1, 2}, {1, 2}};
  auto order = pipeline_order(PipelineSchedule::k1F1B, 2, 2);
  EXPECT_EQ(evaluate_error(order, 2, 1, {{1, 2}}, 0), "pipeline stage costs: expected one per stage (2), got 1");
  EXPECT_EQ(evaluate_error(order, 2, 1, two, -1), "pipeline p2p time: must be >= 0 ps, got -1");
  EXPECT_EQ(evaluate_error(order, 2, 1, {{1, 2}, {-1, 2}}, 0),
            "pipeline stage 1 cost: must be >= 0 ps, got forward -1, backward 2");
  EXPECT_EQ(evaluate_error({}, 2, 1, {}, 0), "pipeline order: expected at least one stage, got none");
  EXPECT_EQ(evaluate_error(order, 0, 1, two, 0),
            "pipeline order: expected micro-batches >= 1 and chunks >= 1 with at most 268435456 passes, got 0 x 1");

  auto duplicate = order;
  duplicate[1][1] = duplicate[1][0];
  EXPECT_EQ(evaluate_error(duplicate, 2, 1, two, 0),
            "pipeline order: stage 1 has forward of micro-batch 0, chunk 0 twice");
  auto missing = order;
  missing[0].pop_back();
  EXPECT_EQ(evaluate_error(missing, 2, 1, two, 0),
            "pipeline order: stage 0 must hold 4 ops (each pass forward and backward once), got 3");
  auto outside = order;
  outside[0][0].chunk_idx = 1;
  EXPECT_EQ(evaluate_error(outside, 2, 1, two, 0),
            "pipeline order: stage 0 has forward of micro-batch 0, chunk 1, outside 2 micro-batches x 1 chunks");

  // Stage 1 runs micro-batch 1 first, but stage 0 sends micro-batch 0 first and waits for its backward: a cycle.
  auto swapped = order;
  swapped[0] = {{true, 0, 0}, {false, 0, 0}, {true, 1, 0}, {false, 1, 0}};
  swapped[1] = {{true, 1, 0}, {false, 1, 0}, {true, 0, 0}, {false, 0, 0}};
  EXPECT_EQ(evaluate_error(swapped, 2, 1, two, 0),
            "pipeline order deadlocks: stage 0 waits forever at backward of micro-batch 0, chunk 0");
}

}  // namespace
}  // namespace moesim::workloads
