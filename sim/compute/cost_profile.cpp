#include "sim/compute/cost_profile.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "common/config.hpp"

namespace moesim::sim::compute {

// Sources. Peaks are dense: datasheet figures printed "with sparsity" are halved. FP32 is the non-tensor FP32 peak
// (what FP32 element-wise and reduction work runs on; TF32 tensor-core GEMMs are not modelled). SM counts come from
// NVIDIA's architecture whitepapers and, for Blackwell (not on its datasheets), from the CUDA device query.
//
// Everything below the spec numbers is a PLACEHOLDER, the same for every device, until calibration (issue 6) fits
// it to measured kernels. The values are typical achieved fractions of the peaks, chosen from kernel-level
// measurements, never tuned to reproduce a published end-to-end figure (MFU, step time, tokens/s):
//   dense_gemm   compute 0.75, memory 0.85: large cuBLAS BF16/FP8 GEMMs are commonly measured at 70-80% of the dense
//                tensor peak.
//   grouped_gemm compute 0.65, memory 0.80: per-expert GEMMs are smaller (partial waves, more prologue per FLOP);
//                DeepGEMM's README reports up to 1550 TFLOPS FP8 on H800 (78% of its dense peak) at its best shapes,
//                so a typical grouped shape sits lower. token_tile 128: DeepGEMM's contiguous layout aligns each
//                expert's rows to the GEMM's M block (get_mk_alignment_for_contiguous_layout(), 128 rows).
//   attention    compute 0.60, memory 0.80: FlashAttention-2 reports 50-73% of peak on A100 (forward) and
//                FlashAttention-3 up to 75% on H100 (740 TFLOPS FP16); backward passes and short sequences reach less.
//   router       compute 0.30, memory 0.60: a narrow GEMM (hidden x experts) fused with softmax and top-k, too small
//                to fill the GPU.
//   permute, unpermute  compute 0.50, memory 0.70: row gathers and scatters through an index (almost no FLOPs;
//                the access pattern is irregular).
//   elementwise  compute 0.50, memory 0.85: streaming kernels reach roughly 85-90% of the datasheet HBM bandwidth.
//   launch_overhead 3 us for every kind: a near-empty kernel costs a few microseconds from launch to completion on
//                a stream.
//   comm_bandwidth_per_sm: each SM's equal share of the HBM bandwidth (a communication kernel reads its source from
//                HBM), rounded. On H800 it lets 20 of the 132 SMs drive 500 GB/s, consistent with DeepSeek-V3
//                (arXiv 2412.19437, section 3.2.2) saturating InfiniBand (50 GB/s) and NVLink (160 GB/s) with 20 SMs.
const char* const kDefaultCostProfileYaml =
    R"(# moesim's built-in cost profile (sources in sim/compute/cost_profile.cpp)
devices:
  A100-SXM:
    aliases: [A100 SXM4 80GB, A100 SXM4]
    source: NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB); NVIDIA A100 architecture whitepaper (108 SMs)
    sm_count: 108                   # A100 whitepaper: 108 SMs enabled
    fp8_tflops: 0                   # Ampere has no FP8 tensor cores
    bf16_tflops: 312                # datasheet: BF16 tensor 312 TFLOPS (624 with sparsity)
    fp32_tflops: 19.5               # datasheet: FP32 19.5 TFLOPS
    hbm_bandwidth: 2.039 TB/s       # datasheet: HBM2e 2,039 GB/s
    comm_bandwidth_per_sm: 19 GB/s  # placeholder: 2,039 GB/s / 108 SMs
    ops: &placeholder_ops  # the same placeholders on every device, until calibration fits them
      dense_gemm:   {launch_overhead: 3 us, compute_efficiency: 0.75, memory_efficiency: 0.85}
      grouped_gemm: {launch_overhead: 3 us, compute_efficiency: 0.65, memory_efficiency: 0.8, token_tile: 128}
      attention:    {launch_overhead: 3 us, compute_efficiency: 0.6, memory_efficiency: 0.8}
      router:       {launch_overhead: 3 us, compute_efficiency: 0.3, memory_efficiency: 0.6}
      permute:      {launch_overhead: 3 us, compute_efficiency: 0.5, memory_efficiency: 0.7}
      unpermute:    {launch_overhead: 3 us, compute_efficiency: 0.5, memory_efficiency: 0.7}
      elementwise:  {launch_overhead: 3 us, compute_efficiency: 0.5, memory_efficiency: 0.85}
  H100-SXM:
    aliases: [H100 SXM5 80GB, H100 SXM5]
    source: NVIDIA H100 Tensor Core GPU datasheet (H100 SXM); NVIDIA H100 architecture whitepaper (132 SMs on SXM5)
    sm_count: 132                   # H100 whitepaper: 132 SMs on H100 SXM5
    fp8_tflops: 1978.9              # datasheet: FP8 3,958 TFLOPS with sparsity
    bf16_tflops: 989.4              # datasheet: BF16 1,979 TFLOPS with sparsity
    fp32_tflops: 67                 # datasheet: FP32 67 TFLOPS
    hbm_bandwidth: 3.35 TB/s        # datasheet: HBM3 3.35 TB/s
    comm_bandwidth_per_sm: 25 GB/s  # placeholder: 3.35 TB/s / 132 SMs
    ops: *placeholder_ops
  H800-SXM:
    aliases: [H800 SXM5 80GB, H800 SXM5]
    source: NVIDIA H800 Tensor Core GPU datasheet (H800 SXM5); DeepSeek-V3 technical report (132 SMs)
    sm_count: 132                   # DeepSeek-V3 report (arXiv 2412.19437) section 3.2.2: 132 SMs per H800
    fp8_tflops: 1978.9              # datasheet: FP8 3,958 TFLOPS with sparsity (H100 SXM5 compute)
    bf16_tflops: 989.4              # datasheet: BF16 1,979 TFLOPS with sparsity
    fp32_tflops: 67                 # datasheet: FP32 67 TFLOPS
    hbm_bandwidth: 3.35 TB/s        # datasheet: HBM3 3.35 TB/s
    comm_bandwidth_per_sm: 25 GB/s  # placeholder: 3.35 TB/s / 132 SMs
    ops: *placeholder_ops
  H200-SXM:
    aliases: [H200 SXM 141GB, H200 SXM5]
    source: NVIDIA H200 Tensor Core GPU datasheet (H200 SXM); the GH100 SXM5 configuration of the H100 whitepaper
    sm_count: 132                   # same GH100 configuration as H100 SXM5 (H100 whitepaper)
    fp8_tflops: 1978.9              # datasheet: FP8 3,958 TFLOPS with sparsity
    bf16_tflops: 989.4              # datasheet: BF16 1,979 TFLOPS with sparsity
    fp32_tflops: 67                 # datasheet: FP32 67 TFLOPS
    hbm_bandwidth: 4.8 TB/s         # datasheet: HBM3e 4.8 TB/s
    comm_bandwidth_per_sm: 36 GB/s  # placeholder: 4.8 TB/s / 132 SMs
    ops: *placeholder_ops
  B200:
    aliases: [HGX B200, B200 SXM]
    source: NVIDIA HGX B200 specifications (per GPU); SM count from the CUDA device query
    sm_count: 148                   # cudaDeviceProp::multiProcessorCount on B200 (not on the datasheet)
    fp8_tflops: 4500                # HGX B200 spec: FP8 9 PFLOPS with sparsity per GPU
    bf16_tflops: 2250               # HGX B200 spec: BF16 4.5 PFLOPS with sparsity per GPU
    fp32_tflops: 75                 # HGX B200 spec: FP32 75 TFLOPS per GPU
    hbm_bandwidth: 7.7 TB/s         # HGX B200 spec: 62 TB/s per 8 GPUs (earlier material said 8 TB/s)
    comm_bandwidth_per_sm: 52 GB/s  # placeholder: 7.7 TB/s / 148 SMs
    ops: *placeholder_ops
  GB200:
    aliases: [B200 (GB200), GB200 NVL72]
    source: NVIDIA GB200 NVL72 specifications (per GPU); SM count from the CUDA device query
    sm_count: 148                   # cudaDeviceProp::multiProcessorCount on B200 (not on the datasheet)
    fp8_tflops: 5000                # GB200 NVL72 spec: FP8 10 PFLOPS with sparsity per GPU
    bf16_tflops: 2500               # GB200 NVL72 spec: BF16 5 PFLOPS with sparsity per GPU
    fp32_tflops: 80                 # GB200 NVL72 spec: FP32 80 TFLOPS per GPU
    hbm_bandwidth: 8 TB/s           # GB200 NVL72 spec: HBM3e 8 TB/s per GPU
    comm_bandwidth_per_sm: 54 GB/s  # placeholder: 8 TB/s / 148 SMs
    ops: *placeholder_ops
)";

namespace {

constexpr const char* kDefaultSource = "<default cost profile>";
constexpr int kMaxSms = 1'000'000;
constexpr int kMaxTokenTile = 1 << 20;

// The keys every device must set (with `base:`, a device the base lacks must set them all).
constexpr std::array<std::string_view, 6> kRequiredDeviceKeys{"sm_count",      "bf16_tflops",           "fp32_tflops",
                                                              "hbm_bandwidth", "comm_bandwidth_per_sm", "ops"};

// The shortest text that reads back as the same double: the writer's round trip depends on it.
std::string exact_number(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

std::vector<std::string> op_kind_names() {
  std::vector<std::string> names;
  names.reserve(kOpKinds.size());
  for (const OpKind kind : kOpKinds) names.emplace_back(op_kind_name(kind));
  return names;
}

// How GPU names compare: case and punctuation differ between datasheets, cluster files and nvidia-smi.
std::string normalized(std::string_view name) {
  std::string out;
  for (const char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// The range rules, shared by the parser (which reports them at the key's line) and validate_cost_profile.
std::optional<std::string> efficiency_problem(double value) {
  if (value > 0.0 && value <= 1.0) return std::nullopt;
  return "must be in (0, 1], got " + exact_number(value);
}

std::optional<std::string> positive_problem(double value) {
  if (value > 0.0 && std::isfinite(value)) return std::nullopt;
  return "must be > 0, got " + exact_number(value);
}

// The mapping to parse: `node` itself, or, with `base: default`, the built-in profile with `node` merged over it.
// A device the base lacks must be complete; one that is not is most likely a misspelt base device, so the error
// says so rather than naming the first missing key.
YAML::Node with_base(const YAML::Node& node, const std::string& source) {
  const ConfigMap top(node, source);
  if (!top.has("base")) return node;
  top.choice("base", {"default"});
  const YAML::Node base = load_yaml_text(kDefaultCostProfileYaml, kDefaultSource);
  if (const std::optional<ConfigMap> devices = top.optional_map("devices")) {
    std::vector<std::string> base_names;
    for (const auto& entry : base["devices"]) base_names.push_back(entry.first.Scalar());
    for (const auto& entry : node["devices"]) {
      const std::string name = entry.first.Scalar();
      if (std::find(base_names.begin(), base_names.end(), name) != base_names.end()) continue;
      const ConfigMap device = devices->map(name);
      for (const std::string_view key : kRequiredDeviceKeys) {
        if (!device.has(key)) {
          devices->fail(name, "unknown device: the base profile has " + joined(base_names) +
                                  "; a new device must set every key, and this one lacks " + std::string(key));
        }
      }
    }
  }
  YAML::Node merged = copy_without_marks(base);
  merge_into(merged, node, "base");
  return merged;
}

std::vector<std::string> read_aliases(const ConfigMap& map) {
  std::vector<std::string> aliases;
  const YAML::Node node = map.raw("aliases");
  if (!node.IsDefined() || node.IsNull()) return aliases;
  if (!node.IsSequence()) map.fail("aliases", "expected a list of GPU names");
  for (const auto& item : node) {
    if (!item.IsScalar()) map.fail("aliases", "expected a list of GPU names");
    aliases.push_back(item.Scalar());
  }
  return aliases;
}

double read_efficiency(const ConfigMap& map, std::string_view key) {
  const double value = map.number(key);
  if (const auto problem = efficiency_problem(value)) map.fail(key, *problem);
  return value;
}

// `fallback` given: the key may be left out and 0 means "not supported"; otherwise it must be > 0.
double read_tflops(const ConfigMap& map, std::string_view key, std::optional<double> fallback) {
  const double value = map.number(key, fallback);
  if (fallback && value < 0.0) map.fail(key, "must be >= 0, got " + exact_number(value));
  if (!fallback) {
    if (const auto problem = positive_problem(value)) map.fail(key, *problem);
  }
  return value;
}

OpCost read_op(const ConfigMap& map, OpKind kind) {
  OpCost cost;
  cost.launch_overhead_ps = map.duration("launch_overhead");
  cost.compute_efficiency = read_efficiency(map, "compute_efficiency");
  cost.memory_efficiency = read_efficiency(map, "memory_efficiency");
  if (kind == OpKind::kGroupedGemm)
    cost.token_tile = static_cast<int>(map.integer("token_tile", std::nullopt, 1, kMaxTokenTile));
  map.reject_unknown();
  return cost;
}

DeviceProfile read_device(const ConfigMap& map, const std::string& name) {
  DeviceProfile device;
  device.name = name;
  device.aliases = read_aliases(map);
  device.source = map.string("source", "");
  device.sm_count = static_cast<int>(map.integer("sm_count", std::nullopt, 1, kMaxSms));
  device.fp8_tflops = read_tflops(map, "fp8_tflops", 0.0);
  device.bf16_tflops = read_tflops(map, "bf16_tflops", std::nullopt);
  device.fp32_tflops = read_tflops(map, "fp32_tflops", std::nullopt);
  device.hbm_bandwidth_bps = map.bandwidth("hbm_bandwidth");
  device.comm_bandwidth_per_sm_bps = map.bandwidth("comm_bandwidth_per_sm");

  const ConfigMap ops = map.map("ops");
  // Unknown op kinds first, so that a misspelt kind is reported as such rather than as a missing one.
  const std::vector<std::string> kind_names = op_kind_names();
  for (const auto& entry : map.raw("ops")) {
    const std::string key = entry.first.Scalar();
    if (!op_kind_from_name(key)) ops.fail(key, "unknown op kind (expected one of: " + joined(kind_names) + ")");
  }
  for (const OpKind kind : kOpKinds) device.op(kind) = read_op(ops.map(op_kind_name(kind)), kind);
  map.reject_unknown();
  return device;
}

// Every name (key and aliases) must pick one device, or lookups would depend on the order of the file. With
// `devices_map` (the parser's), the error points at the line of the offending key or alias list.
void check_unique_names(const CostProfile& profile, const ConfigMap* devices_map) {
  std::vector<std::pair<std::string, std::size_t>> seen;  // normalized name, device_idx
  for (std::size_t device_idx = 0; device_idx < profile.devices.size(); ++device_idx) {
    const DeviceProfile& device = profile.devices[device_idx];
    std::vector<std::string> names{device.name};
    names.insert(names.end(), device.aliases.begin(), device.aliases.end());
    for (std::size_t name_idx = 0; name_idx < names.size(); ++name_idx) {
      const std::string& name = names[name_idx];
      const std::string key = normalized(name);
      const auto clash = std::find_if(seen.begin(), seen.end(), [&](const auto& entry) {
        return entry.first == key && entry.second != device_idx;
      });
      std::string problem;
      if (key.empty()) problem = "name '" + name + "' has no letter or digit";
      if (clash != seen.end() && profile.devices[clash->second].name == device.name) problem = "device defined twice";
      if (clash != seen.end() && problem.empty()) {
        problem = "name '" + name + "' also names device ";
        problem += profile.devices[clash->second].name;
      }
      if (!problem.empty()) {
        const bool is_alias = name_idx > 0;
        if (devices_map && is_alias) devices_map->map(device.name).fail("aliases", problem);
        if (devices_map) devices_map->fail(device.name, problem);
        std::string message = profile.source + ": devices." + device.name;
        message += is_alias ? ".aliases: " : ": ";
        message += problem;
        throw std::invalid_argument(message);
      }
      seen.emplace_back(key, device_idx);
    }
  }
}

// Writes `bps` in the largest unit whose text reads back exactly.
std::string exact_bandwidth(double bps) {
  static constexpr std::array<std::pair<std::string_view, double>, 4> kUnits{
      {{"TB/s", 1e12}, {"GB/s", 1e9}, {"MB/s", 1e6}, {"B/s", 1.0}}};
  for (const auto& [unit, scale] : kUnits) {
    if (bps < scale && scale > 1.0) continue;
    std::string text = exact_number(bps / scale) + " " + std::string(unit);
    if (parse_bandwidth(text) == bps) return text;
  }
  return exact_number(bps) + " B/s";
}

std::string exact_duration(TimePs ps) {
  static constexpr std::array<std::pair<std::string_view, TimePs>, 3> kUnits{
      {{"us", kPsPerUs}, {"ns", kPsPerNs}, {"ps", 1}}};
  for (const auto& [unit, scale] : kUnits) {
    if (ps % scale == 0) return std::to_string(ps / scale) + " " + std::string(unit);
  }
  return std::to_string(ps) + " ps";
}

}  // namespace

std::string_view precision_name(Precision precision) {
  switch (precision) {
    case Precision::kFp8:
      return "fp8";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp32:
      return "fp32";
  }
  return "?";
}

int precision_bytes(Precision precision) {
  switch (precision) {
    case Precision::kFp8:
      return 1;
    case Precision::kBf16:
      return 2;
    case Precision::kFp32:
      return 4;
  }
  return 0;
}

std::string_view op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::kDenseGemm:
      return "dense_gemm";
    case OpKind::kGroupedGemm:
      return "grouped_gemm";
    case OpKind::kAttention:
      return "attention";
    case OpKind::kRouter:
      return "router";
    case OpKind::kPermute:
      return "permute";
    case OpKind::kUnpermute:
      return "unpermute";
    case OpKind::kElementwise:
      return "elementwise";
  }
  return "?";
}

std::optional<OpKind> op_kind_from_name(std::string_view name) {
  for (const OpKind kind : kOpKinds) {
    if (op_kind_name(kind) == name) return kind;
  }
  return std::nullopt;
}

double DeviceProfile::peak_tflops(Precision precision) const {
  switch (precision) {
    case Precision::kFp8:
      return fp8_tflops;
    case Precision::kBf16:
      return bf16_tflops;
    case Precision::kFp32:
      return fp32_tflops;
  }
  return 0.0;
}

const DeviceProfile* CostProfile::find(std::string_view gpu_name) const {
  const std::string key = normalized(gpu_name);
  if (key.empty()) return nullptr;
  for (const DeviceProfile& device : devices) {
    if (normalized(device.name) == key) return &device;
    for (const std::string& alias : device.aliases) {
      if (normalized(alias) == key) return &device;
    }
  }
  return nullptr;
}

const DeviceProfile& CostProfile::device(std::string_view gpu_name, std::string_view where) const {
  if (const DeviceProfile* found = find(gpu_name)) return *found;
  std::string known;
  for (const DeviceProfile& device : devices) {
    known += (known.empty() ? "" : "; ") + device.name;
    if (!device.aliases.empty()) known += " (" + joined(device.aliases) + ")";
  }
  throw std::invalid_argument(std::string(where) + ": unknown device '" + std::string(gpu_name) +
                              "': the cost profile " + source + " has " + known +
                              " (add the device, or an alias, with a profile file: --profile FILE)");
}

CostProfile default_cost_profile() {
  return parse_cost_profile(load_yaml_text(kDefaultCostProfileYaml, kDefaultSource), kDefaultSource);
}

CostProfile load_cost_profile(const std::string& path) {
  return parse_cost_profile(load_yaml_file(path), path);
}

CostProfile parse_cost_profile(const YAML::Node& node, const std::string& source) {
  const YAML::Node merged = with_base(node, source);
  const ConfigMap top(merged, source);  // `base:` is consumed by with_base and not in the merged mapping
  CostProfile profile;
  profile.source = source;
  const ConfigMap devices = top.map("devices");
  for (const auto& entry : top.raw("devices")) {
    const std::string name = entry.first.Scalar();
    profile.devices.push_back(read_device(devices.map(name), name));
  }
  if (profile.devices.empty()) top.fail("devices", "expected at least one device");
  top.reject_unknown();
  check_unique_names(profile, &devices);
  return profile;
}

void validate_cost_profile(const CostProfile& profile) {
  for (const DeviceProfile& device : profile.devices) {
    const std::string at = profile.source + ": devices." + device.name + ".";
    const auto check = [&](const std::string& key, std::optional<std::string> problem) {
      if (problem) throw std::invalid_argument(at + key + ": " + *problem);
    };
    if (device.sm_count < 1) check("sm_count", "must be >= 1, got " + std::to_string(device.sm_count));
    if (!(device.fp8_tflops >= 0.0)) check("fp8_tflops", "must be >= 0, got " + exact_number(device.fp8_tflops));
    check("bf16_tflops", positive_problem(device.bf16_tflops));
    check("fp32_tflops", positive_problem(device.fp32_tflops));
    check("hbm_bandwidth", positive_problem(device.hbm_bandwidth_bps));
    check("comm_bandwidth_per_sm", positive_problem(device.comm_bandwidth_per_sm_bps));
    for (const OpKind kind : kOpKinds) {
      const OpCost& cost = device.op(kind);
      const std::string key = "ops." + std::string(op_kind_name(kind)) + ".";
      if (cost.launch_overhead_ps < 0) check(key + "launch_overhead", "must be >= 0");
      check(key + "compute_efficiency", efficiency_problem(cost.compute_efficiency));
      check(key + "memory_efficiency", efficiency_problem(cost.memory_efficiency));
      if (kind == OpKind::kGroupedGemm && !(cost.token_tile >= 1 && cost.token_tile <= kMaxTokenTile)) {
        check(key + "token_tile",
              "must be in [1, " + std::to_string(kMaxTokenTile) + "], got " + std::to_string(cost.token_tile));
      }
      if (kind != OpKind::kGroupedGemm && cost.token_tile != 1) {
        check(key + "token_tile", "only grouped_gemm has a token tile (leave it 1)");
      }
    }
  }
  check_unique_names(profile, nullptr);
}

std::string write_cost_profile(const CostProfile& profile) {
  validate_cost_profile(profile);
  YAML::Emitter out;
  out << YAML::Comment("moesim cost profile (schema: sim/compute/cost_profile.hpp)");
  out << YAML::BeginMap << YAML::Key << "devices" << YAML::Value << YAML::BeginMap;
  for (const DeviceProfile& device : profile.devices) {
    out << YAML::Key << device.name << YAML::Value << YAML::BeginMap;
    if (!device.aliases.empty()) {
      out << YAML::Key << "aliases" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const std::string& alias : device.aliases) out << alias;
      out << YAML::EndSeq;
    }
    if (!device.source.empty()) out << YAML::Key << "source" << YAML::Value << device.source;
    out << YAML::Key << "sm_count" << YAML::Value << std::to_string(device.sm_count);
    out << YAML::Key << "fp8_tflops" << YAML::Value << exact_number(device.fp8_tflops);
    out << YAML::Key << "bf16_tflops" << YAML::Value << exact_number(device.bf16_tflops);
    out << YAML::Key << "fp32_tflops" << YAML::Value << exact_number(device.fp32_tflops);
    out << YAML::Key << "hbm_bandwidth" << YAML::Value << exact_bandwidth(device.hbm_bandwidth_bps);
    out << YAML::Key << "comm_bandwidth_per_sm" << YAML::Value << exact_bandwidth(device.comm_bandwidth_per_sm_bps);
    out << YAML::Key << "ops" << YAML::Value << YAML::BeginMap;
    for (const OpKind kind : kOpKinds) {
      const OpCost& cost = device.op(kind);
      out << YAML::Key << std::string(op_kind_name(kind)) << YAML::Value << YAML::Flow << YAML::BeginMap;
      out << YAML::Key << "launch_overhead" << YAML::Value << exact_duration(cost.launch_overhead_ps);
      out << YAML::Key << "compute_efficiency" << YAML::Value << exact_number(cost.compute_efficiency);
      out << YAML::Key << "memory_efficiency" << YAML::Value << exact_number(cost.memory_efficiency);
      if (kind == OpKind::kGroupedGemm)
        out << YAML::Key << "token_tile" << YAML::Value << std::to_string(cost.token_tile);
      out << YAML::EndMap;
    }
    out << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace moesim::sim::compute
