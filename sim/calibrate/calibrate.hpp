// Calibration: fits the cost profile's roofline parameters (sim/compute/roofline.hpp) to measured kernel times
// (kernels/measurements.proto, as `moesim kernels bench` writes them), and reports how well the fit predicts
// measurements it did not see.
//
// Theory of operation. Each measurement is one kernel of op kind K (dense_gemm -> dense_gemm, grouped_ffn ->
// grouped_gemm, router, permute, unpermute) with F FLOPs and B bytes (bench.hpp's useful work and compulsory
// traffic, the quantities the simulator's roofline is fed with: layer_ops.cpp) and a median time t. The model is
// the roofline op_time itself, per device and op kind:
//
//   t = L + max(F / Rc, B / Rm)        Rc = peak x compute_efficiency, Rm = bandwidth x memory_efficiency
//
// Why this model: it is exactly what the simulator evaluates, so a fitted profile predicts what was fitted, with no
// second model in between; it has three parameters per kind, few enough for the 10 to 20 shapes a sweep measures
// per kind. Why the log: the times span four decades (microseconds to hundreds of milliseconds), and the accuracy
// that matters is relative, so the fit minimises sum (ln t_predicted - ln t_measured)^2; a plain least squares would
// fit the largest kernels and ignore the small ones, whose time is mostly L.
//
// The search: the objective is not smooth (the max) and has three parameters, so a grid and a coordinate search
// are cheap and robust where Gauss-Newton is not. L runs over a grid of fractions of the smallest measured time
// (0 included; L cannot exceed it); for each L, 1/Rc and 1/Rm are refined alternately (log-spaced scan, then golden
// section) until the objective stops improving; the best L of the grid is then refined by golden section too.
// Deterministic: no random starts.
//
// Identifiability: a rate is fitted only if some measurement is bound by it at the optimum. When none is (every
// GEMM compute-bound, so nothing says what bandwidth it reaches), its efficiency is written as 1 and the report
// says it was not fitted. Permute and unpermute have no FLOPs: their compute efficiency is 1, meaningless.
//
// The device. A GPU the built-in profile knows (by name) keeps its datasheet peak, bandwidth, SMs and
// communication bandwidth; the efficiencies are the fitted rates over them (capped at 1, with a note when a fit
// exceeds a datasheet). A device the built-in profile does not know, and every CPU (no spec sheet gives a CPU
// backend's achievable FLOP/s or bandwidth), gets its peak fitted directly: the peak is the largest fitted compute
// rate over the kinds (that kind's efficiency is 1, the others relative to it), the bandwidth the largest fitted
// memory rate, both stated in the profile's source. The CPU's "SMs" are its benchmark threads, and its
// communication bandwidth per SM an equal share of the fitted bandwidth (not measured). The kinds not measured take
// a measured kind's parameters: attention a GEMM's (dense_gemm, else grouped), elementwise a data movement's
// (permute, else unpermute), each noted; grouped_gemm's token_tile stays the known GPU's, or 1 (the CPU pads
// nothing).
//
// Validation: the held-out measurements (the --holdout rule, by whole shapes) are removed, the same fit runs on the
// rest, and each held-out one is predicted by compute::op_time on the device profile built from that fit. The
// written profile is fitted on every measurement.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reports/calibration.pb.h"
#include "sim/compute/cost_profile.hpp"

namespace moesim::sim::calibrate {

// One measurement, as calibration sees it.
struct Sample {
  std::string file;    // where it was read, for messages
  std::string device;  // Measurements.device_name
  bool is_cpu = false;
  int num_threads = 0;  // CPU backend
  int sm_count = 0;     // CUDA
  std::string op;       // the measurement's op
  compute::OpKind kind = compute::OpKind::kDenseGemm;
  compute::Precision precision = compute::Precision::kBf16;
  double flops = 0.0;
  double bytes = 0.0;
  double time_s = 0.0;  // the median
  // The shape's sizes, for hold-out rules and the report.
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  std::int64_t experts = 0;
  std::int64_t topk = 0;
  std::int64_t ffn = 0;
  std::string skew;
  double capacity_factor = 0.0;
};

struct Samples {
  std::vector<Sample> samples;
  int num_ignored = 0;  // measurements of ops calibration does not fit
};

// The measurement op calibration fits as `kind`, or "" for an op it does not fit.
std::string op_kind_of(const std::string& op, compute::OpKind* kind);

// Reads Measurements files (binary protobuf, or proto3 JSON; told apart as kernels/harness/measurements_io does).
// Throws std::invalid_argument naming the file when it cannot be read, is not Measurements, holds no measurement
// calibration fits, or holds a time or a size that is not a finite number >= 0 (times > 0).
Samples read_samples(const std::vector<std::string>& paths);

// The shape as the report prints it.
std::string shape_label(const Sample& sample);

// Which measurements the validation holds out. SPEC:
//   largest                     (default) for each size of the sweep (tokens, hidden, experts, topk, ffn) that
//                               varies on the device, the measurements at its largest value: extrapolation
//   none                        no validation
//   KEY=V[,V...][+KEY=V...]     the measurements whose shape has KEY equal to one of the Vs, for any of the rules;
//                               KEY is tokens, hidden, experts, topk, ffn or skew
// Returns one flag per sample. Throws std::invalid_argument "--holdout: ..." for a malformed SPEC.
std::vector<bool> held_out(const std::vector<Sample>& samples, const std::string& spec);

// The fitted parameters of one op kind on one device.
struct KindFit {
  double launch_overhead_s = 0.0;
  double compute_flops_per_s = 0.0;  // 0 when no sample has FLOPs
  double memory_bytes_per_s = 0.0;
  bool is_compute_fitted = false;  // some sample is bound by the compute rate at the optimum
  bool is_memory_fitted = false;
  double objective = 0.0;  // sum of squared log errors
};

// Fits t = L + max(F / Rc, B / Rm) to the samples (all of one kind) by least squares on ln t, as above. Throws
// std::invalid_argument when there are fewer than 3 samples.
KindFit fit_kind(const std::vector<const Sample*>& samples);

struct Calibration {
  compute::CostProfile profile;       // fitted on every sample
  reports::CalibrationResult result;  // without profile_path and tool_version
};

// Fits every device of the samples and validates by `holdout_spec`.
Calibration calibrate(const std::vector<Sample>& samples, const std::string& holdout_spec);

std::string calibration_text(const reports::CalibrationResult& result);

}  // namespace moesim::sim::calibrate
