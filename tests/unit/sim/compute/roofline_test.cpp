#include "sim/compute/roofline.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "common/config.hpp"
#include "common/units.hpp"
#include "sim/compute/cost_profile.hpp"
#include "tests/test_support.hpp"

namespace moesim::sim::compute {
namespace {

using test::contains;
using test::error_of;

// A device with round numbers, so that every expected time below can be worked out by hand: BF16 100 TFLOP/s (FP8
// 200, FP32 10), HBM 1 TB/s, 100 SMs that each drive 10 GB/s of communication; every op kind launches in 2 us and
// reaches half the compute peak and 80% of the HBM bandwidth; grouped GEMM tiles are 128 tokens.
// So compute runs at 100e12 x 0.5 = 5e13 FLOP/s (BF16) and memory at 1e12 x 0.8 = 8e11 B/s.
constexpr const char* kTestProfile = R"(devices:
  test-gpu:
    sm_count: 100
    fp8_tflops: 200
    bf16_tflops: 100
    fp32_tflops: 10
    hbm_bandwidth: 1 TB/s
    comm_bandwidth_per_sm: 10 GB/s
    ops:
      dense_gemm:   {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
      grouped_gemm: {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8, token_tile: 128}
      attention:    {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
      router:       {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
      permute:      {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
      unpermute:    {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
      elementwise:  {launch_overhead: 2 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
)";

DeviceProfile test_device() {
  return parse_cost_profile(load_yaml_text(kTestProfile, "test.yaml"), "test.yaml").devices.at(0);
}

Op elementwise(double flops, double bytes) {
  Op op;
  op.kind = OpKind::kElementwise;
  op.flops = flops;
  op.bytes = bytes;
  return op;
}

TEST(Roofline, ComputeBoundGemmRunsAtThePeakTimesTheComputeEfficiency) {
  const DeviceProfile device = test_device();
  // A 1000 x 1000 x 1000 BF16 GEMM: 2e9 FLOPs at 5e13 FLOP/s = 40 us. It moves A and B in (2 x 1e6 elements x 2 B)
  // and C out (1e6 x 2 B) = 6e6 B, at 8e11 B/s = 7.5 us. Compute-bound: 2 us + 40 us = 42 us.
  const Op gemm = dense_gemm_op(1000, 1000, 1000, Precision::kBf16);
  EXPECT_DOUBLE_EQ(gemm.flops, 2e9);
  EXPECT_DOUBLE_EQ(gemm.bytes, 6e6);
  EXPECT_EQ(op_time(device, gemm), 42 * kPsPerUs);

  // In FP8 the peak doubles (20 us) and the inputs shrink to 1 B per element, the output stays BF16: 4e6 B, 5 us.
  // 2 us + 20 us = 22 us.
  const Op fp8 = dense_gemm_op(1000, 1000, 1000, Precision::kFp8);
  EXPECT_DOUBLE_EQ(fp8.bytes, 4e6);
  EXPECT_EQ(op_time(device, fp8), 22 * kPsPerUs);
}

TEST(Roofline, MemoryBoundElementwiseRunsAtTheBandwidthTimesTheMemoryEfficiency) {
  const DeviceProfile device = test_device();
  // Reading and writing 4 MB (8e6 B) at 8e11 B/s takes 10 us; its 1e6 FLOPs would take 0.02 us. 2 us + 10 us.
  EXPECT_EQ(op_time(device, elementwise(1e6, 8e6)), 12 * kPsPerUs);
}

TEST(Roofline, ZeroWorkCostsOnlyTheLaunchOverhead) {
  const DeviceProfile device = test_device();
  EXPECT_EQ(op_time(device, elementwise(0.0, 0.0)), 2 * kPsPerUs);
  EXPECT_EQ(op_time(device, grouped_gemm_op({0, 0, 0}, 1000, 1000, Precision::kBf16)), 2 * kPsPerUs);
}

TEST(Roofline, CrossoverIntensityIsPeakTimesComputeEfficiencyOverBandwidthTimesMemoryEfficiency) {
  const DeviceProfile device = test_device();
  // 100e12 x 0.5 / (1e12 x 0.8) = 62.5 FLOP/B.
  const double crossover = crossover_intensity(device, OpKind::kElementwise, Precision::kBf16);
  EXPECT_DOUBLE_EQ(crossover, 62.5);

  // At the crossover, 1e6 B take 1.25 us and so do their 62.5e6 FLOPs: 2 us + 1.25 us.
  EXPECT_EQ(op_time(device, elementwise(crossover * 1e6, 1e6)), 3'250'000);
  // Below it the bytes set the time (still 1.25 us); above it the FLOPs do (125e6 FLOPs: 2.5 us).
  EXPECT_EQ(op_time(device, elementwise(crossover * 0.5e6, 1e6)), 3'250'000);
  EXPECT_EQ(op_time(device, elementwise(crossover * 2e6, 1e6)), 4'500'000);

  // With half the SMs the compute roof halves, and so does the crossover.
  EXPECT_DOUBLE_EQ(crossover_intensity(device, OpKind::kElementwise, Precision::kBf16, 0.5), 31.25);
}

TEST(Roofline, GroupedGemmUnevenLoadsCostExactlyTheirTilePadding) {
  const DeviceProfile device = test_device();
  // Two experts, n = k = 1000, BF16, tile 128. Each padded token row costs 2 n k = 2e6 FLOPs = 0.04 us.
  // Even: 128 + 128 tokens fill 2 tiles exactly: 256 rows, 5.12e8 FLOPs, 10.24 us.
  // Uneven, same 256 tokens: 1 + 255 pad to 128 + 256 = 384 rows, 7.68e8 FLOPs, 15.36 us.
  // Bytes are the same for both (real rows only): per expert (tokens x 1000 + 1e6) x 2 B in + tokens x 1000 x 2 B
  // out, 5,024,000 B in all, 6.28 us; so both are compute-bound.
  const Op even = grouped_gemm_op({128, 128}, 1000, 1000, Precision::kBf16);
  const Op uneven = grouped_gemm_op({1, 255}, 1000, 1000, Precision::kBf16);
  EXPECT_DOUBLE_EQ(op_work(device, even).flops, 5.12e8);
  EXPECT_DOUBLE_EQ(op_work(device, uneven).flops, 7.68e8);
  EXPECT_DOUBLE_EQ(op_work(device, even).bytes, 5'024'000);
  EXPECT_DOUBLE_EQ(op_work(device, uneven).bytes, 5'024'000);
  EXPECT_EQ(op_time(device, even), 2 * kPsPerUs + 10'240'000);
  EXPECT_EQ(op_time(device, uneven), 2 * kPsPerUs + 15'360'000);
  // The difference is the 128 padding rows: 128 x 0.04 us = 5.12 us.
  EXPECT_EQ(op_time(device, uneven) - op_time(device, even), 5'120'000);

  // An expert with no tokens schedules no tile and reads no weights.
  const Op with_empty = grouped_gemm_op({1, 255, 0}, 1000, 1000, Precision::kBf16);
  EXPECT_EQ(op_time(device, with_empty), op_time(device, uneven));

  // With a tile of 1 there is no padding: the uneven load costs what the even one does.
  DeviceProfile untiled = device;
  untiled.op(OpKind::kGroupedGemm).token_tile = 1;
  EXPECT_EQ(op_time(untiled, uneven), op_time(untiled, even));
}

TEST(Roofline, SmFractionDividesComputeThroughputButNotMemoryBandwidth) {
  const DeviceProfile device = test_device();
  // The compute-bound GEMM above on half the SMs: 40 us of compute becomes 80 us. 2 us + 80 us.
  EXPECT_EQ(op_time(device, dense_gemm_op(1000, 1000, 1000, Precision::kBf16), 0.5), 82 * kPsPerUs);
  // The memory-bound op keeps its 10 us (its compute grows from 0.02 to 0.04 us, still below).
  EXPECT_EQ(op_time(device, elementwise(1e6, 8e6), 0.5), 12 * kPsPerUs);
}

TEST(Roofline, CommBandwidthLimitIsSmsTimesThePerSmBandwidth) {
  const DeviceProfile device = test_device();
  EXPECT_DOUBLE_EQ(comm_bandwidth_limit(device, 20), 200e9);    // 20 x 10 GB/s
  EXPECT_DOUBLE_EQ(comm_bandwidth_limit(device, 100), 1000e9);  // every SM
  EXPECT_TRUE(contains(error_of([&] { comm_bandwidth_limit(device, 0); }), "takes 1 to 100 SMs, got 0"));
  EXPECT_TRUE(contains(error_of([&] { comm_bandwidth_limit(device, 101); }), "takes 1 to 100 SMs, got 101"));
}

TEST(Roofline, RejectsWorkTheDeviceOrTheOpCannotHave) {
  DeviceProfile device = test_device();
  const Op gemm = dense_gemm_op(1000, 1000, 1000, Precision::kFp8);
  device.fp8_tflops = 0.0;  // an A100: no FP8 tensor cores
  EXPECT_EQ(error_of([&] { op_time(device, gemm); }),
            "dense_gemm (fp8): device test-gpu has no fp8 peak (its fp8_tflops is 0)");

  device = test_device();
  EXPECT_EQ(error_of([&] { op_time(device, gemm, 0.0); }), "sm_fraction must be in (0, 1], got 0");
  EXPECT_EQ(error_of([&] { op_time(device, gemm, 1.5); }), "sm_fraction must be in (0, 1], got 1.5");
  EXPECT_EQ(error_of([&] { op_time(device, elementwise(0.0, -1.0)); }),
            "elementwise (bf16): bytes must be finite and >= 0, got -1");
  EXPECT_EQ(error_of([&] {
              op_time(device, grouped_gemm_op({4, -1}, 8, 8, Precision::kBf16));
            }),
            "grouped_gemm (bf16): tokens_per_expert[1] must be >= 0, got -1");

  Op not_grouped = grouped_gemm_op({4}, 8, 8, Precision::kBf16);
  not_grouped.kind = OpKind::kDenseGemm;
  EXPECT_EQ(error_of([&] { op_time(device, not_grouped); }),
            "dense_gemm (bf16): only a grouped_gemm op takes a grouped shape");
  Op both = grouped_gemm_op({4}, 8, 8, Precision::kBf16);
  both.flops = 1.0;
  EXPECT_TRUE(contains(error_of([&] { op_time(device, both); }), "flops and bytes follow from the grouped shape"));
}

}  // namespace
}  // namespace moesim::sim::compute
