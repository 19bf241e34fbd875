// The all-to-all ops of the harness without a GPU: the plans, the bandwidth formulas, validation on the host
// reference and on deliberately broken exchanges, the bench on the host reference, and the skipped reports that a
// machine without 2 GPUs (or a build without NCCL, or the CPU backend) gives instead of measurements or passes.
#include "kernels/harness/collectives.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "kernels/config.hpp"
#include "kernels/harness/measurements_io.hpp"
#include "tests/test_support.hpp"

namespace moesim::kernels::harness {
namespace {

BenchOptions tiny_options() {
  BenchOptions o;
  o.cache_bytes = 64 << 10;  // rotate the backend's ops over 192 KiB, not the machine's 3x LLC
  o.warmup = 1;
  o.min_iterations = 2;
  o.max_iterations = 3;
  o.target_seconds = 0;
  return o;
}

TEST(AllToAllOps, NamesParseAsBenchOps) {
  EXPECT_EQ(collective_op_names(), (std::vector<std::string>{"nccl_alltoall", "nccl_alltoallv"}));
  const auto& names = bench_op_names();
  for (const auto& op : collective_op_names()) {
    EXPECT_NE(std::find(names.begin(), names.end(), op), names.end()) << op;
    EXPECT_TRUE(is_collective_op(op));
  }
  EXPECT_FALSE(is_collective_op("permute"));
  auto cpu = make_cpu_backend(1);
  BenchOptions options = tiny_options();
  options.ops = {"nccl_alltoallx"};
  EXPECT_TRUE(test::contains(test::error_of([&] { run_bench(*cpu, {}, options); }), "nccl_alltoall or nccl_alltoallv"));
}

TEST(AllToAllOps, CannotRunOnTheCpuBackend) {
  auto cpu = make_cpu_backend(1);
  const std::string reason = collectives_unavailable_reason(*cpu);
  EXPECT_EQ(reason, MOESIM_HAVE_NCCL ? "needs --backend cuda" : "built without NCCL");
}

TEST(AllToAllPlans, EvenSendsTheSameWordsToEveryRank) {
  // 1 MiB over 3 ranks: floor(2^20 / 12) = 87381 words per peer, 12 bytes short of 1 MiB per rank in all.
  const AllToAllPlan plan = alltoall_plan(3, 1 << 20);
  EXPECT_NO_THROW(check_args(plan));
  for (const std::int64_t b : plan.bytes) EXPECT_EQ(b, 87381 * 4);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(plan.send_bytes(r), 3 * 87381 * 4);
    EXPECT_EQ(plan.recv_bytes(r), 3 * 87381 * 4);
  }
  EXPECT_EQ(alltoall_plan(8, 256LL << 20).send_bytes(0), 256LL << 20) << "powers of two divide evenly";
}

TEST(AllToAllPlans, UnevenFollowsTheSkewAndSendsTheSameTotal) {
  const int n = 8;
  const std::int64_t bytes = 4096LL * 64;  // units of 64 bytes
  const AllToAllPlan plan = alltoallv_plan(n, bytes, kAllToAllvSkew, 1);
  EXPECT_NO_THROW(check_args(plan));
  std::int64_t smallest = bytes;
  std::int64_t largest = 0;
  for (int s = 0; s < n; ++s) {
    EXPECT_EQ(plan.send_bytes(s), bytes) << "every sender sends S";
    for (int d = 0; d < n; ++d) {
      EXPECT_EQ(plan.at(s, d) % 64, 0) << "whole units";
      smallest = std::min(smallest, plan.at(s, d));
      largest = std::max(largest, plan.at(s, d));
    }
  }
  EXPECT_GT(largest, 2 * smallest) << "uneven";
  // Zipf 1 over 8 ranks: rank 0's share is 1 / H(8) = 0.368 and rank 7's 0.046 of what the 8 senders send.
  const double total = static_cast<double>(n) * static_cast<double>(bytes);
  EXPECT_NEAR(static_cast<double>(plan.recv_bytes(0)) / total, 0.368, 0.03);
  EXPECT_NEAR(static_cast<double>(plan.recv_bytes(7)) / total, 0.046, 0.02);
  EXPECT_EQ(alltoallv_plan(n, bytes, kAllToAllvSkew, 1).bytes, plan.bytes) << "the same seed, the same plan";
  EXPECT_NE(alltoallv_plan(n, bytes, kAllToAllvSkew, 2).bytes, plan.bytes) << "another seed, another plan";

  const AllToAllPlan to_one = alltoallv_plan(4, 4096LL * 4, {Skew::Kind::kAllToOne, 0}, 1);
  for (int s = 0; s < 4; ++s)
    for (int d = 0; d < 4; ++d) EXPECT_EQ(to_one.at(s, d), d == 0 ? 4096 * 4 : 0);
  EXPECT_TRUE(test::contains(test::error_of([] { alltoallv_plan(2, 4095LL * 4, kAllToAllvSkew, 1); }),
                             "alltoallv: bytes_per_rank: must be at least 4096 x 4 bytes"));
}

TEST(AllToAllPlans, BenchSizesRunFrom1To256MiB) {
  const auto sizes = alltoall_sizes(false);
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(sizes.front(), 1LL << 20);
  EXPECT_EQ(sizes.back(), 256LL << 20);
  EXPECT_LE(alltoall_sizes(true).size(), 2u) << "quick stays quick";
  for (const auto bytes : sizes) EXPECT_NO_THROW(alltoallv_plan(8, bytes, kAllToAllvSkew, 1)) << bytes;
}

TEST(AllToAllBandwidth, AsNcclTestsDefinesIt) {
  // 256 MiB per rank in 2 ms on 8 GPUs: algbw = 268435456 B / 2 ms = 134.2 GB/s; busbw = algbw x 7 / 8.
  const Bandwidth bw = alltoall_bandwidth(256LL << 20, 8, 2.0);
  EXPECT_DOUBLE_EQ(bw.algbw_gbps, 268435456.0 / 2e-3 / 1e9);
  EXPECT_DOUBLE_EQ(bw.busbw_gbps, bw.algbw_gbps * 7 / 8);
  EXPECT_EQ(alltoall_bandwidth(1 << 20, 2, 0).algbw_gbps, 0) << "no time, no rate";
}

// An exchange that breaks the host reference in one way.
enum class Breakage { kDoesNothing, kOneWrongWord, kSwapsSenders };

class BrokenAllToAll final : public AllToAll {
 public:
  BrokenAllToAll(int num_ranks, Breakage breakage) : host_(make_host_alltoall(num_ranks)), breakage_(breakage) {}
  std::string name() const override { return "broken"; }
  int num_ranks() const override { return host_->num_ranks(); }
  std::string device_name() const override { return "test double"; }
  void set_plan(const AllToAllPlan& plan) override {
    plan_ = plan;
    host_->set_plan(plan);
  }
  void upload_send(int r, const void* host) override { host_->upload_send(r, host); }
  void fill_send(unsigned char b) override { host_->fill_send(b); }
  void fill_recv(unsigned char b) override { host_->fill_recv(b); }
  void download_recv(int r, void* host) override {
    host_->download_recv(r, host);
    const auto bytes = static_cast<std::size_t>(plan_.recv_bytes(r));
    auto* words = static_cast<std::int32_t*>(host);
    if (breakage_ == Breakage::kOneWrongWord && r == num_ranks() - 1 && bytes > 0) words[bytes / 4 - 1] ^= 1;
    // Receiver 0 gets its chunks from senders 0 and 1 in the wrong order (equal sizes in the even plan).
    if (breakage_ == Breakage::kSwapsSenders && r == 0 && plan_.at(0, 0) == plan_.at(1, 0))
      std::rotate(words, words + plan_.at(0, 0) / 4, words + (plan_.at(0, 0) + plan_.at(1, 0)) / 4);
  }
  double exchange() override { return breakage_ == Breakage::kDoesNothing ? 1.0 : host_->exchange(); }

 private:
  std::unique_ptr<AllToAll> host_;
  Breakage breakage_;
  AllToAllPlan plan_;
};

TEST(ValidateAllToAll, PassesTheHostReference) {
  auto cpu = make_cpu_backend(1);
  for (const int n : {1, 2, 3, 8}) {
    const auto results = validate_collectives(*cpu, 1, nullptr, [n] { return make_host_alltoall(n); });
    ASSERT_EQ(results.size(), 4u);
    std::set<std::string> ops;
    for (const auto& r : results) {
      ops.insert(r.op);
      EXPECT_TRUE(r.passed()) << validation_text(*cpu, {r}, 1);
      EXPECT_EQ(r.outputs.size(), static_cast<std::size_t>(n)) << "one comparison per receiver";
      EXPECT_TRUE(r.skipped.empty());
    }
    EXPECT_EQ(ops, (std::set<std::string>{"nccl_alltoall", "nccl_alltoallv"}));
  }
}

TEST(ValidateAllToAll, FailsABrokenExchange) {
  for (const Breakage breakage : {Breakage::kDoesNothing, Breakage::kOneWrongWord, Breakage::kSwapsSenders}) {
    BrokenAllToAll broken(4, breakage);
    const OpResult r = validate_alltoall(broken, "nccl_alltoall", "even", alltoall_plan(4, 4096), 1);
    EXPECT_FALSE(r.passed()) << static_cast<int>(breakage);
    EXPECT_TRUE(r.failed());
    const auto bad = std::count_if(r.outputs.begin(), r.outputs.end(), [](const auto& c) { return !c.passed(); });
    EXPECT_EQ(bad, breakage == Breakage::kDoesNothing ? 4 : 1) << static_cast<int>(breakage);
  }
}

TEST(ValidateAllToAll, ReportsSkippedNeverPassedWhereItCannotRun) {
  // The CPU backend: the ops cannot run (needs --backend cuda, or built without NCCL), so each is one skipped row.
  auto cpu = make_cpu_backend(1);
  const auto results = validate_collectives(*cpu, 1);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_FALSE(r.passed()) << r.op;
    EXPECT_FALSE(r.failed()) << r.op;
    EXPECT_EQ(r.skipped, collectives_unavailable_reason(*cpu));
  }
  const std::string text = validation_text(*cpu, results, 1);
  EXPECT_TRUE(test::contains(text, "skipped  " + collectives_unavailable_reason(*cpu))) << text;
  EXPECT_TRUE(test::contains(text, "all 0 checks passed, 2 skipped")) << text;
  EXPECT_FALSE(test::contains(text, "pass ")) << text;
  const std::string json = validation_json(*cpu, results, 1);
  EXPECT_TRUE(test::contains(json, "\"skipped\": \"" + collectives_unavailable_reason(*cpu) + "\"")) << json;
}

TEST(BenchAllToAll, SkipsWithTheReasonAndNoMeasurement) {
  auto cpu = make_cpu_backend(1);
  BenchOptions options = tiny_options();
  options.ops = {"nccl_alltoall", "nccl_alltoallv"};
  std::vector<std::string> progress;
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  const Measurements ms = run_bench(*cpu, bench_sweep(true, false), options);
  EXPECT_EQ(ms.measurements_size(), 0);
  EXPECT_TRUE(progress.empty());
  ASSERT_EQ(ms.skipped_size(), 2);
  EXPECT_EQ(ms.skipped(0).op(), "nccl_alltoall");
  EXPECT_EQ(ms.skipped(1).op(), "nccl_alltoallv");
  for (const SkippedOp& s : ms.skipped()) EXPECT_EQ(s.reason(), collectives_unavailable_reason(*cpu));
  const std::string text = bench_text(ms);
  EXPECT_TRUE(test::contains(text, "skipped nccl_alltoall: " + collectives_unavailable_reason(*cpu) + "\n")) << text;
  EXPECT_TRUE(test::contains(text, "skipped nccl_alltoallv: ")) << text;
}

TEST(BenchAllToAll, MeasuresTheHostReference) {
  // The bench's path with the host reference standing in for NCCL: a measurement per (op, size), with the rates of
  // the formulas and the fields calibration reads.
  auto cpu = make_cpu_backend(1);
  BenchOptions options = tiny_options();
  options.ops = {"permute", "nccl_alltoall", "nccl_alltoallv"};
  options.alltoall_bytes_per_rank = {1 << 16, 1 << 18};
  options.make_alltoall = [] { return make_host_alltoall(4); };
  std::vector<std::string> progress;
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  BenchPoint p;
  p.axis = "base";
  p.tokens = 16;
  p.hidden = 8;
  p.experts = 4;
  p.topk = 2;
  p.ffn = 8;
  const Measurements ms = run_bench(*cpu, {p}, options);
  EXPECT_EQ(ms.skipped_size(), 0);
  ASSERT_EQ(ms.measurements_size(), 1 + 2 * 2);
  EXPECT_EQ(progress.size(), 5u);
  EXPECT_TRUE(test::contains(progress.back(), "[5/5] nccl_alltoallv gpus=4 bytes_per_rank=262144")) << progress.back();
  for (const Measurement& m : ms.measurements()) {
    if (!is_collective_op(m.op())) continue;
    const Shape& s = m.shape();
    EXPECT_EQ(s.num_gpus(), 4);
    EXPECT_TRUE(s.bytes_per_rank() == 1 << 16 || s.bytes_per_rank() == 1 << 18) << s.bytes_per_rank();
    EXPECT_EQ(m.bytes(), static_cast<double>(s.bytes_per_rank()));
    const double seconds = m.timing().median_ms() * 1e-3;
    EXPECT_NEAR(m.algbw_gbps(), s.bytes_per_rank() / seconds / 1e9, 1e-9 * m.algbw_gbps());
    EXPECT_NEAR(m.busbw_gbps(), m.algbw_gbps() * 3 / 4, 1e-9 * m.algbw_gbps());
    EXPECT_EQ(m.gbps(), m.algbw_gbps());
    EXPECT_EQ(m.timing().samples_ms_size(), m.timing().iterations());
    if (m.op() == "nccl_alltoall") {
      EXPECT_EQ(s.skew(), "uniform");
      EXPECT_EQ(s.max_recv_bytes_per_rank(), s.bytes_per_rank());
    } else {
      EXPECT_EQ(s.skew(), kAllToAllvSkew.name());
      EXPECT_GT(s.max_recv_bytes_per_rank(), s.bytes_per_rank()) << "rank 0 receives more than it sends";
    }
  }
  const std::string text = bench_text(ms);
  EXPECT_TRUE(test::contains(text, "algbw GB/s")) << text;
  EXPECT_TRUE(test::contains(text, "permute")) << text;
  const std::string csv = measurements_csv(ms);
  EXPECT_TRUE(test::contains(csv, ",num_gpus,bytes_per_rank,max_recv_bytes_per_rank,algbw_gbps,busbw_gbps\n")) << csv;
}

}  // namespace
}  // namespace moesim::kernels::harness
