// The CUDA backend through the same harness as the CPU one: the shape table validated against the FP64 references,
// repeatable results, a small bench. Every test skips itself (GTEST_SKIP) when this build has no CUDA backend or
// the machine has no usable GPU.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "kernels/backend.hpp"
#include "kernels/harness/bench.hpp"
#include "kernels/harness/validate.hpp"

namespace moesim::kernels {
namespace {

class CudaBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!has_cuda_backend()) GTEST_SKIP() << "moesim was built without CUDA";
    try {
      backend_ = make_cuda_backend(0);
    } catch (const std::exception& e) {
      GTEST_SKIP() << "no usable GPU: " << e.what();
    }
  }

  std::unique_ptr<Backend> backend_;
};

TEST_F(CudaBackend, DescribesTheGpu) {
  EXPECT_EQ(backend_->name(), "cuda");
  EXPECT_FALSE(backend_->device_name().empty());
  EXPECT_GT(backend_->compute_units(), 0) << "SMs";
  EXPECT_GT(backend_->cache_bytes(), 0u) << "the L2 size, for the bench's rotation";
}

TEST_F(CudaBackend, PassesTheFullShapeTable) {
  const auto results = harness::validate(*backend_, harness::select_shapes(false), 1);
  for (const auto& r : results) EXPECT_TRUE(r.passed()) << harness::validation_text(*backend_, {r}, 1);
}

TEST_F(CudaBackend, PassesWithAnotherSeed) {
  const auto results = harness::validate(*backend_, harness::select_shapes(true), 12345);
  for (const auto& r : results) EXPECT_TRUE(r.passed()) << harness::validation_text(*backend_, {r}, 12345);
}

TEST_F(CudaBackend, RunsAreRepeatable) {
  // Two runs of the same op on the same inputs: the same table, error for error.
  for (const auto& shape : harness::select_shapes(true)) {
    const auto a = harness::validate_grouped_ffn(*backend_, shape, 3);
    const auto b = harness::validate_grouped_ffn(*backend_, shape, 3);
    ASSERT_EQ(a.outputs.size(), b.outputs.size());
    for (std::size_t i = 0; i < a.outputs.size(); ++i) EXPECT_EQ(a.outputs[i].error, b.outputs[i].error) << shape.name;
  }
}

TEST_F(CudaBackend, BenchesTheQuickSweep) {
  harness::BenchOptions options;
  options.warmup = 1;
  options.min_iterations = 2;
  options.max_iterations = 5;
  options.target_seconds = 0.01;
  options.ops = {"router", "permute", "grouped_ffn", "dense_gemm", "unpermute"};  // the all-to-all has its own test
  const Measurements ms = harness::run_bench(*backend_, harness::bench_sweep(true, true), options);
  EXPECT_EQ(ms.backend(), "cuda");
  EXPECT_GT(ms.sm_count(), 0);
  EXPECT_EQ(ms.measurements_size(), static_cast<int>(harness::bench_sweep(true, true).size() * 5));
  for (const Measurement& m : ms.measurements()) EXPECT_GT(m.timing().median_ms(), 0) << m.op();
}

}  // namespace
}  // namespace moesim::kernels
