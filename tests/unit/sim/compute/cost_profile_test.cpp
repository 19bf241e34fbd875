#include "sim/compute/cost_profile.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/units.hpp"
#include "tests/test_support.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::sim::compute {
namespace {

using test::contains;
using test::error_of;

CostProfile parse_text(const std::string& text) {
  return parse_cost_profile(load_yaml_text(text, "profile.yaml"), "profile.yaml");
}

std::vector<std::string> device_names(const CostProfile& profile) {
  std::vector<std::string> names;
  for (const DeviceProfile& device : profile.devices) names.push_back(device.name);
  return names;
}

TEST(CostProfile, DefaultHasTheSixDevicesOfTheIssue) {
  const CostProfile profile = default_cost_profile();
  EXPECT_EQ(device_names(profile),
            (std::vector<std::string>{"A100-SXM", "H100-SXM", "H800-SXM", "H200-SXM", "B200", "GB200"}));
  // Dense datasheet peaks (half the "with sparsity" figures), spot-checked against the H100 and A100 datasheets.
  const DeviceProfile& h100 = profile.device("H100-SXM");
  EXPECT_DOUBLE_EQ(h100.bf16_tflops, 989.4);
  EXPECT_DOUBLE_EQ(h100.fp8_tflops, 1978.9);
  EXPECT_DOUBLE_EQ(h100.hbm_bandwidth_bps, 3.35e12);
  EXPECT_EQ(h100.sm_count, 132);
  EXPECT_DOUBLE_EQ(h100.peak_flops_per_s(Precision::kBf16), 989.4e12);
  EXPECT_EQ(profile.device("A100-SXM").fp8_tflops, 0.0);
  EXPECT_EQ(h100.op(OpKind::kGroupedGemm).token_tile, 128);
  EXPECT_EQ(h100.op(OpKind::kDenseGemm).token_tile, 1);
}

TEST(CostProfile, EveryPresetGpuResolvesToADeviceWithTheSamePeaksAndBandwidth) {
  const CostProfile profile = default_cost_profile();
  for (const topologies::PresetInfo& preset : topologies::cluster_presets()) {
    SCOPED_TRACE(preset.name);
    const topologies::GpuSpec gpu = topologies::load_cluster(preset.name).gpu;
    const DeviceProfile* device = profile.find(gpu.name);
    ASSERT_NE(device, nullptr) << gpu.name;
    // The cluster presets and the cost profile cite the same datasheets, so they must agree.
    EXPECT_DOUBLE_EQ(device->bf16_tflops, gpu.bf16_tflops);
    EXPECT_DOUBLE_EQ(device->fp8_tflops, gpu.fp8_tflops);
    EXPECT_DOUBLE_EQ(device->hbm_bandwidth_bps, gpu.hbm_bandwidth_bps);
  }
}

TEST(CostProfile, NamesMatchIgnoringCaseAndPunctuation) {
  const CostProfile profile = default_cost_profile();
  EXPECT_EQ(profile.device("h100 sxm").name, "H100-SXM");
  EXPECT_EQ(profile.device("H100 SXM5 80GB").name, "H100-SXM");
  EXPECT_EQ(profile.device("B200 (GB200)").name, "GB200");  // the gb200-nvl72 preset's GPU
  EXPECT_EQ(profile.device("b200").name, "B200");
  EXPECT_EQ(profile.find("H100"), nullptr);  // PCIe and SXM differ; a bare "H100" is ambiguous
  EXPECT_EQ(profile.find("---"), nullptr);
}

TEST(CostProfile, UnknownDeviceNamesTheKeyAndWhatTheProfileHas) {
  const std::string error = error_of([] { default_cost_profile().device("MI300X", "cluster.yaml: gpu.name"); });
  EXPECT_TRUE(contains(error,
                       "cluster.yaml: gpu.name: unknown device 'MI300X': the cost profile "
                       "<default cost profile> has A100-SXM (A100 SXM4 80GB, A100 SXM4); H100-SXM"))
      << error;
}

TEST(CostProfile, WriteThenReadGivesTheSameProfile) {
  const CostProfile profile = default_cost_profile();
  const std::string text = write_cost_profile(profile);
  const CostProfile again = parse_text(text);
  EXPECT_EQ(again.devices, profile.devices);
  EXPECT_EQ(write_cost_profile(again), text);
}

TEST(CostProfile, RoundTripKeepsEveryNumberExactly) {
  // Values a fit produces: no round decimal, no round unit.
  CostProfile profile = default_cost_profile();
  DeviceProfile& h100 = profile.devices.at(1);
  h100.source = "fitted: measurements.pb # 2025, \"H100\"";
  h100.aliases.push_back("H100, lab node 7");
  h100.bf16_tflops = 0.1 + 0.2;
  h100.hbm_bandwidth_bps = 3.2987654321e12 + 1.0;
  h100.comm_bandwidth_per_sm_bps = 123.456;
  h100.op(OpKind::kRouter).launch_overhead_ps = 1'234'567;
  h100.op(OpKind::kPermute).launch_overhead_ps = 0;
  h100.op(OpKind::kGroupedGemm).compute_efficiency = 2.0 / 3.0;
  h100.op(OpKind::kGroupedGemm).token_tile = 64;
  const CostProfile again = parse_text(write_cost_profile(profile));
  EXPECT_EQ(again.devices, profile.devices);
}

TEST(CostProfile, LoadReadsAFileTheWriterWrote) {
  const std::string path = testing::TempDir() + "cost_profile_test.yaml";
  std::ofstream(path) << write_cost_profile(default_cost_profile());
  const CostProfile loaded = load_cost_profile(path);
  EXPECT_EQ(loaded.source, path);
  EXPECT_EQ(loaded.devices, default_cost_profile().devices);
  EXPECT_EQ(error_of([] { load_cost_profile("/nonexistent/profile.yaml"); }),
            "/nonexistent/profile.yaml: cannot read file");
}

TEST(CostProfile, BaseDefaultOverridesOnlyTheKeysGiven) {
  const CostProfile profile = parse_text(R"(base: default
devices:
  H100-SXM:
    comm_bandwidth_per_sm: 30 GB/s
    ops:
      grouped_gemm: {compute_efficiency: 0.5, token_tile: 64}
  MI300X:
    sm_count: 304
    bf16_tflops: 1307.4
    fp32_tflops: 163.4
    hbm_bandwidth: 5.3 TB/s
    comm_bandwidth_per_sm: 17 GB/s
    ops:
      dense_gemm:   {launch_overhead: 4 us, compute_efficiency: 0.6, memory_efficiency: 0.8}
      grouped_gemm: {launch_overhead: 4 us, compute_efficiency: 0.5, memory_efficiency: 0.8, token_tile: 256}
      attention:    {launch_overhead: 4 us, compute_efficiency: 0.5, memory_efficiency: 0.8}
      router:       {launch_overhead: 4 us, compute_efficiency: 0.3, memory_efficiency: 0.6}
      permute:      {launch_overhead: 4 us, compute_efficiency: 0.5, memory_efficiency: 0.7}
      unpermute:    {launch_overhead: 4 us, compute_efficiency: 0.5, memory_efficiency: 0.7}
      elementwise:  {launch_overhead: 4 us, compute_efficiency: 0.5, memory_efficiency: 0.85}
)");
  const CostProfile defaults = default_cost_profile();
  // The base's devices keep their order; a new device comes after them.
  std::vector<std::string> names = device_names(defaults);
  names.emplace_back("MI300X");
  EXPECT_EQ(device_names(profile), names);

  // H100-SXM differs from the default in exactly the three keys the file sets.
  DeviceProfile expected = defaults.device("H100-SXM");
  expected.comm_bandwidth_per_sm_bps = 30e9;
  expected.op(OpKind::kGroupedGemm).compute_efficiency = 0.5;
  expected.op(OpKind::kGroupedGemm).token_tile = 64;
  EXPECT_EQ(profile.device("H100-SXM"), expected);
  EXPECT_EQ(profile.device("A100-SXM"), defaults.device("A100-SXM"));

  const DeviceProfile& mi300x = profile.device("mi300x");
  EXPECT_EQ(mi300x.fp8_tflops, 0.0);  // left out: no FP8
  EXPECT_EQ(mi300x.op(OpKind::kGroupedGemm).token_tile, 256);
}

// Each bad input is reported at its own line of profile.yaml, with its full key path.
TEST(CostProfile, UnknownKeysAreRejectedAtTheirLine) {
  EXPECT_TRUE(contains(error_of([] { parse_text("base: default\ndevices:\n  H100-SXM:\n    sm_cont: 10\n"); }),
                       "profile.yaml:4: devices.H100-SXM.sm_cont: unknown key (expected one of: "));
  EXPECT_TRUE(contains(error_of([] {
                         parse_text(
                             "base: default\ndevices:\n  H100-SXM:\n    ops:\n"
                             "      router: {launch_overhaed: 1 us}\n");
                       }),
                       "profile.yaml:5: devices.H100-SXM.ops.router.launch_overhaed: unknown key"));
  // token_tile belongs to grouped_gemm alone.
  EXPECT_TRUE(contains(error_of([] {
                         parse_text(
                             "base: default\ndevices:\n  H100-SXM:\n    ops:\n      dense_gemm: {token_tile: 64}\n");
                       }),
                       "profile.yaml:5: devices.H100-SXM.ops.dense_gemm.token_tile: unknown key"));
  EXPECT_TRUE(
      contains(error_of([] { parse_text("base: default\nname: mine\n"); }), "profile.yaml:2: name: unknown key"));
}

TEST(CostProfile, EfficienciesMustBeInZeroToOne) {
  EXPECT_EQ(error_of([] {
              parse_text(
                  "base: default\ndevices:\n  H100-SXM:\n    ops:\n"
                  "      dense_gemm: {compute_efficiency: -0.5}\n");
            }),
            "profile.yaml:5: devices.H100-SXM.ops.dense_gemm.compute_efficiency: must be in (0, 1], got -0.5");
  EXPECT_EQ(error_of([] {
              parse_text(
                  "base: default\ndevices:\n  H100-SXM:\n    ops:\n"
                  "      permute:\n        memory_efficiency: 1.25\n");
            }),
            "profile.yaml:6: devices.H100-SXM.ops.permute.memory_efficiency: must be in (0, 1], got 1.25");
  EXPECT_EQ(error_of([] {
              parse_text(
                  "base: default\ndevices:\n  H100-SXM:\n    ops:\n"
                  "      permute: {memory_efficiency: 0}\n");
            }),
            "profile.yaml:5: devices.H100-SXM.ops.permute.memory_efficiency: must be in (0, 1], got 0");
}

TEST(CostProfile, UnknownOpKindIsNamedAsSuch) {
  EXPECT_EQ(error_of([] { parse_text("base: default\ndevices:\n  H100-SXM:\n    ops:\n      gemm: {}\n"); }),
            "profile.yaml:5: devices.H100-SXM.ops.gemm: unknown op kind (expected one of: dense_gemm, grouped_gemm, "
            "attention, router, permute, unpermute, elementwise)");
}

TEST(CostProfile, AnIncompleteDeviceTheBaseLacksIsAnUnknownDevice) {
  // Most likely a misspelt H100-SXM: say so rather than "missing bf16_tflops".
  EXPECT_EQ(error_of([] { parse_text("base: default\ndevices:\n  H10-SXM:\n    sm_count: 10\n"); }),
            "profile.yaml:4: devices.H10-SXM: unknown device: the base profile has A100-SXM, H100-SXM, H800-SXM, "
            "H200-SXM, B200, GB200; a new device must set every key, and this one lacks bf16_tflops");
}

TEST(CostProfile, OtherBadInputs) {
  // Without a base every key is required.
  EXPECT_EQ(error_of([] {
              parse_text(
                  "devices:\n  X:\n    sm_count: 10\n    bf16_tflops: 1\n    fp32_tflops: 1\n"
                  "    hbm_bandwidth: 1 TB/s\n    comm_bandwidth_per_sm: 1 GB/s\n");
            }),
            "profile.yaml:3: devices.X.ops: missing (expected a mapping)");
  EXPECT_TRUE(contains(error_of([] { parse_text("base: mine\n"); }),
                       "profile.yaml:1: base: expected one of default, got 'mine'"));
  EXPECT_EQ(error_of([] { parse_text("base: default\ndevices:\n  H100-SXM:\n    bf16_tflops: -1\n"); }),
            "profile.yaml:4: devices.H100-SXM.bf16_tflops: must be > 0, got -1");
  EXPECT_EQ(error_of([] { parse_text("base: default\ndevices:\n  H100-SXM:\n    sm_count: 0\n"); }),
            "profile.yaml:4: devices.H100-SXM.sm_count: must be >= 1, got 0");
  EXPECT_EQ(error_of([] { parse_text("base: default\ndevices:\n  H100-SXM:\n    aliases: [A100 SXM4]\n"); }),
            "profile.yaml:4: devices.H100-SXM.aliases: name 'A100 SXM4' also names device A100-SXM");
}

TEST(CostProfile, ValidateAndWriteRejectWhatTheParserWould) {
  CostProfile profile = default_cost_profile();
  profile.devices.at(0).op(OpKind::kAttention).compute_efficiency = 1.5;
  EXPECT_EQ(error_of([&] { validate_cost_profile(profile); }),
            "<default cost profile>: devices.A100-SXM.ops.attention.compute_efficiency: must be in (0, 1], got 1.5");
  EXPECT_EQ(error_of([&] { write_cost_profile(profile); }),
            "<default cost profile>: devices.A100-SXM.ops.attention.compute_efficiency: must be in (0, 1], got 1.5");
  profile = default_cost_profile();
  profile.devices.at(0).op(OpKind::kRouter).token_tile = 8;
  EXPECT_TRUE(contains(error_of([&] { validate_cost_profile(profile); }),
                       "devices.A100-SXM.ops.router.token_tile: only grouped_gemm has a token tile"));
}

}  // namespace
}  // namespace moesim::sim::compute
