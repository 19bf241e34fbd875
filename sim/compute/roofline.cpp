#include "sim/compute/roofline.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace moesim::sim::compute {
namespace {

// Times beyond this (about 106 days) do not fit TimePs once rounded; no kernel gets near it.
constexpr double kMaxBusyPs = 9.0e18;

std::string number(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::string op_name(const Op& op) {
  return std::string(op_kind_name(op.kind)) + " (" + std::string(precision_name(op.precision)) + ")";
}

void check_work(const Op& op, const char* what, double value) {
  if (!(value >= 0.0 && std::isfinite(value))) {
    throw std::invalid_argument(op_name(op) + ": " + what + " must be finite and >= 0, got " + number(value));
  }
}

void check_sm_fraction(double sm_fraction) {
  if (!(sm_fraction > 0.0 && sm_fraction <= 1.0)) {
    throw std::invalid_argument("sm_fraction must be in (0, 1], got " + number(sm_fraction));
  }
}

OpWork grouped_work(const Op& op, const GroupedGemmShape& shape, int token_tile) {
  if (shape.n < 0 || shape.k < 0) {
    throw std::invalid_argument(op_name(op) + ": n and k must be >= 0, got n " + std::to_string(shape.n) + ", k " +
                                std::to_string(shape.k));
  }
  const auto n = static_cast<double>(shape.n);
  const auto k = static_cast<double>(shape.k);
  const auto in_bytes = static_cast<double>(precision_bytes(op.precision));
  const auto out_bytes = static_cast<double>(gemm_output_bytes(op.precision));
  const auto tile = static_cast<std::int64_t>(token_tile);
  OpWork work;
  for (std::size_t expert_idx = 0; expert_idx < shape.tokens_per_expert.size(); ++expert_idx) {
    const std::int64_t tokens = shape.tokens_per_expert[expert_idx];
    if (tokens < 0) {
      throw std::invalid_argument(op_name(op) + ": tokens_per_expert[" + std::to_string(expert_idx) +
                                  "] must be >= 0, got " + std::to_string(tokens));
    }
    if (tokens == 0) continue;  // the kernel schedules no tile for an empty expert and never reads its weights
    const std::int64_t padded_tokens = (tokens + tile - 1) / tile * tile;  // rounded up to whole tiles
    const auto padded = static_cast<double>(padded_tokens);
    const auto rows = static_cast<double>(tokens);
    work.flops += 2.0 * padded * n * k;
    work.bytes += (rows * k + k * n) * in_bytes + rows * n * out_bytes;
  }
  return work;
}

}  // namespace

int gemm_output_bytes(Precision precision) {
  return precision == Precision::kFp32 ? 4 : 2;
}

Op dense_gemm_op(std::int64_t m, std::int64_t n, std::int64_t k, Precision precision) {
  if (m < 0 || n < 0 || k < 0) {
    throw std::invalid_argument("dense_gemm: m, n and k must be >= 0, got " + std::to_string(m) + ", " +
                                std::to_string(n) + ", " + std::to_string(k));
  }
  const auto md = static_cast<double>(m);
  const auto nd = static_cast<double>(n);
  const auto kd = static_cast<double>(k);
  Op op;
  op.kind = OpKind::kDenseGemm;
  op.precision = precision;
  op.flops = 2.0 * md * nd * kd;
  op.bytes = (md * kd + kd * nd) * precision_bytes(precision) + md * nd * gemm_output_bytes(precision);
  return op;
}

Op grouped_gemm_op(std::vector<std::int64_t> tokens_per_expert, std::int64_t n, std::int64_t k, Precision precision) {
  Op op;
  op.kind = OpKind::kGroupedGemm;
  op.precision = precision;
  op.grouped = GroupedGemmShape{std::move(tokens_per_expert), n, k};
  return op;
}

OpWork op_work(const DeviceProfile& device, const Op& op) {
  check_work(op, "flops", op.flops);
  check_work(op, "bytes", op.bytes);
  if (!op.grouped) return {op.flops, op.bytes};
  if (op.kind != OpKind::kGroupedGemm) {
    throw std::invalid_argument(op_name(op) + ": only a grouped_gemm op takes a grouped shape");
  }
  if (op.flops != 0.0 || op.bytes != 0.0) {
    throw std::invalid_argument(op_name(op) + ": flops and bytes follow from the grouped shape; leave them 0");
  }
  return grouped_work(op, *op.grouped, device.op(OpKind::kGroupedGemm).token_tile);
}

TimePs op_time(const DeviceProfile& device, const Op& op, double sm_fraction) {
  check_sm_fraction(sm_fraction);
  const OpWork work = op_work(device, op);
  const OpCost& cost = device.op(op.kind);
  double compute_s = 0.0;
  if (work.flops > 0.0) {
    const double peak = device.peak_flops_per_s(op.precision);
    if (!(peak > 0.0)) {
      throw std::invalid_argument(op_name(op) + ": device " + device.name + " has no " +
                                  std::string(precision_name(op.precision)) + " peak (its " +
                                  std::string(precision_name(op.precision)) + "_tflops is 0)");
    }
    compute_s = work.flops / (peak * cost.compute_efficiency * sm_fraction);
  }
  const double memory_s = work.bytes / (device.hbm_bandwidth_bps * cost.memory_efficiency);
  const double busy_ps = std::max(compute_s, memory_s) * static_cast<double>(kPsPerS);
  if (!(busy_ps <= kMaxBusyPs)) throw std::invalid_argument(op_name(op) + ": its time overflows the simulated clock");
  return cost.launch_overhead_ps + std::llround(busy_ps);
}

double crossover_intensity(const DeviceProfile& device, OpKind kind, Precision precision, double sm_fraction) {
  check_sm_fraction(sm_fraction);
  const OpCost& cost = device.op(kind);
  return device.peak_flops_per_s(precision) * cost.compute_efficiency * sm_fraction /
         (device.hbm_bandwidth_bps * cost.memory_efficiency);
}

double comm_bandwidth_limit(const DeviceProfile& device, int sms) {
  if (sms < 1 || sms > device.sm_count) {
    throw std::invalid_argument("a communication kernel on " + device.name + " takes 1 to " +
                                std::to_string(device.sm_count) + " SMs, got " + std::to_string(sms));
  }
  return static_cast<double>(sms) * device.comm_bandwidth_per_sm_bps;
}

}  // namespace moesim::sim::compute
