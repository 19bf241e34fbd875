// The compute model: how long one kernel takes on one GPU, by a roofline per op kind.
//
// Theory of operation. A kernel does F floating-point operations (a multiply-add counts 2) and moves B bytes
// between HBM and the SMs. On a device with peak P (FLOP/s, for the op's precision) and HBM bandwidth W, with the
// op kind's compute efficiency c, memory efficiency m and launch overhead L from the cost profile, and a fraction s
// of the SMs:
//
//   time = L + max(F / (P c s), B / (W m))
//
// The kernel is compute-bound when its arithmetic intensity F / B exceeds the crossover P c s / (W m), and
// memory-bound below it. Times are rounded to the nearest picosecond.
//
// Grouped GEMM (one GEMM per expert, [tokens_e x k] x [k x n]): each expert's token count is padded up to a
// multiple of the profile's token_tile, because the kernel computes whole tiles along the token dimension. So
// F = sum over experts of 2 ceil(tokens_e / tile) tile n k, and uneven expert loads cost exactly their padding. Bytes
// count only real rows (padding rows are masked, not loaded): sum over experts with tokens of
// (tokens_e k + k n) x input element size + tokens_e n x output element size. An expert with no tokens costs nothing.
//
// Communication kernels (All-to-All dispatch and combine, collectives) run on a given number of SMs; each SM can
// drive comm_bandwidth_per_sm, so comm_bandwidth_limit(sms) = sms x that, a cap the network model applies on top of
// the links' capacities. The SMs they take leave compute kernels the fraction s.
//
// What a roofline ignores, and calibration partly absorbs into the efficiencies:
//   - cache reuse: B is what the caller counts as HBM traffic; re-reads served by L2 are not modelled, nor is L2
//     bandwidth as a ceiling of its own;
//   - wave quantization (a last partial wave of thread blocks) and tile quantization along n and k; the only
//     quantization modelled is grouped GEMM's padding along tokens;
//   - the shape dependence of efficiency (small or skinny GEMMs reach less of the peak than large ones): one
//     efficiency per op kind and device;
//   - overlap between the compute and memory phases is assumed perfect (the max), so time is never their sum;
//   - s scales compute throughput only: fewer SMs are assumed to still reach the HBM bandwidth (true for the
//     fractions left after communication takes its SMs, not for a handful of SMs);
//   - clocks, power and thermal throttling, and FP8 scale factors (their bytes are left out of grouped GEMM's count).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/units.hpp"
#include "sim/compute/cost_profile.hpp"

namespace moesim::sim::compute {

// One GEMM per expert, all with the same n and k: a routed expert layer's up/gate or down projection.
struct GroupedGemmShape {
  std::vector<std::int64_t> tokens_per_expert;  // rows of each expert's GEMM (the token copies routed to it)
  std::int64_t n = 0;                           // output features per expert
  std::int64_t k = 0;                           // input features (the reduction dimension)
};

struct Op {
  OpKind kind = OpKind::kElementwise;
  Precision precision = Precision::kBf16;  // of the inputs; picks the peak
  double flops = 0.0;                      // floating-point operations, a multiply-add counting 2
  double bytes = 0.0;                      // bytes read from and written to HBM
  // Set for a grouped GEMM whose flops and bytes follow from the shape (with tile padding); flops and bytes must then
  // be left 0. A grouped GEMM without a shape uses flops and bytes as given, unpadded.
  std::optional<GroupedGemmShape> grouped;
};

// What an op costs the hardware, after the grouped GEMM derivation.
struct OpWork {
  double flops = 0.0;
  double bytes = 0.0;
};

// Bytes per output element of a GEMM: FP8 and BF16 GEMMs write BF16, FP32 GEMMs write FP32.
int gemm_output_bytes(Precision precision);

// [m x k] x [k x n] -> [m x n]: 2 m n k flops; reads A and B, writes C.
Op dense_gemm_op(std::int64_t m, std::int64_t n, std::int64_t k, Precision precision);

// A grouped GEMM with its shape; flops and bytes are derived by op_work with the device's token tile.
Op grouped_gemm_op(std::vector<std::int64_t> tokens_per_expert, std::int64_t n, std::int64_t k, Precision precision);

// The op's flops and bytes on `device` (a grouped shape is padded to the device's grouped_gemm token_tile).
// Throws std::invalid_argument for negative or non-finite work, negative token counts or dimensions, or a shape on
// an op that is not a grouped GEMM.
OpWork op_work(const DeviceProfile& device, const Op& op);

// launch + max(flops / (peak x compute_eff x sm_fraction), bytes / (hbm x memory_eff)). `sm_fraction` in (0, 1] is
// the share of the SMs the kernel gets. Throws std::invalid_argument when the op has flops in a precision the device
// has no peak for (FP8 on A100), or for an sm_fraction outside (0, 1].
TimePs op_time(const DeviceProfile& device, const Op& op, double sm_fraction = 1.0);

// The arithmetic intensity (flops per byte) above which an op of this kind and precision is compute-bound on
// `device`: peak x compute_eff x sm_fraction / (hbm x memory_eff).
double crossover_intensity(const DeviceProfile& device, OpKind kind, Precision precision, double sm_fraction = 1.0);

// The bandwidth (bytes/s) a communication kernel on `sms` SMs can drive: sms x comm_bandwidth_per_sm. Throws
// std::invalid_argument unless 1 <= sms <= the device's SM count.
double comm_bandwidth_limit(const DeviceProfile& device, int sms);

}  // namespace moesim::sim::compute
