#include "sim/calibrate/calibrate.hpp"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "sim/compute/roofline.hpp"

namespace moesim::sim::calibrate {
namespace {

using compute::OpKind;

// A device with round numbers, the truth the synthetic measurements come from.
compute::DeviceProfile truth() {
  compute::DeviceProfile device;
  device.name = "Test CPU";
  device.sm_count = 4;
  device.bf16_tflops = 2.0;
  device.fp32_tflops = 2.0;
  device.hbm_bandwidth_bps = 100e9;
  device.comm_bandwidth_per_sm_bps = 25e9;
  for (compute::OpCost& op : device.ops) op = {time_from_us(5), 1.0, 1.0, 1};
  device.op(OpKind::kDenseGemm) = {time_from_us(5), 0.5, 0.8, 1};  // 1 TFLOP/s, 80 GB/s
  device.op(OpKind::kPermute) = {time_from_us(2), 1.0, 0.5, 1};    // 50 GB/s
  return device;
}

Sample gemm_sample(std::int64_t m, std::int64_t k) {
  const compute::Op op = compute::dense_gemm_op(m, 1024, k, compute::Precision::kBf16);
  Sample s;
  s.file = "synthetic";
  s.device = "Test CPU";
  s.is_cpu = true;
  s.num_threads = 4;
  s.op = "dense_gemm";
  s.kind = OpKind::kDenseGemm;
  s.flops = op.flops;
  s.bytes = op.bytes;
  s.tokens = m;
  s.hidden = k;
  return s;
}

Sample permute_sample(std::int64_t tokens, std::int64_t hidden) {
  Sample s;
  s.file = "synthetic";
  s.device = "Test CPU";
  s.is_cpu = true;
  s.num_threads = 4;
  s.op = "permute";
  s.kind = OpKind::kPermute;
  s.bytes = 2.0 * 3.0 * static_cast<double>(tokens * hidden);
  s.tokens = tokens;
  s.hidden = hidden;
  return s;
}

// Measurements the roofline itself generates, times a seeded multiplicative noise of about `noise` (log-normal).
std::vector<Sample> synthetic(double noise) {
  std::vector<Sample> samples;
  for (std::int64_t m = 1; m <= 4096; m *= 2) {
    for (std::int64_t k : {512, 2048}) samples.push_back(gemm_sample(m, k));
  }
  for (std::int64_t tokens = 16; tokens <= 16384; tokens *= 4) {
    for (std::int64_t hidden : {256, 1024, 4096}) samples.push_back(permute_sample(tokens, hidden));
  }
  std::mt19937_64 rng(42);
  std::normal_distribution<double> gauss(0.0, noise);
  const compute::DeviceProfile device = truth();
  for (Sample& s : samples) {
    compute::Op op;
    op.kind = s.kind;
    op.flops = s.flops;
    op.bytes = s.bytes;
    s.time_s = seconds_from_time(compute::op_time(device, op)) * std::exp(gauss(rng));
  }
  return samples;
}

std::vector<const Sample*> of_kind(const std::vector<Sample>& samples, OpKind kind) {
  std::vector<const Sample*> out;
  for (const Sample& s : samples) {
    if (s.kind == kind) out.push_back(&s);
  }
  return out;
}

TEST(Calibrate, FitRecoversTheRooflineThatGeneratedTheMeasurements) {
  // 1% noise: the fitted overhead and both rates land within a few percent of the truth (5 us, 1 TFLOP/s, 80 GB/s
  // for the GEMM, which spans memory-bound m = 1 to compute-bound m = 4096; 2 us and 50 GB/s for the permute).
  const std::vector<Sample> samples = synthetic(0.01);
  const KindFit gemm = fit_kind(of_kind(samples, OpKind::kDenseGemm));
  std::printf("dense_gemm: expected 5 us, 1e12 FLOP/s, 8e10 B/s; fitted %.3f us, %.4g, %.4g\n",
              gemm.launch_overhead_s * 1e6, gemm.compute_flops_per_s, gemm.memory_bytes_per_s);
  EXPECT_NEAR(gemm.launch_overhead_s, 5e-6, 0.5e-6);
  EXPECT_NEAR(gemm.compute_flops_per_s, 1e12, 0.03e12);
  EXPECT_NEAR(gemm.memory_bytes_per_s, 80e9, 3e9);
  EXPECT_TRUE(gemm.is_compute_fitted);
  EXPECT_TRUE(gemm.is_memory_fitted);

  const KindFit permute = fit_kind(of_kind(samples, OpKind::kPermute));
  std::printf("permute: expected 2 us, 5e10 B/s; fitted %.3f us, %.4g\n", permute.launch_overhead_s * 1e6,
              permute.memory_bytes_per_s);
  EXPECT_NEAR(permute.launch_overhead_s, 2e-6, 0.3e-6);
  EXPECT_NEAR(permute.memory_bytes_per_s, 50e9, 2e9);
  EXPECT_FALSE(permute.is_compute_fitted);  // no FLOPs
  EXPECT_EQ(permute.compute_flops_per_s, 0.0);
}

TEST(Calibrate, NoiseFreeFitIsExactAndPredictsHeldOutShapes) {
  // Without noise, the roofline is in the model family: held-out shapes are predicted to well under 1%.
  const std::vector<Sample> samples = synthetic(0.0);
  const Calibration calibration = calibrate(samples, "tokens=4096,16384");
  ASSERT_GT(calibration.result.held_out_size(), 0);
  for (const reports::CalibrationPoint& p : calibration.result.held_out()) {
    EXPECT_LT(std::abs(p.relative_error()), 0.01) << p.op() << " " << p.shape();
  }
  // The CPU device's peak is its best fitted rate: the GEMM's compute efficiency is 1, the permute's bandwidth is
  // relative to the GEMM's (50 / 80).
  ASSERT_EQ(calibration.profile.devices.size(), 1u);
  const compute::DeviceProfile& device = calibration.profile.devices.front();
  EXPECT_NEAR(device.bf16_tflops, 1.0, 0.01);
  EXPECT_NEAR(device.hbm_bandwidth_bps, 80e9, 0.8e9);
  EXPECT_NEAR(device.op(OpKind::kDenseGemm).compute_efficiency, 1.0, 1e-12);
  EXPECT_NEAR(device.op(OpKind::kPermute).memory_efficiency, 50.0 / 80.0, 0.01);
  // Not measured: attention takes the GEMM's parameters, elementwise the permute's.
  EXPECT_EQ(device.op(OpKind::kAttention), device.op(OpKind::kDenseGemm));
  EXPECT_EQ(device.op(OpKind::kElementwise), device.op(OpKind::kPermute));
}

TEST(Calibrate, WrittenProfileRoundTripsThroughTheLoader) {
  const Calibration calibration = calibrate(synthetic(0.02), "none");
  const std::string path = ::testing::TempDir() + "calibrated_profile.yaml";
  {
    std::ofstream out(path);
    out << compute::write_cost_profile(calibration.profile);
  }
  const compute::CostProfile loaded = compute::load_cost_profile(path);
  std::filesystem::remove(path);
  EXPECT_EQ(loaded.devices, calibration.profile.devices);
  // The device resolves by its name as a cluster would give it.
  EXPECT_NE(loaded.find("test cpu"), nullptr);
}

TEST(Calibrate, HoldoutRules) {
  const std::vector<Sample> samples = synthetic(0.0);
  int num_none = 0;
  for (bool flag : held_out(samples, "none")) num_none += flag ? 1 : 0;
  EXPECT_EQ(num_none, 0);
  // largest: GEMM m = 4096 (tokens) and k = 2048 (hidden), permute tokens = 16384 and hidden = 4096.
  const std::vector<bool> largest = held_out(samples, "largest");
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const bool expected = samples[i].tokens == 16384 || samples[i].hidden == 4096;
    EXPECT_EQ(largest[i], expected) << shape_label(samples[i]);
  }
  const std::vector<bool> rule = held_out(samples, "tokens=1+hidden=256");
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(rule[i], samples[i].tokens == 1 || samples[i].hidden == 256) << shape_label(samples[i]);
  }
  EXPECT_THROW(held_out(samples, "widgets=3"), std::invalid_argument);
  EXPECT_THROW(held_out(samples, "tokens=abc"), std::invalid_argument);
  EXPECT_THROW(held_out(samples, "tokens="), std::invalid_argument);
}

TEST(Calibrate, TooFewMeasurementsToFitIsAnError) {
  const std::vector<Sample> samples = synthetic(0.0);
  std::vector<const Sample*> two{&samples[0], &samples[1]};
  EXPECT_THROW(fit_kind(two), std::invalid_argument);
}

TEST(Calibrate, MalformedMeasurementsFileIsNamedInTheError) {
  const std::string path = ::testing::TempDir() + "malformed_measurements.pb";
  {
    std::ofstream out(path, std::ios::binary);
    out << "this is not a protobuf";
  }
  try {
    read_samples({path});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(read_samples({::testing::TempDir() + "no_such_measurements.pb"}), std::invalid_argument);
}

TEST(Calibrate, ReadsTheShippedCpuMeasurements) {
  const Samples samples =
      read_samples({std::string(MOESIM_SOURCE_DIR) + "/kernels/measurements/cpu-xeon-2-threads/cpu_bench.pb"});
  EXPECT_EQ(samples.samples.size(), 80u);
  EXPECT_EQ(samples.num_ignored, 0);
  EXPECT_TRUE(samples.samples.front().is_cpu);
}

}  // namespace
}  // namespace moesim::sim::calibrate
