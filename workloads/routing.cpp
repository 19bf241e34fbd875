// Routing distributions: parsing, description, and the popularity of each expert.
//
// Theory of operation. A distribution is reduced to one number per expert, its popularity p_e (sum 1); the
// sampler in traffic.cpp draws every token's experts from it. For zipf:S the weight of the expert of rank r
// (0-based) is (r + 1)^-S. Which expert gets which rank is a seeded Fisher-Yates shuffle, drawn from a stream
// of its own, so the hot experts fall on arbitrary EP ranks (a fixed order would always load rank 0) and the
// placement is the same for every layer, group and thread that uses the same seed.
#include "workloads/routing.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

#include "common/rng.hpp"

namespace moesim::workloads {
namespace {

// Keeps the expert permutation independent of the per-rank token streams drawn from the same seed.
constexpr std::uint64_t kPermutationStream = 0x7a6970662d72616eULL;  // "zipf-ran"

std::string format_number(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace

std::string RoutingSpec::describe() const {
  std::string out = kind == Kind::kUniform ? "uniform" : "zipf:" + format_number(zipf_exponent);
  if (node_limit > 0) out += ", node-limit " + std::to_string(node_limit);
  return out;
}

RoutingSpec parse_routing(const std::string& text) {
  RoutingSpec spec;
  if (text == "uniform") return spec;
  const std::string prefix = "zipf:";
  if (text.rfind(prefix, 0) == 0) {
    const char* first = text.data() + prefix.size();
    const char* last = text.data() + text.size();
    double exponent = 0.0;
    const auto result = std::from_chars(first, last, exponent);
    if (result.ec == std::errc() && result.ptr == last && std::isfinite(exponent) && exponent > 0.0) {
      spec.kind = RoutingSpec::Kind::kZipf;
      spec.zipf_exponent = exponent;
      return spec;
    }
  }
  throw std::invalid_argument("routing: expected uniform or zipf:S with S > 0, got '" + text + "'");
}

std::vector<double> expert_popularity(const RoutingSpec& spec, int num_experts, std::uint64_t seed) {
  if (num_experts < 1) throw std::invalid_argument("num_experts: must be >= 1, got " + std::to_string(num_experts));
  const auto n = static_cast<std::size_t>(num_experts);
  if (spec.kind == RoutingSpec::Kind::kUniform) return std::vector<double>(n, 1.0 / num_experts);

  std::vector<int> expert_of_rank(n);
  for (std::size_t i = 0; i < n; ++i) expert_of_rank[i] = static_cast<int>(i);
  Rng rng(seed, kPermutationStream);
  for (std::size_t i = n - 1; i > 0; --i) {
    std::swap(expert_of_rank[i], expert_of_rank[rng.below(i + 1)]);
  }

  // Summing from the smallest weight keeps the normalisation accurate for large S.
  std::vector<double> popularity(n);
  double total = 0.0;
  for (std::size_t rank = n; rank-- > 0;) {
    const double weight = std::pow(static_cast<double>(rank + 1), -spec.zipf_exponent);
    popularity[static_cast<std::size_t>(expert_of_rank[rank])] = weight;
    total += weight;
  }
  for (double& p : popularity) p /= total;
  return popularity;
}

}  // namespace moesim::workloads
