#include "sim/calibrate/calibrate.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <google/protobuf/util/json_util.h>

#include "kernels/measurements.pb.h"
#include "sim/compute/roofline.hpp"

namespace moesim::sim::calibrate {
namespace {

using compute::OpKind;

constexpr int kMinFitSamples = 3;
constexpr int kOverheadGridSteps = 40;
constexpr double kMaxOverheadFraction = 0.98;  // of the smallest measured time
constexpr int kScanPoints = 64;
constexpr int kGoldenIterations = 40;
constexpr int kMaxCoordinateRounds = 50;
// The scan of ln(1/rate) reaches this far below the fastest measured rate: e^-12, a rate 160000 times the fastest
// achieved one, whose term is negligible everywhere (the rate is then not fitted).
constexpr double kRateScanBelow = 12.0;
constexpr double kRateScanAbove = 1.0;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// As kernels/harness/measurements_io.cpp reads them (sim/ links only the generated code, not the kernels).
kernels::Measurements read_measurements(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot read");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  kernels::Measurements measurements;
  std::size_t first = 0;
  while (first < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[first])) != 0) ++first;
  const bool looks_json = first < bytes.size() && bytes[first] == '{';
  if (!ends_with(path, ".json") && !looks_json) {
    if (measurements.ParseFromString(bytes)) return measurements;
    throw std::invalid_argument(path + ": not a Measurements protobuf (nor proto3 JSON)");
  }
  const auto status = google::protobuf::util::JsonStringToMessage(bytes, &measurements);
  if (!status.ok()) throw std::invalid_argument(path + ": not Measurements JSON: " + status.ToString());
  return measurements;
}

compute::Precision precision_of(const std::string& where, const std::string& dtype) {
  if (dtype.empty() || dtype == "bf16") return compute::Precision::kBf16;
  if (dtype == "fp8") return compute::Precision::kFp8;
  if (dtype == "fp32") return compute::Precision::kFp32;
  throw std::invalid_argument(where + ".dtype: expected bf16, fp8 or fp32, got '" + dtype + "'");
}

void check_number(const std::string& where, const char* key, double value, bool is_positive) {
  if (!std::isfinite(value) || value < 0.0 || (is_positive && value == 0.0)) {
    throw std::invalid_argument(where + "." + key + ": must be a finite number " + (is_positive ? "> 0" : ">= 0") +
                                ", got " + std::to_string(value));
  }
}

double median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// Nearest rank.
double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(values.size())));
  return values[std::max<std::size_t>(rank, 1) - 1];
}

// Sum of squared log errors of t = overhead + max(F a, B b), a = 1 / Rc and b = 1 / Rm.
double log_objective(const std::vector<const Sample*>& samples, double overhead_s, double a, double b) {
  double sum = 0.0;
  for (const Sample* s : samples) {
    const double predicted = overhead_s + std::max(s->flops * a, s->bytes * b);
    const double r = std::log(predicted) - std::log(s->time_s);
    sum += r * r;
  }
  return sum;
}

// The x in [lo, hi] minimising f: a scan, then golden section around the best scan point.
double minimise_1d(const std::function<double(double)>& f, double lo, double hi) {
  double best_x = lo;
  double best = std::numeric_limits<double>::infinity();
  const double step = (hi - lo) / (kScanPoints - 1);
  for (int i = 0; i < kScanPoints; ++i) {
    const double x = lo + step * i;
    const double value = f(x);
    if (value < best) {
      best = value;
      best_x = x;
    }
  }
  double left = std::max(lo, best_x - step);
  double right = std::min(hi, best_x + step);
  const double ratio = (std::sqrt(5.0) - 1.0) / 2.0;
  double x1 = right - ratio * (right - left);
  double x2 = left + ratio * (right - left);
  double f1 = f(x1);
  double f2 = f(x2);
  for (int i = 0; i < kGoldenIterations; ++i) {
    if (f1 < f2) {
      right = x2;
      x2 = x1;
      f2 = f1;
      x1 = right - ratio * (right - left);
      f1 = f(x1);
    } else {
      left = x1;
      x1 = x2;
      f1 = f2;
      x2 = left + ratio * (right - left);
      f2 = f(x2);
    }
  }
  const double x = f1 < f2 ? x1 : x2;
  return std::min(f1, f2) < best ? x : best_x;
}

struct RateFit {
  double a = 0.0;  // 1 / Rc, 0 when no sample has FLOPs
  double b = 0.0;  // 1 / Rm, 0 when no sample has bytes
  double objective = 0.0;
};

struct Bounds {
  bool has_flops = false;
  bool has_bytes = false;
  double u_lo = 0.0, u_hi = 0.0, u_mid = 0.0;  // ln a
  double v_lo = 0.0, v_hi = 0.0, v_mid = 0.0;  // ln b
};

Bounds rate_bounds(const std::vector<const Sample*>& samples) {
  std::vector<double> us;
  std::vector<double> vs;
  for (const Sample* s : samples) {
    if (s->flops > 0.0) us.push_back(std::log(s->time_s / s->flops));
    if (s->bytes > 0.0) vs.push_back(std::log(s->time_s / s->bytes));
  }
  Bounds bounds;
  bounds.has_flops = !us.empty();
  bounds.has_bytes = !vs.empty();
  if (bounds.has_flops) {
    bounds.u_lo = *std::min_element(us.begin(), us.end()) - kRateScanBelow;
    bounds.u_hi = *std::max_element(us.begin(), us.end()) + kRateScanAbove;
    bounds.u_mid = median(us);
  }
  if (bounds.has_bytes) {
    bounds.v_lo = *std::min_element(vs.begin(), vs.end()) - kRateScanBelow;
    bounds.v_hi = *std::max_element(vs.begin(), vs.end()) + kRateScanAbove;
    bounds.v_mid = median(vs);
  }
  return bounds;
}

// For a fixed overhead: alternating one-dimensional minimisations over ln a and ln b, from three starts (compute
// bound everywhere, memory bound everywhere, both), the best kept.
RateFit fit_rates(const std::vector<const Sample*>& samples, const Bounds& bounds, double overhead_s) {
  const auto objective = [&](double u, double v) {
    return log_objective(samples, overhead_s, bounds.has_flops ? std::exp(u) : 0.0,
                         bounds.has_bytes ? std::exp(v) : 0.0);
  };
  const std::array<std::pair<double, double>, 3> starts{
      {{bounds.u_mid, bounds.v_lo}, {bounds.u_lo, bounds.v_mid}, {bounds.u_mid, bounds.v_mid}}};
  RateFit best;
  best.objective = std::numeric_limits<double>::infinity();
  for (const auto& [u0, v0] : starts) {
    double u = u0;
    double v = v0;
    double current = objective(u, v);
    for (int round = 0; round < kMaxCoordinateRounds; ++round) {
      if (bounds.has_flops) u = minimise_1d([&](double x) { return objective(x, v); }, bounds.u_lo, bounds.u_hi);
      if (bounds.has_bytes) v = minimise_1d([&](double x) { return objective(u, x); }, bounds.v_lo, bounds.v_hi);
      const double next = objective(u, v);
      const bool is_done = current - next <= 1e-12 * std::max(1.0, current);
      current = std::min(current, next);
      if (is_done) break;
    }
    if (current < best.objective) {
      best.objective = current;
      best.a = bounds.has_flops ? std::exp(u) : 0.0;
      best.b = bounds.has_bytes ? std::exp(v) : 0.0;
    }
  }
  return best;
}

std::string format_seconds(double s) {
  char buffer[32];
  if (s >= 1.0) {
    std::snprintf(buffer, sizeof buffer, "%.3f s", s);
  } else if (s >= 1e-3) {
    std::snprintf(buffer, sizeof buffer, "%.3f ms", s * 1e3);
  } else if (s >= 1e-6) {
    std::snprintf(buffer, sizeof buffer, "%.3f us", s * 1e6);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.1f ns", s * 1e9);
  }
  return buffer;
}

std::string format_percent(double fraction) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f%%", fraction * 100.0);
  return buffer;
}

using Fits = std::map<OpKind, KindFit>;

// The device profile of one device's fits, as the header's "The device" describes.
compute::DeviceProfile device_profile(const std::vector<const Sample*>& samples, const Fits& fits,
                                      std::vector<std::string>* notes) {
  const Sample& first = *samples.front();
  for (const Sample* s : samples) {
    if (s->precision != first.precision) {
      throw std::invalid_argument(
          s->file + ": " + first.device + " is measured in " + std::string(compute::precision_name(first.precision)) +
          " and in " + std::string(compute::precision_name(s->precision)) + "; calibrate one precision at a time");
    }
  }
  const compute::CostProfile builtin = compute::default_cost_profile();
  const compute::DeviceProfile* known = first.is_cpu ? nullptr : builtin.find(first.device);
  compute::DeviceProfile device;
  double peak = 0.0;
  double bandwidth = 0.0;
  if (known != nullptr) {
    device = *known;
    device.source = known->source + "; efficiencies and launch overheads fitted by moesim calibrate";
    peak = device.peak_flops_per_s(first.precision);
    bandwidth = device.hbm_bandwidth_bps;
  } else {
    for (const auto& [kind, fit] : fits) {
      if (fit.is_compute_fitted) peak = std::max(peak, fit.compute_flops_per_s);
      if (fit.is_memory_fitted) bandwidth = std::max(bandwidth, fit.memory_bytes_per_s);
    }
    for (const auto& [kind, fit] : fits) {
      if (peak == 0.0) peak = std::max(peak, fit.compute_flops_per_s);
      if (bandwidth == 0.0) bandwidth = std::max(bandwidth, fit.memory_bytes_per_s);
    }
    if (peak == 0.0) {
      peak = 1e12;
      notes->push_back(first.device + ": no measurement has FLOPs; the peak is a placeholder 1 TFLOP/s");
    }
    device.name = first.device;
    const std::string what = first.is_cpu ? "a CPU backend" : "a GPU the built-in profile does not know";
    char buffer[256];
    std::snprintf(buffer, sizeof buffer,
                  "moesim calibrate: %s has no spec sheet here; peak %.4g TFLOP/s and bandwidth %.4g GB/s are "
                  "the largest fitted rates",
                  what.c_str(), peak / 1e12, bandwidth / 1e9);
    device.source = buffer;
    notes->push_back(first.device + ": " + std::string(buffer).substr(std::string("moesim calibrate: ").size()));
    device.bf16_tflops = peak / 1e12;
    device.fp32_tflops = peak / 1e12;
    device.fp8_tflops = first.precision == compute::Precision::kFp8 ? peak / 1e12 : 0.0;
    device.hbm_bandwidth_bps = bandwidth;
    int units = 0;
    for (const Sample* s : samples) units = std::max(units, first.is_cpu ? s->num_threads : s->sm_count);
    device.sm_count = std::max(1, units);
    device.comm_bandwidth_per_sm_bps = bandwidth / device.sm_count;
    if (first.is_cpu) {
      notes->push_back(first.device + ": sm_count is the benchmark's " + std::to_string(device.sm_count) +
                       " threads, comm_bandwidth_per_sm their share of the bandwidth (not measured)");
    }
    for (compute::OpCost& op : device.ops) op.token_tile = 1;
  }
  for (const auto& [kind, fit] : fits) {
    compute::OpCost& cost = device.op(kind);
    cost.launch_overhead_ps = static_cast<TimePs>(std::llround(fit.launch_overhead_s * 1e12));
    cost.compute_efficiency = 1.0;
    cost.memory_efficiency = 1.0;
    const std::string name = first.device + ": " + std::string(compute::op_kind_name(kind));
    if (fit.is_compute_fitted) {
      const double efficiency = fit.compute_flops_per_s / peak;
      if (efficiency > 1.0) notes->push_back(name + ": fitted compute rate above the peak; efficiency capped at 1");
      cost.compute_efficiency = std::min(1.0, efficiency);
    }
    if (fit.is_memory_fitted) {
      const double efficiency = fit.memory_bytes_per_s / bandwidth;
      if (efficiency > 1.0) notes->push_back(name + ": fitted memory rate above the bandwidth; efficiency capped at 1");
      cost.memory_efficiency = std::min(1.0, efficiency);
    }
  }
  if (known == nullptr) {
    // The kinds not measured take a measured kind's parameters.
    const std::array<std::pair<OpKind, std::array<OpKind, 4>>, 7> fallbacks{{
        {OpKind::kAttention, {OpKind::kDenseGemm, OpKind::kGroupedGemm, OpKind::kRouter, OpKind::kPermute}},
        {OpKind::kElementwise, {OpKind::kPermute, OpKind::kUnpermute, OpKind::kRouter, OpKind::kDenseGemm}},
        {OpKind::kDenseGemm, {OpKind::kGroupedGemm, OpKind::kRouter, OpKind::kPermute, OpKind::kUnpermute}},
        {OpKind::kGroupedGemm, {OpKind::kDenseGemm, OpKind::kRouter, OpKind::kPermute, OpKind::kUnpermute}},
        {OpKind::kRouter, {OpKind::kDenseGemm, OpKind::kGroupedGemm, OpKind::kPermute, OpKind::kUnpermute}},
        {OpKind::kPermute, {OpKind::kUnpermute, OpKind::kRouter, OpKind::kDenseGemm, OpKind::kGroupedGemm}},
        {OpKind::kUnpermute, {OpKind::kPermute, OpKind::kRouter, OpKind::kDenseGemm, OpKind::kGroupedGemm}},
    }};
    for (const auto& [kind, sources] : fallbacks) {
      if (fits.count(kind) > 0) continue;
      for (OpKind source : sources) {
        if (fits.count(source) == 0) continue;
        const int tile = device.op(kind).token_tile;
        device.op(kind) = device.op(source);
        device.op(kind).token_tile = tile;
        notes->push_back(first.device + ": " + std::string(compute::op_kind_name(kind)) + " not measured; " +
                         "it takes " + std::string(compute::op_kind_name(source)) + "'s parameters");
        break;
      }
    }
  } else {
    for (OpKind kind : compute::kOpKinds) {
      if (fits.count(kind) == 0) {
        notes->push_back(first.device + ": " + std::string(compute::op_kind_name(kind)) +
                         " not measured; the built-in profile's parameters kept");
      }
    }
  }
  return device;
}

Fits fit_device(const std::vector<const Sample*>& samples, const std::string& what) {
  std::map<OpKind, std::vector<const Sample*>> by_kind;
  for (const Sample* s : samples) by_kind[s->kind].push_back(s);
  Fits fits;
  for (const auto& [kind, kind_samples] : by_kind) {
    if (static_cast<int>(kind_samples.size()) < kMinFitSamples) {
      throw std::invalid_argument(what + ": " + std::to_string(kind_samples.size()) + " measurements of " +
                                  kind_samples.front()->op + " on " + kind_samples.front()->device +
                                  " to fit, need at least " + std::to_string(kMinFitSamples));
    }
    fits[kind] = fit_kind(kind_samples);
  }
  return fits;
}

compute::Op op_of(const Sample& s) {
  compute::Op op;
  op.kind = s.kind;
  op.precision = s.precision;
  op.flops = s.flops;
  op.bytes = s.bytes;
  return op;
}

double predicted_s(const compute::DeviceProfile& device, const Sample& s) {
  return seconds_from_time(compute::op_time(device, op_of(s)));
}

std::string bound_of(const compute::DeviceProfile& device, const Sample& s) {
  const compute::OpCost& cost = device.op(s.kind);
  const double overhead = static_cast<double>(cost.launch_overhead_ps) * 1e-12;
  const double compute_s = s.flops / (device.peak_flops_per_s(s.precision) * cost.compute_efficiency);
  const double memory_s = s.bytes / (device.hbm_bandwidth_bps * cost.memory_efficiency);
  if (overhead >= compute_s && overhead >= memory_s) return "overhead";
  return compute_s >= memory_s ? "compute" : "memory";
}

}  // namespace

std::string op_kind_of(const std::string& op, compute::OpKind* kind) {
  static const std::array<std::pair<const char*, OpKind>, 5> kOps{{{"dense_gemm", OpKind::kDenseGemm},
                                                                   {"grouped_ffn", OpKind::kGroupedGemm},
                                                                   {"router", OpKind::kRouter},
                                                                   {"permute", OpKind::kPermute},
                                                                   {"unpermute", OpKind::kUnpermute}}};
  for (const auto& [name, k] : kOps) {
    if (op == name) {
      *kind = k;
      return std::string(compute::op_kind_name(k));
    }
  }
  return "";
}

Samples read_samples(const std::vector<std::string>& paths) {
  Samples result;
  for (const std::string& path : paths) {
    const kernels::Measurements measurements = read_measurements(path);
    int fitted = 0;
    for (int i = 0; i < measurements.measurements_size(); ++i) {
      const kernels::Measurement& m = measurements.measurements(i);
      Sample s;
      if (op_kind_of(m.op(), &s.kind).empty()) {
        ++result.num_ignored;
        continue;
      }
      const std::string where = path + ": measurements[" + std::to_string(i) + "] (" + m.op() + ")";
      s.file = path;
      s.device = measurements.device_name().empty() ? measurements.cpu_model() : measurements.device_name();
      if (s.device.empty()) throw std::invalid_argument(path + ": device_name: empty");
      s.is_cpu = measurements.backend() == "cpu";
      s.num_threads = measurements.threads();
      s.sm_count = measurements.sm_count();
      s.op = m.op();
      s.precision = precision_of(where, m.dtype());
      check_number(where, "flops", m.flops(), false);
      check_number(where, "bytes", m.bytes(), false);
      check_number(where, "timing.median_ms", m.timing().median_ms(), true);
      if (m.flops() == 0.0 && m.bytes() == 0.0) throw std::invalid_argument(where + ": neither flops nor bytes");
      s.flops = m.flops();
      s.bytes = m.bytes();
      s.time_s = m.timing().median_ms() * 1e-3;
      s.tokens = m.shape().tokens();
      s.hidden = m.shape().hidden();
      s.experts = m.shape().experts();
      s.topk = m.shape().topk();
      s.ffn = m.shape().ffn();
      s.skew = m.shape().skew();
      s.capacity_factor = m.shape().capacity_factor();
      result.samples.push_back(std::move(s));
      ++fitted;
    }
    if (fitted == 0) {
      throw std::invalid_argument(path +
                                  ": no measurement of an op calibration fits (dense_gemm, grouped_ffn, "
                                  "router, permute, unpermute)");
    }
  }
  return result;
}

std::string shape_label(const Sample& s) {
  std::string label = "tokens=" + std::to_string(s.tokens) + " hidden=" + std::to_string(s.hidden) +
                      " experts=" + std::to_string(s.experts) + " topk=" + std::to_string(s.topk) +
                      " ffn=" + std::to_string(s.ffn);
  if (!s.skew.empty()) label += " skew=" + s.skew;
  if (s.capacity_factor > 0.0) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, " cf=%g", s.capacity_factor);
    label += buffer;
  }
  return label;
}

std::vector<bool> held_out(const std::vector<Sample>& samples, const std::string& spec) {
  std::vector<bool> flags(samples.size(), false);
  const std::array<std::pair<const char*, std::int64_t Sample::*>, 5> sizes{{{"tokens", &Sample::tokens},
                                                                             {"hidden", &Sample::hidden},
                                                                             {"experts", &Sample::experts},
                                                                             {"topk", &Sample::topk},
                                                                             {"ffn", &Sample::ffn}}};
  if (spec == "none") return flags;
  if (spec == "largest") {
    std::set<std::string> devices;
    for (const Sample& s : samples) devices.insert(s.device);
    for (const std::string& device : devices) {
      for (const auto& [key, member] : sizes) {
        std::set<std::int64_t> values;
        for (const Sample& s : samples) {
          if (s.device == device) values.insert(s.*member);
        }
        if (values.size() < 2) continue;
        for (std::size_t i = 0; i < samples.size(); ++i) {
          if (samples[i].device == device && samples[i].*member == *values.rbegin()) flags[i] = true;
        }
      }
    }
    return flags;
  }
  const std::string expected =
      "--holdout: expected largest, none or KEY=V[,V...][+KEY=V...] with KEY one of tokens, "
      "hidden, experts, topk, ffn, skew; got '" +
      spec + "'";
  std::size_t begin = 0;
  while (true) {
    const std::size_t plus = spec.find('+', begin);
    const std::string rule = spec.substr(begin, plus == std::string::npos ? std::string::npos : plus - begin);
    const std::size_t equals = rule.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == rule.size()) throw std::invalid_argument(expected);
    const std::string key = rule.substr(0, equals);
    std::vector<std::string> values;
    std::stringstream list(rule.substr(equals + 1));
    for (std::string value; std::getline(list, value, ',');) {
      if (value.empty()) throw std::invalid_argument(expected);
      values.push_back(value);
    }
    if (key == "skew") {
      for (std::size_t i = 0; i < samples.size(); ++i) {
        if (std::find(values.begin(), values.end(), samples[i].skew) != values.end()) flags[i] = true;
      }
    } else {
      const auto size = std::find_if(sizes.begin(), sizes.end(), [&](const auto& entry) { return key == entry.first; });
      if (size == sizes.end()) throw std::invalid_argument(expected);
      for (const std::string& value : values) {
        std::size_t used = 0;
        long long number = 0;
        try {
          number = std::stoll(value, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != value.size()) throw std::invalid_argument(expected);
        for (std::size_t i = 0; i < samples.size(); ++i) {
          if (samples[i].*(size->second) == number) flags[i] = true;
        }
      }
    }
    if (plus == std::string::npos) return flags;
    begin = plus + 1;
  }
}

KindFit fit_kind(const std::vector<const Sample*>& samples) {
  if (static_cast<int>(samples.size()) < kMinFitSamples) {
    throw std::invalid_argument("calibrate: " + std::to_string(samples.size()) + " measurements to fit, need " +
                                std::to_string(kMinFitSamples));
  }
  double min_time = std::numeric_limits<double>::infinity();
  for (const Sample* s : samples) min_time = std::min(min_time, s->time_s);
  const Bounds bounds = rate_bounds(samples);
  const auto overhead_at = [&](double fraction) { return kMaxOverheadFraction * fraction * fraction * min_time; };

  // The overhead grid (denser near 0, where it matters to the small kernels), then golden section around the best.
  std::map<double, RateFit> tried;
  const auto fit_at = [&](double x) -> const RateFit& {
    auto it = tried.find(x);
    if (it == tried.end()) it = tried.emplace(x, fit_rates(samples, bounds, overhead_at(x))).first;
    return it->second;
  };
  double best_x = 0.0;
  for (int j = 0; j <= kOverheadGridSteps; ++j) {
    const double x = static_cast<double>(j) / kOverheadGridSteps;
    if (fit_at(x).objective < fit_at(best_x).objective) best_x = x;
  }
  const double step = 1.0 / kOverheadGridSteps;
  const double refined = minimise_1d([&](double x) { return fit_at(x).objective; }, std::max(0.0, best_x - step),
                                     std::min(1.0, best_x + step));
  if (fit_at(refined).objective < fit_at(best_x).objective) best_x = refined;

  const RateFit& rates = fit_at(best_x);
  KindFit fit;
  fit.launch_overhead_s = overhead_at(best_x);
  fit.compute_flops_per_s = rates.a > 0.0 ? 1.0 / rates.a : 0.0;
  fit.memory_bytes_per_s = rates.b > 0.0 ? 1.0 / rates.b : 0.0;
  fit.objective = rates.objective;
  for (const Sample* s : samples) {
    const double compute_s = s->flops * rates.a;
    const double memory_s = s->bytes * rates.b;
    if (s->flops > 0.0 && compute_s >= memory_s) fit.is_compute_fitted = true;
    if (s->bytes > 0.0 && memory_s > compute_s) fit.is_memory_fitted = true;
  }
  return fit;
}

Calibration calibrate(const std::vector<Sample>& samples, const std::string& holdout_spec) {
  const std::vector<bool> flags = held_out(samples, holdout_spec);
  Calibration calibration;
  reports::CalibrationResult& result = calibration.result;
  result.set_holdout(holdout_spec);
  std::set<std::string> files;
  for (const Sample& s : samples) {
    if (files.insert(s.file).second) result.add_files(s.file);
  }
  calibration.profile.source = "moesim calibrate";

  std::vector<std::string> devices;
  for (const Sample& s : samples) {
    if (std::find(devices.begin(), devices.end(), s.device) == devices.end()) devices.push_back(s.device);
  }
  std::vector<std::string> notes;
  for (const std::string& name : devices) {
    std::vector<const Sample*> all;
    std::vector<const Sample*> training;
    std::vector<const Sample*> validation;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      if (samples[i].device != name) continue;
      all.push_back(&samples[i]);
      (flags[i] ? validation : training).push_back(&samples[i]);
    }
    const Fits fits = fit_device(all, "calibrate");
    const compute::DeviceProfile device = device_profile(all, fits, &notes);
    calibration.profile.devices.push_back(device);

    std::optional<compute::DeviceProfile> validated;
    if (!validation.empty()) {
      std::vector<std::string> ignored_notes;
      validated = device_profile(training, fit_device(training, "--holdout " + holdout_spec), &ignored_notes);
    } else if (holdout_spec != "none") {
      notes.push_back(name + ": the --holdout rule holds out no measurement; nothing validated");
    }
    std::map<OpKind, std::vector<double>> held_errors;
    for (const Sample* s : validation) {
      reports::CalibrationPoint& point = *result.add_held_out();
      point.set_device(name);
      point.set_op(s->op);
      point.set_shape(shape_label(*s));
      point.set_flops(s->flops);
      point.set_bytes(s->bytes);
      point.set_measured_s(s->time_s);
      point.set_predicted_s(predicted_s(*validated, *s));
      point.set_relative_error((point.predicted_s() - s->time_s) / s->time_s);
      point.set_bound(bound_of(*validated, *s));
      held_errors[s->kind].push_back(std::abs(point.relative_error()));
    }
    for (const auto& [kind, fit] : fits) {
      reports::CalibrationKind& entry = *result.add_kinds();
      std::vector<double> fit_errors;
      int num_held_out = 0;
      for (const Sample* s : all) {
        if (s->kind != kind) continue;
        entry.set_op(s->op);
        fit_errors.push_back(std::abs(predicted_s(device, *s) - s->time_s) / s->time_s);
      }
      for (const Sample* s : validation) num_held_out += s->kind == kind ? 1 : 0;
      const compute::OpCost& cost = device.op(kind);
      entry.set_device(name);
      entry.set_op_kind(std::string(compute::op_kind_name(kind)));
      entry.set_num_points(static_cast<int>(fit_errors.size()));
      entry.set_num_held_out(num_held_out);
      entry.set_launch_overhead_s(static_cast<double>(cost.launch_overhead_ps) * 1e-12);
      entry.set_compute_efficiency(cost.compute_efficiency);
      entry.set_memory_efficiency(cost.memory_efficiency);
      entry.set_compute_flops_per_s(fit.compute_flops_per_s > 0.0
                                        ? device.peak_flops_per_s(all.front()->precision) * cost.compute_efficiency
                                        : 0.0);
      entry.set_memory_bytes_per_s(device.hbm_bandwidth_bps * cost.memory_efficiency);
      entry.set_is_compute_fitted(fit.is_compute_fitted);
      entry.set_is_memory_fitted(fit.is_memory_fitted);
      entry.set_fit_median_abs_error(median(fit_errors));
      entry.set_held_out_median_abs_error(median(held_errors[kind]));
      entry.set_held_out_p90_abs_error(percentile(held_errors[kind], 0.9));
    }
  }
  for (const std::string& note : notes) result.add_notes(note);
  compute::validate_cost_profile(calibration.profile);
  return calibration;
}

std::string calibration_text(const reports::CalibrationResult& result) {
  std::ostringstream out;
  out << "calibration of";
  for (const std::string& file : result.files()) out << " " << file;
  out << "\n";
  if (result.num_ignored() > 0) {
    out << result.num_ignored() << " measurements of ops calibration does not fit (all-to-alls) ignored\n";
  }
  out << "held out: " << result.holdout() << "\n";
  std::string device;
  char line[512];
  for (const reports::CalibrationKind& kind : result.kinds()) {
    if (kind.device() != device) {
      device = kind.device();
      out << "\ndevice " << device << "\n";
      std::snprintf(line, sizeof line, "  %-12s %-13s %6s %5s %11s %12s %11s %6s %6s %8s %8s %8s\n", "op", "kind",
                    "points", "held", "overhead", "GFLOP/s", "GB/s", "eff_c", "eff_m", "fit med", "held med",
                    "held p90");
      out << line;
    }
    char flops[32] = "-";
    char bandwidth[32] = "-";
    if (kind.is_compute_fitted()) std::snprintf(flops, sizeof flops, "%.4g", kind.compute_flops_per_s() / 1e9);
    if (kind.is_memory_fitted()) std::snprintf(bandwidth, sizeof bandwidth, "%.4g", kind.memory_bytes_per_s() / 1e9);
    std::snprintf(line, sizeof line, "  %-12s %-13s %6d %5d %11s %12s %11s %6.3f %6.3f %8s %8s %8s\n",
                  kind.op().c_str(), kind.op_kind().c_str(), kind.num_points(), kind.num_held_out(),
                  format_seconds(kind.launch_overhead_s()).c_str(), flops, bandwidth, kind.compute_efficiency(),
                  kind.memory_efficiency(), format_percent(kind.fit_median_abs_error()).c_str(),
                  kind.num_held_out() > 0 ? format_percent(kind.held_out_median_abs_error()).c_str() : "-",
                  kind.num_held_out() > 0 ? format_percent(kind.held_out_p90_abs_error()).c_str() : "-");
    out << line;
  }
  if (result.held_out_size() > 0) {
    out << "\nheld-out measurements, predicted by the fit without them:\n";
    std::snprintf(line, sizeof line, "  %-12s %-62s %12s %12s %8s %s\n", "op", "shape", "measured", "predicted",
                  "error", "bound");
    out << line;
    for (const reports::CalibrationPoint& p : result.held_out()) {
      std::snprintf(line, sizeof line, "  %-12s %-62s %12s %12s %+7.1f%% %s\n", p.op().c_str(), p.shape().c_str(),
                    format_seconds(p.measured_s()).c_str(), format_seconds(p.predicted_s()).c_str(),
                    p.relative_error() * 100.0, p.bound().c_str());
      out << line;
    }
  }
  if (result.notes_size() > 0) {
    out << "\nnotes:\n";
    for (const std::string& note : result.notes()) out << "  - " << note << "\n";
  }
  if (!result.profile_path().empty()) out << "\nprofile written to " << result.profile_path() << "\n";
  return out.str();
}

}  // namespace moesim::sim::calibrate
