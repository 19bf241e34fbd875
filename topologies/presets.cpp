#include "topologies/presets.hpp"

#include <array>

#include "common/config.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::topologies {
namespace {

// Sources. Datasheet peaks "with sparsity" are halved to dense. Per-direction bandwidths are half the
// bidirectional figures vendors print. HBM capacities are the physical stacks (an "80GB" H100 or A100 has five
// 16 GiB stacks; nvidia-smi reports 79.6 GiB), except GB200 where the spec sheet's 186 GB is all that is published.
//
// Latencies and per-message overheads are not on any spec sheet: the values below (NVLink hop 150 ns and 2 us per
// message, PCIe hop 250 ns, NIC hop 500 ns and 3 us per message, switch hop 150 ns) are typical orders of magnitude,
// placeholders until calibration against measured collectives replaces them. Efficiencies are 1 except where a
// source measured less.

// NVIDIA H100 Tensor Core GPU datasheet (H100 SXM5); NVIDIA DGX H100 datasheet and user guide (8 GPUs, 4 NVSwitch
// chips, 8 single-port ConnectX-7 for the compute fabric); NVIDIA DGX SuperPOD reference architecture with DGX H100
// (rail-optimised fat tree, 32-node scalable units, QM9700 switches with 64 NDR 400 Gb/s ports).
constexpr const char* kDgxH100 = R"(
name: dgx-h100
nodes: 32                     # one DGX SuperPOD scalable unit
gpus_per_node: 8              # DGX H100: 8x H100 SXM5
gpu:
  name: H100 SXM5 80GB
  bf16_tflops: 989.4          # H100 datasheet: 1,979 TFLOPS BF16 with sparsity
  fp8_tflops: 1978.9          # H100 datasheet: 3,958 TFLOPS FP8 with sparsity
  hbm_bandwidth: 3.35 TB/s    # H100 datasheet: HBM3, 3.35 TB/s
  hbm_capacity: 80 GiB        # H100 datasheet: 80 GB
nvlink:
  domain_gpus: 8              # DGX H100: the node's NVSwitches connect its 8 GPUs all-to-all
  bandwidth: 450 GB/s         # H100 datasheet: NVLink 4, 900 GB/s per GPU bidirectional
  latency: 150 ns             # placeholder
  overhead: 2 us              # placeholder
  efficiency: 1.0
pcie:
  bandwidth: 64 GB/s          # H100 datasheet: PCIe Gen5 x16, 128 GB/s bidirectional
  latency: 250 ns             # placeholder
  efficiency: 1.0
nic:
  per_node: 8                 # DGX H100: 8x ConnectX-7, one per GPU
  bandwidth: 400 Gb/s         # ConnectX-7: NDR InfiniBand 400 Gb/s
  latency: 500 ns             # placeholder
  overhead: 3 us              # placeholder
  efficiency: 1.0
fabric:
  kind: fat-tree
  planes: 1
  rail_optimized: true        # SuperPOD RA: NIC i of every node of a unit on the unit's leaf i
  pxn: true                   # NCCL routes cross-rail traffic through NVLink (PXN) by default
  link: {bandwidth: 400 Gb/s, latency: 150 ns, efficiency: 1.0}   # NDR switch-to-switch
  leaf: {down: 32, up: 32}    # QM9700: 64 ports, half down, half up (non-blocking)
  spine: {down: 64}           # QM9700: all 64 ports down
)";

// NVIDIA A100 Tensor Core GPU datasheet (A100 SXM 80GB); NVIDIA DGX A100 datasheet (8 GPUs, 6 NVSwitch chips,
// 8 single-port ConnectX-6 HDR 200 Gb/s for the compute fabric); NVIDIA DGX SuperPOD reference architecture with
// DGX A100 (20-node scalable units, QM8700 switches with 40 HDR ports).
constexpr const char* kDgxA100 = R"(
name: dgx-a100
nodes: 20                     # one DGX SuperPOD scalable unit
gpus_per_node: 8              # DGX A100: 8x A100 SXM4
gpu:
  name: A100 SXM4 80GB
  bf16_tflops: 312            # A100 datasheet: 312 TFLOPS BF16 dense
  fp8_tflops: 0               # A100 has no FP8 tensor cores
  hbm_bandwidth: 2.039 TB/s   # A100 datasheet: HBM2e, 2,039 GB/s
  hbm_capacity: 80 GiB        # A100 datasheet: 80 GB
nvlink:
  domain_gpus: 8              # DGX A100: the node's NVSwitches connect its 8 GPUs all-to-all
  bandwidth: 300 GB/s         # A100 datasheet: NVLink 3, 600 GB/s per GPU bidirectional
  latency: 150 ns             # placeholder
  overhead: 2 us              # placeholder
  efficiency: 1.0
pcie:
  bandwidth: 32 GB/s          # A100 datasheet: PCIe Gen4 x16, 64 GB/s bidirectional
  latency: 250 ns             # placeholder
  efficiency: 1.0
nic:
  per_node: 8                 # DGX A100: 8x ConnectX-6, one per GPU
  bandwidth: 200 Gb/s         # ConnectX-6: HDR InfiniBand 200 Gb/s
  latency: 500 ns             # placeholder
  overhead: 3 us              # placeholder
  efficiency: 1.0
fabric:
  kind: fat-tree
  planes: 1
  rail_optimized: true        # SuperPOD RA: rail-optimised
  pxn: true                   # NCCL PXN default
  link: {bandwidth: 200 Gb/s, latency: 150 ns, efficiency: 1.0}   # HDR switch-to-switch
  leaf: {down: 20, up: 20}    # QM8700: 40 ports, half down, half up
  spine: {down: 40}           # QM8700: all 40 ports down
)";

// H800 SXM5: the export variant of the H100 with the same compute and HBM3 (H100 datasheet) and NVLink cut to
// 400 GB/s bidirectional. DeepSeek-V3 technical report (arXiv 2412.19437), sections 3.1 and 3.2.2: each H800 node has
// 8 GPUs on NVLink and 8 InfiniBand 400 Gb/s NICs, and "NVLink offers a bandwidth of 160 GB/s" (hence efficiency 0.8,
// and DeepEP's README measures 153-158 GB/s intranode). Zhao et al., "Insights into DeepSeek-V3: Scaling
// Challenges and Reflections on Hardware for AI Architectures" (ISCA 2025): a multi-plane two-layer fat
// tree, each GPU/NIC pair on its own plane (8 planes), 64-port 400G InfiniBand switches.
constexpr const char* kH800 = R"(
name: h800
nodes: 32
gpus_per_node: 8
gpu:
  name: H800 SXM5 80GB
  bf16_tflops: 989.4          # same compute as H100 SXM5 (H100 datasheet)
  fp8_tflops: 1978.9
  hbm_bandwidth: 3.35 TB/s
  hbm_capacity: 80 GiB
nvlink:
  domain_gpus: 8
  bandwidth: 200 GB/s         # H800: NVLink 400 GB/s bidirectional
  latency: 150 ns             # placeholder
  overhead: 2 us              # placeholder
  efficiency: 0.8             # DeepSeek-V3 report / DeepEP: about 160 GB/s achievable
pcie:
  bandwidth: 64 GB/s          # PCIe Gen5 x16, 128 GB/s bidirectional
  latency: 250 ns             # placeholder
  efficiency: 1.0
nic:
  per_node: 8                 # DeepSeek-V3 report: 8 IB NICs per node, one per GPU
  bandwidth: 400 Gb/s         # ConnectX-7 NDR 400 Gb/s
  latency: 500 ns             # placeholder
  overhead: 3 us              # placeholder
  efficiency: 1.0
fabric:
  kind: fat-tree
  planes: 8                   # Insights into DeepSeek-V3: one plane per GPU/NIC index
  rail_optimized: true
  pxn: true                   # cross-plane traffic must forward through NVLink (no other path exists)
  link: {bandwidth: 400 Gb/s, latency: 150 ns, efficiency: 1.0}
  leaf: {down: 32, up: 32}    # 64-port 400G switches, half down, half up
  spine: {down: 64}
)";

// NVIDIA GB200 NVL72 specifications (per GPU: 10 PFLOPS FP8 and 5 PFLOPS BF16 with sparsity, up to 186 GB HBM3e at
// 8 TB/s, NVLink 5 at 1.8 TB/s bidirectional; 72 GPUs in one NVLink domain; 18 compute trays of 2 GB200 superchips,
// i.e. 4 GPUs, per rack). NICs: one ConnectX-7 400 Gb/s per GPU on PCIe Gen5 x16, scale-out on the same
// rail-optimised NDR fat tree as the DGX H100 SuperPOD.
constexpr const char* kGb200Nvl72 = R"(
name: gb200-nvl72
nodes: 72                     # compute trays: 4 racks of 18
gpus_per_node: 4              # a compute tray holds 2 GB200 superchips = 4 Blackwell GPUs
gpu:
  name: B200 (GB200)
  bf16_tflops: 2500           # GB200 NVL72 spec: 5 PFLOPS BF16 with sparsity per GPU
  fp8_tflops: 5000            # GB200 NVL72 spec: 10 PFLOPS FP8 with sparsity per GPU
  hbm_bandwidth: 8 TB/s       # GB200 NVL72 spec: HBM3e, 8 TB/s per GPU
  hbm_capacity: 186 GB        # GB200 NVL72 spec: 13.4 TB HBM3e per 72 GPUs
nvlink:
  domain_gpus: 72             # one NVLink domain per rack (so nodes must be a multiple of 18)
  bandwidth: 900 GB/s         # NVLink 5: 1.8 TB/s per GPU bidirectional
  latency: 150 ns             # placeholder
  overhead: 2 us              # placeholder
  efficiency: 1.0
pcie:
  bandwidth: 64 GB/s          # PCIe Gen5 x16 to each NIC, 128 GB/s bidirectional
  latency: 250 ns             # placeholder
  efficiency: 1.0
nic:
  per_node: 4                 # 4x ConnectX-7 per compute tray, one per GPU
  bandwidth: 400 Gb/s         # ConnectX-7 NDR 400 Gb/s
  latency: 500 ns             # placeholder
  overhead: 3 us              # placeholder
  efficiency: 1.0
fabric:
  kind: fat-tree
  planes: 1
  rail_optimized: true
  pxn: true
  link: {bandwidth: 400 Gb/s, latency: 150 ns, efficiency: 1.0}
  leaf: {down: 32, up: 32}    # QM9700, as in the DGX H100 SuperPOD
  spine: {down: 64}
)";

struct Preset {
  std::string_view name;
  std::string_view summary;
  const char* yaml;
};

constexpr std::array<Preset, 4> kPresets{{
    {"dgx-h100", "DGX H100 SuperPOD: 8x H100 per node, NVLink 4, 8x 400G NDR rail-optimised two-tier fat tree",
     kDgxH100},
    {"dgx-a100", "DGX A100 SuperPOD: 8x A100 per node, NVLink 3, 8x 200G HDR rail-optimised two-tier fat tree",
     kDgxA100},
    {"h800", "DeepSeek-style H800 cluster: NVLink at 160 GB/s, 8x 400G IB on an 8-plane two-tier fat tree", kH800},
    {"gb200-nvl72", "GB200 NVL72 racks: 72-GPU NVLink 5 domains, trays of 4 GPUs, 400G NDR rail-optimised fat tree",
     kGb200Nvl72},
}};

}  // namespace

std::optional<std::string_view> preset_yaml(std::string_view name) {
  for (const Preset& preset : kPresets) {
    if (preset.name == name) return std::string_view(preset.yaml);
  }
  return std::nullopt;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  names.reserve(std::size(kPresets));
  for (const Preset& preset : kPresets) names.emplace_back(preset.name);
  return names;
}

std::string preset_source(std::string_view name) {
  return "preset " + std::string(name);
}

std::vector<PresetInfo> cluster_presets() {
  std::vector<PresetInfo> out;
  for (const Preset& preset : kPresets) {
    // The default node count is read from the preset's own text so that the listing can never disagree with it.
    const YAML::Node root = load_yaml_text(preset.yaml, preset_source(preset.name));
    out.push_back({std::string(preset.name), std::string(preset.summary), root["nodes"].as<int>()});
  }
  return out;
}

}  // namespace moesim::topologies
