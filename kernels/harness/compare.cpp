#include "kernels/harness/compare.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace moesim::kernels::harness {
namespace {

std::string element(std::size_t i, double got, double want) {
  std::ostringstream out;
  out << "[" << i << "]: " << got << " vs " << want;
  return out.str();
}

// The normalised error of `got` against `want` (both widened to double), with the non-zero check.
Comparison compare_rounded(const std::string& output, const std::vector<double>& got, const std::vector<double>& want,
                           double tolerance) {
  Comparison c;
  c.output = output;
  c.tolerance = tolerance;
  c.elements = static_cast<std::int64_t>(want.size());
  if (got.size() != want.size()) {
    c.mismatches = c.elements;
    c.error = INFINITY;
    c.first_bad = "size " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
    return c;
  }
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  c.is_nonzero_required = scale > 0;
  const double norm = scale > 0 ? scale : 1.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    c.is_nonzero = c.is_nonzero || got[i] != 0;
    const double error = std::isfinite(got[i]) ? std::fabs(got[i] - want[i]) / norm : INFINITY;
    c.error = std::max(c.error, error);
    if (!(error <= tolerance)) {
      if (c.mismatches == 0) c.first_bad = element(i, got[i], want[i]);
      ++c.mismatches;
    }
  }
  return c;
}

template <typename T, typename Show>
Comparison compare_bits(const std::string& output, const std::vector<T>& got, const std::vector<T>& want, Show show) {
  Comparison c;
  c.output = output;
  c.is_exact = true;
  c.elements = static_cast<std::int64_t>(want.size());
  if (got.size() != want.size()) {
    c.mismatches = c.elements;
    c.first_bad = "size " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
    return c;
  }
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (c.mismatches == 0) c.first_bad = element(i, show(got[i]), show(want[i]));
    ++c.mismatches;
  }
  return c;
}

}  // namespace

bool Comparison::passed() const {
  return mismatches == 0 && (is_exact || error <= tolerance) && (!is_nonzero_required || is_nonzero);
}

Comparison compare_exact(const std::string& output, const std::vector<std::int32_t>& got,
                         const std::vector<std::int32_t>& want) {
  return compare_bits(output, got, want, [](std::int32_t v) { return static_cast<double>(v); });
}

Comparison compare_exact(const std::string& output, const std::vector<Bf16>& got, const std::vector<Bf16>& want) {
  Comparison c = compare_bits(output, got, want, [](Bf16 v) { return static_cast<double>(to_float(v)); });
  // The non-zero check, for moved data: all-zero output of non-zero input fails even where the poison matched.
  for (const Bf16 v : want) c.is_nonzero_required = c.is_nonzero_required || to_float(v) != 0;
  for (const Bf16 v : got) c.is_nonzero = c.is_nonzero || (to_float(v) != 0 && !std::isnan(to_float(v)));
  return c;
}

Comparison compare_fp32(const std::string& output, const std::vector<float>& got, const std::vector<double>& ref) {
  std::vector<double> got_wide(got.begin(), got.end());
  std::vector<double> want(ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) want[i] = static_cast<float>(ref[i]);
  return compare_rounded(output, got_wide, want, kFp32Tolerance);
}

Comparison compare_bf16(const std::string& output, const std::vector<Bf16>& got, const std::vector<double>& ref) {
  std::vector<double> got_wide(got.size());
  for (std::size_t i = 0; i < got.size(); ++i) got_wide[i] = to_float(got[i]);
  std::vector<double> want(ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) want[i] = to_float(bf16_from_double(ref[i]));
  return compare_rounded(output, got_wide, want, kBf16Tolerance);
}

}  // namespace moesim::kernels::harness
