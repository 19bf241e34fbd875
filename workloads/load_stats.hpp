// Summary statistics of a load vector (tokens per expert, per rank, ...), as the capacity report prints them.
#pragma once

#include <cstdint>
#include <vector>

namespace moesim::workloads {

struct LoadStats {
  std::int64_t count = 0;  // number of entries
  double total = 0.0;
  double mean = 0.0;
  double min = 0.0;
  double max = 0.0;
  double max_over_mean = 0.0;  // 0 when the mean is 0
  double cv = 0.0;             // population standard deviation / mean (0 when the mean is 0)
  double gini = 0.0;           // Gini coefficient in [0, 1 - 1/n]: sum_i sum_j |x_i - x_j| / (2 n^2 mean)
};

// Throws std::invalid_argument for an empty vector or a negative or non-finite entry.
LoadStats load_stats(const std::vector<double>& loads);
LoadStats load_stats(const std::vector<std::int64_t>& loads);

// A histogram of the loads in `num_bins` equal-width bins over [0, max] (the last bin closed); bin i covers
// [i w, (i + 1) w) with w = max / num_bins (w = 1 when max is 0). Counts of entries per bin. Throws
// std::invalid_argument for num_bins < 1 and for the vectors load_stats rejects.
struct Histogram {
  double bin_width = 0.0;
  std::vector<std::int64_t> counts;
};
Histogram load_histogram(const std::vector<double>& loads, int num_bins);

}  // namespace moesim::workloads
