// The cost profile: what the compute model knows about each GPU (peaks, HBM bandwidth, SMs) and how close each kind
// of kernel gets to them (efficiencies, launch overhead, tile size). roofline.hpp turns it into operation times.
//
// The built-in profile holds A100, H100, H800, H200, B200 and GB200. Their peaks, bandwidths and SM counts come
// from NVIDIA's datasheets; their efficiencies, launch overheads and per-SM communication bandwidths are stated
// placeholders until calibration (issue 6) fits them to measured kernels and writes a profile file in this same
// schema (`--profile FILE`). write_cost_profile() emits it, and reading what it wrote gives the same profile.
//
// Schema (unknown keys are rejected at every level; defaults in brackets, "required" where there is none):
//
//   base: default                  # [none] start from the built-in profile; keys below override it, mappings merged
//   devices:                       # required: one mapping per device, keyed by its name
//     H100-SXM:
//       aliases: [H100 SXM5 80GB]  # [none] other GPU names (as cluster files write gpu.name) for this device
//       source: "..."              # [""] where the numbers come from
//       sm_count: 132              # required: streaming multiprocessors
//       fp8_tflops: 1978.9         # [0: no FP8] dense (not sparse) peak, TFLOP/s
//       bf16_tflops: 989.4         # required: dense peak, TFLOP/s
//       fp32_tflops: 67            # required: dense peak of the FP32 (non-tensor) pipes, TFLOP/s
//       hbm_bandwidth: 3.35 TB/s   # required
//       comm_bandwidth_per_sm: 25 GB/s   # required: what one SM of a communication kernel can drive
//       ops:                       # required: every op kind below, each with every key
//         dense_gemm:   {launch_overhead: 3 us, compute_efficiency: 0.75, memory_efficiency: 0.85}
//         grouped_gemm: {launch_overhead: 3 us, compute_efficiency: 0.65, memory_efficiency: 0.8, token_tile: 128}
//         attention:    {...}      # and router, permute, unpermute, elementwise
//
// Efficiencies are in (0, 1]. token_tile (grouped_gemm only) is the tile along the token dimension: each expert's
// token count is padded up to a multiple of it. With `base: default` a device of the built-in profile may be
// partly overridden; a device the base does not have must set every key.
//
// A GPU name resolves to a device when it equals the device's key or one of its aliases, ignoring case and every
// character that is not a letter or digit ("h100 sxm" finds H100-SXM). No two devices may share a name.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/units.hpp"

namespace moesim::sim::compute {

enum class Precision { kFp8, kBf16, kFp32 };
inline constexpr std::array<Precision, 3> kPrecisions{Precision::kFp8, Precision::kBf16, Precision::kFp32};

// "fp8", "bf16", "fp32".
std::string_view precision_name(Precision precision);
// Bytes per element: 1, 2, 4.
int precision_bytes(Precision precision);

enum class OpKind { kDenseGemm, kGroupedGemm, kAttention, kRouter, kPermute, kUnpermute, kElementwise };
inline constexpr std::array<OpKind, 7> kOpKinds{OpKind::kDenseGemm,  OpKind::kGroupedGemm, OpKind::kAttention,
                                                OpKind::kRouter,     OpKind::kPermute,     OpKind::kUnpermute,
                                                OpKind::kElementwise};

// The profile's key for an op kind: "dense_gemm", "grouped_gemm", "attention", "router", "permute", "unpermute",
// "elementwise".
std::string_view op_kind_name(OpKind kind);
std::optional<OpKind> op_kind_from_name(std::string_view name);

struct OpCost {
  TimePs launch_overhead_ps = 0;    // fixed cost per kernel: launch, prologue, epilogue
  double compute_efficiency = 1.0;  // achieved fraction of the peak FLOP/s, in (0, 1]
  double memory_efficiency = 1.0;   // achieved fraction of the HBM bandwidth, in (0, 1]
  int token_tile = 1;               // grouped_gemm only (1 elsewhere): each expert's tokens padded to a multiple

  bool operator==(const OpCost&) const = default;
};

struct DeviceProfile {
  std::string name;                  // the key, e.g. "H100-SXM"
  std::vector<std::string> aliases;  // other GPU names that resolve to this device
  std::string source;                // where the numbers come from (free text)
  int sm_count = 0;
  double fp8_tflops = 0.0;  // dense peaks, TFLOP/s; fp8 0 when the GPU has no FP8 tensor cores
  double bf16_tflops = 0.0;
  double fp32_tflops = 0.0;
  double hbm_bandwidth_bps = 0.0;          // bytes/s
  double comm_bandwidth_per_sm_bps = 0.0;  // bytes/s one SM of a communication kernel can drive
  std::array<OpCost, kOpKinds.size()> ops{};

  const OpCost& op(OpKind kind) const { return ops[static_cast<std::size_t>(kind)]; }
  OpCost& op(OpKind kind) { return ops[static_cast<std::size_t>(kind)]; }
  double peak_tflops(Precision precision) const;
  double peak_flops_per_s(Precision precision) const { return peak_tflops(precision) * 1e12; }

  bool operator==(const DeviceProfile&) const = default;
};

struct CostProfile {
  std::string source;  // the file or "<default cost profile>", for messages
  std::vector<DeviceProfile> devices;

  // The device that `gpu_name` names (its key or an alias, compared as described above), or null.
  const DeviceProfile* find(std::string_view gpu_name) const;
  // As find(), but throws std::invalid_argument naming `where` (e.g. "cluster.yaml: gpu.name"), the GPU name, this
  // profile's source and the devices it has.
  const DeviceProfile& device(std::string_view gpu_name, std::string_view where = "gpu.name") const;
};

// The built-in profile's YAML text (in the schema above, with its sources as comments).
extern const char* const kDefaultCostProfileYaml;

// The built-in profile: kDefaultCostProfileYaml parsed.
CostProfile default_cost_profile();

// Reads a profile file. Throws std::invalid_argument "FILE:LINE: key.path: what was expected".
CostProfile load_cost_profile(const std::string& path);

// Reads a parsed profile mapping; `source` names it in messages.
CostProfile parse_cost_profile(const YAML::Node& node, const std::string& source);

// Checks a profile built or changed in code (calibration's output) against the rules the parser enforces. Throws
// std::invalid_argument "SOURCE: devices.NAME.key: what was expected".
void validate_cost_profile(const CostProfile& profile);

// The profile as YAML in the schema above, every key written out (no `base:`), so that parsing the text gives back
// an equal profile (every number is written exactly). Validates first.
std::string write_cost_profile(const CostProfile& profile);

}  // namespace moesim::sim::compute
