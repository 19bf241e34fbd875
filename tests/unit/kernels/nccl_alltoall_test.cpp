// The NCCL all-to-all (kernels/cuda/nccl_alltoall.cu) over every GPU of the machine: the validation plans pass, with
// more than one seed and after the buffers have grown, and the bench measures both ops with nccl-tests' rates. Every
// test skips itself (GTEST_SKIP) without NCCL in the build or with fewer than 2 GPUs, saying which.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "kernels/backend.hpp"
#include "kernels/collectives.hpp"
#include "kernels/harness/bench.hpp"
#include "kernels/harness/collectives.hpp"
#include "kernels/harness/validate.hpp"

namespace moesim::kernels {
namespace {

class NcclAllToAll : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = nccl_alltoall_unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << reason;
    backend_ = make_cuda_backend(0);
    exchange_ = make_nccl_alltoall();
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<AllToAll> exchange_;
};

TEST_F(NcclAllToAll, UsesEveryGpu) {
  EXPECT_EQ(exchange_->name(), "nccl");
  EXPECT_GE(exchange_->num_ranks(), 2);
  EXPECT_EQ(exchange_->device_name(), backend_->device_name()) << "rank 0 is GPU 0";
  EXPECT_EQ(harness::collectives_unavailable_reason(*backend_), "");
}

TEST_F(NcclAllToAll, PassesValidation) {
  // Through the same entry point as `moesim-kernels validate --backend cuda`: its own communicator over every GPU.
  const auto results = harness::validate_collectives(*backend_, 1);
  ASSERT_EQ(results.size(), 4u);
  for (const auto& r : results) EXPECT_TRUE(r.passed()) << harness::validation_text(*backend_, {r}, 1);
}

TEST_F(NcclAllToAll, StaysCorrectAcrossSeedsAndRegrownBuffers) {
  const int n = exchange_->num_ranks();
  for (const std::uint64_t seed : {7u, 12345u}) {
    // Small, then large (the buffers grow), then small again (they are reused).
    for (const std::int64_t bytes : {std::int64_t{4096} * 4, std::int64_t{4} << 20, std::int64_t{4096} * 4}) {
      const auto even =
          harness::validate_alltoall(*exchange_, "nccl_alltoall", "even", harness::alltoall_plan(n, bytes), seed);
      EXPECT_TRUE(even.passed()) << harness::validation_text(*backend_, {even}, seed);
      const auto uneven = harness::validate_alltoall(
          *exchange_, "nccl_alltoallv", "zipf", harness::alltoallv_plan(n, bytes, harness::kAllToAllvSkew, seed), seed);
      EXPECT_TRUE(uneven.passed()) << harness::validation_text(*backend_, {uneven}, seed);
    }
  }
}

TEST_F(NcclAllToAll, BenchMeasuresBothOps) {
  harness::BenchOptions options;
  options.warmup = 2;
  options.min_iterations = 3;
  options.max_iterations = 5;
  options.target_seconds = 0.01;
  options.ops = {"nccl_alltoall", "nccl_alltoallv"};
  options.alltoall_bytes_per_rank = {1 << 20, 16 << 20};
  const Measurements ms = harness::run_bench(*backend_, {}, options);
  EXPECT_EQ(ms.skipped_size(), 0);
  ASSERT_EQ(ms.measurements_size(), 4);
  const int n = exchange_->num_ranks();
  for (const Measurement& m : ms.measurements()) {
    EXPECT_EQ(m.shape().num_gpus(), n);
    EXPECT_GT(m.timing().min_ms(), 0) << m.op();
    EXPECT_LE(m.timing().min_ms(), m.timing().median_ms());
    EXPECT_LE(m.timing().median_ms(), m.timing().max_ms());
    EXPECT_GT(m.algbw_gbps(), 0) << m.op();
    EXPECT_NEAR(m.busbw_gbps(), m.algbw_gbps() * (n - 1) / n, 1e-9 * m.algbw_gbps());
  }
}

}  // namespace
}  // namespace moesim::kernels
