// The bench on the CPU backend over a tiny sweep: a measurement per (op, point) with sane timings, the work
// formulas, the rotation over 3x the cache, and the sweep itself. No wall-clock time is asserted.
#include "kernels/harness/bench.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "kernels/config.hpp"
#include "tests/test_support.hpp"

namespace moesim::kernels::harness {
namespace {

BenchOptions tiny_options() {
  BenchOptions o;
  o.cache_bytes = 64 << 10;  // rotate over 192 KiB, not the machine's 3x LLC
  o.warmup = 1;
  o.min_iterations = 2;
  o.max_iterations = 3;
  o.target_seconds = 0;
  return o;
}

TEST(Bench, MeasuresEveryOpAtEveryPoint) {
  auto cpu = make_cpu_backend(2);
  BenchPoint p;
  p.axis = "base";
  p.tokens = 48;
  p.hidden = 32;
  p.experts = 4;
  p.topk = 2;
  p.ffn = 16;
  BenchPoint capped = p;
  capped.axis = "capacity";
  capped.capacity_factor = 1.0;
  capped.skew = Skew{Skew::Kind::kZipf, 2.0};
  std::vector<std::string> progress;
  BenchOptions options = tiny_options();
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  const Measurements ms = run_bench(*cpu, {p, capped}, options);

  EXPECT_EQ(ms.backend(), "cpu");
  EXPECT_EQ(ms.threads(), 2);
  EXPECT_EQ(ms.sm_count(), 0);
  EXPECT_EQ(ms.tool_version(), MOESIM_KERNELS_VERSION);
  EXPECT_EQ(ms.cache_bytes(), 64 << 10);
  EXPECT_FALSE(ms.cpu_model().empty());
  ASSERT_EQ(ms.measurements_size(), 10);
  EXPECT_EQ(progress.size(), 10u);
  EXPECT_NE(progress.back().find("[10/10] unpermute"), std::string::npos) << progress.back();
  std::set<std::string> ops;
  for (const Measurement& m : ms.measurements()) {
    ops.insert(m.op());
    const Timing& t = m.timing();
    EXPECT_GE(t.iterations(), 2);
    EXPECT_EQ(t.samples_ms_size(), t.iterations());
    EXPECT_LE(t.min_ms(), t.median_ms());
    EXPECT_LE(t.median_ms(), t.max_ms());
    EXPECT_GE(t.min_ms(), 0);
    EXPECT_EQ(m.dtype(), "bf16");
    EXPECT_GT(m.bytes(), 0);
    EXPECT_GE(m.input_sets(), 1);
    // The sets cover 3x the cache, unless one set alone is larger.
    EXPECT_TRUE(m.input_sets() == 1 || m.rotation_bytes() >= 3 * ms.cache_bytes()) << m.op();
  }
  EXPECT_EQ(ops, (std::set<std::string>{"router", "permute", "grouped_ffn", "dense_gemm", "unpermute"}));

  // The work formulas (kernels/harness/bench.hpp) on the first point: rows R = 96 (dropless).
  for (const Measurement& m : ms.measurements()) {
    if (m.shape().capacity_factor() != 0) continue;
    EXPECT_EQ(m.shape().rows(), 96);
    if (m.op() == "router") {
      EXPECT_EQ(m.flops(), 2.0 * 48 * 32 * 4);
    }
    if (m.op() == "grouped_ffn") {
      EXPECT_EQ(m.flops(), 6.0 * 96 * 32 * 16);
    }
    if (m.op() == "dense_gemm") {
      EXPECT_EQ(m.flops(), 6.0 * 96 * 32 * 16) << "the baseline does the grouped FFN's FLOPs";
      EXPECT_EQ(m.shape().m(), 96);
      EXPECT_EQ(m.shape().n(), 48);
      EXPECT_EQ(m.shape().k(), 32);
    }
    if (m.op() == "unpermute") {
      EXPECT_EQ(m.bytes(), 2.0 * 96 * 32 + 8.0 * 48 * 2 + 2.0 * 48 * 32);
    }
    if (m.op() != "permute") {
      EXPECT_NEAR(m.tflops(), m.flops() / (m.timing().median_ms() * 1e-3) / 1e12, 1e-9 + 1e-9 * m.tflops());
    }
  }
  for (const Measurement& m : ms.measurements()) {
    if (m.shape().capacity_factor() != 0) {
      EXPECT_LT(m.shape().rows(), 96) << "capacity 1 with Zipf 2 drops copies";
    }
  }
}

TEST(Bench, OnlyTheChosenOps) {
  auto cpu = make_cpu_backend(1);
  BenchOptions options = tiny_options();
  options.ops = {"permute"};
  const Measurements ms = run_bench(*cpu, bench_sweep(true, false), options);
  for (const Measurement& m : ms.measurements()) EXPECT_EQ(m.op(), "permute");
  EXPECT_EQ(ms.measurements_size(), static_cast<int>(bench_sweep(true, false).size()));
  options.ops = {"softmax"};
  EXPECT_TRUE(test::contains(test::error_of([&] { run_bench(*cpu, {}, options); }), "bench: op: expected router"));
}

TEST(Bench, SweepsVaryOneAxisAtATime) {
  for (const bool is_gpu : {false, true}) {
    const auto points = bench_sweep(false, is_gpu);
    std::set<std::string> axes;
    for (const auto& p : points) axes.insert(p.axis);
    EXPECT_EQ(axes, (std::set<std::string>{"base", "tokens", "hidden", "experts", "topk", "ffn", "skew", "capacity"}));
    const BenchPoint& base = points.front();
    for (const auto& p : points) {
      if (p.axis == "tokens") {
        EXPECT_NE(p.tokens, base.tokens);
      } else {
        EXPECT_EQ(p.tokens, base.tokens) << p.axis;
      }
    }
  }
  EXPECT_LE(bench_sweep(true, false).size(), 6u) << "quick stays quick";
}

}  // namespace
}  // namespace moesim::kernels::harness
