// Summary statistics of a load vector.
//
// Gini is computed from the sorted values, G = sum_i (2i - n - 1) x_(i) / (n^2 mean) with 1-based i, in
// O(n log n) rather than over all n^2 pairs. The sum is taken pairwise from both ends,
// sum_{i <= n/2} (n + 1 - 2i) (x_(n+1-i) - x_(i)): every term is then a non-negative difference of sorted values,
// so rounding can never make G negative, and equal loads give exactly 0 instead of a residue of cancelling terms.
// The standard deviation takes two passes (mean first) for the same reason: no cancellation of large squares.
#include "workloads/load_stats.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/units.hpp"

namespace moesim::workloads {
namespace {

void check_loads(const std::vector<double>& loads) {
  if (loads.empty()) throw std::invalid_argument("loads: expected at least one entry, got none");
  for (std::size_t i = 0; i < loads.size(); ++i) {
    if (!std::isfinite(loads[i]) || loads[i] < 0.0) {
      throw std::invalid_argument("loads[" + std::to_string(i) + "]: must be finite and >= 0, got " +
                                  format_number(loads[i]));
    }
  }
}

}  // namespace

LoadStats load_stats(const std::vector<double>& loads) {
  check_loads(loads);
  const auto n = static_cast<std::int64_t>(loads.size());
  std::vector<double> sorted = loads;
  std::sort(sorted.begin(), sorted.end());

  LoadStats stats;
  stats.count = n;
  for (const double x : sorted) stats.total += x;
  stats.mean = stats.total / static_cast<double>(n);
  stats.min = sorted.front();
  stats.max = sorted.back();
  if (stats.mean > 0.0) {
    stats.max_over_mean = stats.max / stats.mean;
    double sum_sq = 0.0;
    for (const double x : sorted) sum_sq += (x - stats.mean) * (x - stats.mean);
    stats.cv = std::sqrt(sum_sq / static_cast<double>(n)) / stats.mean;
    double weighted = 0.0;
    for (std::int64_t i = 0; i < n / 2; ++i) {
      weighted += static_cast<double>(n - 1 - 2 * i) * (sorted[n - 1 - i] - sorted[i]);
    }
    // n^2 mean = n total.
    stats.gini = weighted / (static_cast<double>(n) * stats.total);
  }
  return stats;
}

LoadStats load_stats(const std::vector<std::int64_t>& loads) {
  std::vector<double> as_double(loads.size());
  for (std::size_t i = 0; i < loads.size(); ++i) {
    // Checked here so the message shows the integer as given.
    if (loads[i] < 0) {
      throw std::invalid_argument("loads[" + std::to_string(i) + "]: must be >= 0, got " + std::to_string(loads[i]));
    }
    as_double[i] = static_cast<double>(loads[i]);
  }
  return load_stats(as_double);
}

Histogram load_histogram(const std::vector<double>& loads, int num_bins) {
  if (num_bins < 1) throw std::invalid_argument("num_bins: must be >= 1, got " + std::to_string(num_bins));
  check_loads(loads);
  const double max = *std::max_element(loads.begin(), loads.end());
  Histogram hist;
  hist.bin_width = max > 0.0 ? max / num_bins : 1.0;
  hist.counts.assign(num_bins, 0);
  for (const double x : loads) {
    // x / w can land one bin off when rounded; nudge it so that bin i holds exactly the x with i w <= x < (i + 1) w
    // as the products are computed. The last bin also takes x = max.
    auto bin = static_cast<std::int64_t>(x / hist.bin_width);
    if (bin > 0 && static_cast<double>(bin) * hist.bin_width > x) --bin;
    if (bin + 1 < num_bins && static_cast<double>(bin + 1) * hist.bin_width <= x) ++bin;
    ++hist.counts[std::min<std::int64_t>(bin, num_bins - 1)];
  }
  return hist;
}

}  // namespace moesim::workloads
