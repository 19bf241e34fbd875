// Routing distributions: parsing, description, and the popularity of each expert.
//
// Theory of operation. A popularity distribution is reduced to one number per expert, its popularity p_e (sum 1);
// the sampler in traffic.cpp draws every token's experts from it. Each seeded distribution draws from a stream of
// its own, (seed, constant per distribution), so the experts' popularity is independent of the per-rank token
// streams drawn from the same seed, and the same for every layer, group and thread that uses the seed.
//   zipf:S        the weight of the expert of rank r (0-based) is (r + 1)^-S; which expert gets which rank is a
//                 seeded Fisher-Yates shuffle, so the hot experts fall on arbitrary EP ranks (a fixed order would
//                 always load rank 0).
//   dirichlet:A   G_e ~ Gamma(A, 1) per expert in index order, p = G / sum G. Gamma by Marsaglia and Tsang (2000):
//                 for A >= 1, d = A - 1/3, c = 1 / sqrt(9 d); draw x ~ N(0, 1), v = (1 + c x)^3 until v > 0 and
//                 U < 1 - 0.0331 x^4 or ln U < x^2 / 2 + d (1 - v + ln v); return d v. For A < 1,
//                 Gamma(A) = Gamma(A + 1) U^(1/A). Experts are exchangeable already, so no permutation is needed.
//   lognormal:CV  p_e proportional to exp(sigma Z_e), sigma = sqrt(ln(1 + CV^2)): for X = exp(sigma Z),
//                 E[X^2] / E[X]^2 = exp(sigma^2) = 1 + CV^2, so X has coefficient of variation CV, and normalising
//                 by the sum (a common factor) keeps it.
//   hot:H:P       the hot set is the first H of a seeded partial Fisher-Yates shuffle; the popularity reported is
//                 the expected share of the choices (P / H hot, (1 - P) / (E - H) cold). The sampler does not draw
//                 from it: it samples the hot count per token (routing.hpp).
// Both seeded continuous laws work in logs and normalise by exp(log w - max log w): Dirichlet weights for small A
// span hundreds of orders of magnitude, and a sum of underflowed weights would be 0. Normals come from Box-Muller
// over common/rng.hpp, never from <random>'s distributions, whose output is implementation-defined.
#include "workloads/routing.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "common/units.hpp"

namespace moesim::workloads {
namespace {

// Stream ids, distinct per distribution, so no two seeded draws share random numbers.
constexpr std::uint64_t kPermutationStream = 0x7a6970662d72616eULL;  // "zipf-ran"
constexpr std::uint64_t kDirichletStream = 0x6469726963686c74ULL;    // "dirichlt"
constexpr std::uint64_t kLognormalStream = 0x6c6f676e6f726d6cULL;    // "lognorml"
constexpr std::uint64_t kHotStream = 0x686f742d65787073ULL;          // "hot-exps"
constexpr std::uint64_t kLayerStream = 0x6c617965722d6964ULL;        // "layer-id"
constexpr std::uint64_t kDriftStream = 0x6472696674737470ULL;        // "driftstp"

constexpr const char* kForms =
    "uniform, zipf:S (S > 0), dirichlet:A (A > 0), lognormal:CV (CV > 0) or hot:H:P (integer H >= 1, 0 < P < 1)";

[[noreturn]] void reject(const std::string& text, const std::string& why) {
  throw std::invalid_argument(std::string("routing: expected ") + kForms + "; got '" + text + "' (" + why + ")");
}

// The whole of `s` as a finite number, or nothing.
std::optional<double> parse_number(std::string_view s) {
  double value = 0.0;
  const auto result = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || result.ec != std::errc() || result.ptr != s.data() + s.size() || !std::isfinite(value)) return {};
  return value;
}

std::optional<int> parse_integer(std::string_view s) {
  int value = 0;
  const auto result = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || result.ec != std::errc() || result.ptr != s.data() + s.size()) return {};
  return value;
}

bool is_positive(double x) {
  return std::isfinite(x) && x > 0.0;
}

// Checks what expert_popularity needs, for specs built by hand rather than parsed.
void check_parameters(const RoutingSpec& spec, int num_experts) {
  if (num_experts < 1) throw std::invalid_argument("num_experts: must be >= 1, got " + std::to_string(num_experts));
  auto fail = [&](const std::string& what) { throw std::invalid_argument("routing: " + what); };
  switch (spec.kind) {
    case RoutingSpec::Kind::kUniform:
      break;
    case RoutingSpec::Kind::kZipf:
      if (!is_positive(spec.zipf_exponent))
        fail("zipf exponent must be finite and > 0, got " + format_number(spec.zipf_exponent));
      break;
    case RoutingSpec::Kind::kDirichlet:
      if (!is_positive(spec.dirichlet_alpha))
        fail("dirichlet A must be finite and > 0, got " + format_number(spec.dirichlet_alpha));
      break;
    case RoutingSpec::Kind::kLognormal:
      if (!is_positive(spec.lognormal_cv))
        fail("lognormal CV must be finite and > 0, got " + format_number(spec.lognormal_cv));
      break;
    case RoutingSpec::Kind::kHot:
      if (spec.hot_experts < 1 || spec.hot_experts >= num_experts) {
        fail("hot H must be >= 1 and < num_experts (" + std::to_string(num_experts) + "), got " +
             std::to_string(spec.hot_experts));
      }
      if (!(spec.hot_share > 0.0 && spec.hot_share < 1.0))
        fail("hot P must be in (0, 1), got " + format_number(spec.hot_share));
      break;
  }
}

// p_e = exp(log_weight[e] - max) / sum, summed in index order.
std::vector<double> normalise_logs(const std::vector<double>& log_weight) {
  const double top = *std::max_element(log_weight.begin(), log_weight.end());
  std::vector<double> p(log_weight.size());
  double total = 0.0;
  for (std::size_t e = 0; e < p.size(); ++e) {
    p[e] = std::exp(log_weight[e] - top);
    total += p[e];
  }
  for (double& x : p) x /= total;
  return p;
}

}  // namespace

std::string RoutingSpec::describe() const {
  std::string out;
  switch (kind) {
    case Kind::kUniform:
      out = "uniform";
      break;
    case Kind::kZipf:
      out = "zipf:" + format_number(zipf_exponent);
      break;
    case Kind::kDirichlet:
      out = "dirichlet:" + format_number(dirichlet_alpha);
      break;
    case Kind::kLognormal:
      out = "lognormal:" + format_number(lognormal_cv);
      break;
    case Kind::kHot:
      out = "hot:" + std::to_string(hot_experts) + ":" + format_number(hot_share);
      break;
  }
  if (node_limit > 0) out += ", node-limit " + std::to_string(node_limit);
  if (device_limit > 0) out += ", device-limit " + std::to_string(device_limit);
  if (group_limit > 0) out += ", groups " + std::to_string(expert_groups) + " top-" + std::to_string(group_limit);
  if (drift > 0.0) out += ", drift " + format_number(drift);
  return out;
}

RoutingSpec parse_routing(const std::string& text) {
  RoutingSpec spec;
  const std::string_view view = text;
  const std::size_t colon = view.find(':');
  const std::string_view name = view.substr(0, colon);
  const std::string_view params = colon == std::string_view::npos ? std::string_view() : view.substr(colon + 1);
  if (name == "uniform") {
    if (colon != std::string_view::npos) reject(text, "uniform takes no parameter");
    return spec;
  }
  if (name == "zipf" || name == "dirichlet" || name == "lognormal") {
    const char* symbol = name == "zipf" ? "S" : name == "dirichlet" ? "A" : "CV";
    const std::optional<double> value = parse_number(params);
    if (!value) reject(text, std::string(name) + " needs a number " + symbol);
    if (!(*value > 0.0)) reject(text, std::string(symbol) + " must be > 0");
    if (name == "zipf") {
      spec.kind = RoutingSpec::Kind::kZipf;
      spec.zipf_exponent = *value;
    } else if (name == "dirichlet") {
      spec.kind = RoutingSpec::Kind::kDirichlet;
      spec.dirichlet_alpha = *value;
    } else {
      spec.kind = RoutingSpec::Kind::kLognormal;
      spec.lognormal_cv = *value;
    }
    return spec;
  }
  if (name == "hot") {
    const std::size_t split = params.find(':');
    if (split == std::string_view::npos) reject(text, "hot needs both H and P");
    const std::optional<int> hot = parse_integer(params.substr(0, split));
    const std::optional<double> share = parse_number(params.substr(split + 1));
    if (!hot) reject(text, "H must be an integer");
    if (*hot < 1) reject(text, "H must be >= 1");
    if (!share) reject(text, "P must be a number");
    if (!(*share > 0.0 && *share < 1.0)) reject(text, "P must be in (0, 1)");
    spec.kind = RoutingSpec::Kind::kHot;
    spec.hot_experts = *hot;
    spec.hot_share = *share;
    return spec;
  }
  reject(text, "unknown distribution");
}

std::vector<int> hot_experts(const RoutingSpec& spec, int num_experts, std::uint64_t seed) {
  if (spec.kind != RoutingSpec::Kind::kHot) throw std::invalid_argument("hot_experts: routing is not hot:H:P");
  check_parameters(spec, num_experts);
  std::vector<int> experts(static_cast<std::size_t>(num_experts));
  for (std::size_t i = 0; i < experts.size(); ++i) experts[i] = static_cast<int>(i);
  Rng rng(seed, kHotStream);
  const auto num_hot = static_cast<std::size_t>(spec.hot_experts);
  for (std::size_t i = 0; i < num_hot; ++i) {
    std::swap(experts[i], experts[i + rng.below(experts.size() - i)]);
  }
  experts.resize(num_hot);
  std::sort(experts.begin(), experts.end());
  return experts;
}

double normal_variate(Rng& rng) {
  // Only the cosine half is used: the samplers draw at most one normal per expert, so caching the sine half
  // would save nothing worth a stateful generator.
  const double u = 1.0 - rng.uniform();  // (0, 1], so the log is finite
  const double angle = 2.0 * std::numbers::pi * rng.uniform();
  return std::sqrt(-2.0 * std::log(u)) * std::cos(angle);
}

double log_gamma_variate(double shape, Rng& rng) {
  if (!is_positive(shape))
    throw std::invalid_argument("gamma shape: must be finite and > 0, got " + format_number(shape));
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) U^(1/a): the boost of Marsaglia and Tsang, added in logs.
    const double u = 1.0 - rng.uniform();
    return log_gamma_variate(shape + 1.0, rng) + std::log(u) / shape;
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x = 0.0;
    double v = 0.0;
    do {
      x = normal_variate(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = rng.uniform();
    const double x2 = x * x;
    // The squeeze accepts about 98% of draws without a logarithm.
    if (u < 1.0 - 0.0331 * x2 * x2) return std::log(d * v);
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return std::log(d * v);
  }
}

std::vector<double> expert_popularity(const RoutingSpec& spec, int num_experts, std::uint64_t seed) {
  check_parameters(spec, num_experts);
  const auto n = static_cast<std::size_t>(num_experts);
  switch (spec.kind) {
    case RoutingSpec::Kind::kUniform:
      return std::vector<double>(n, 1.0 / num_experts);
    case RoutingSpec::Kind::kDirichlet: {
      Rng rng(seed, kDirichletStream);
      std::vector<double> log_weight(n);
      for (double& w : log_weight) w = log_gamma_variate(spec.dirichlet_alpha, rng);
      return normalise_logs(log_weight);
    }
    case RoutingSpec::Kind::kLognormal: {
      Rng rng(seed, kLognormalStream);
      const double sigma = std::sqrt(std::log1p(spec.lognormal_cv * spec.lognormal_cv));
      std::vector<double> log_weight(n);
      for (double& w : log_weight) w = sigma * normal_variate(rng);
      return normalise_logs(log_weight);
    }
    case RoutingSpec::Kind::kHot: {
      std::vector<double> p(n, (1.0 - spec.hot_share) / (num_experts - spec.hot_experts));
      for (const int e : hot_experts(spec, num_experts, seed))
        p[static_cast<std::size_t>(e)] = spec.hot_share / spec.hot_experts;
      return p;
    }
    case RoutingSpec::Kind::kZipf:
      break;
  }

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

std::uint64_t layer_seed(std::uint64_t seed, int layer) {
  if (layer < 0) throw std::invalid_argument("layer: must be >= 0, got " + std::to_string(layer));
  return layer == 0 ? seed : hash_combine(hash_combine(seed, kLayerStream), static_cast<std::uint64_t>(layer));
}

std::vector<double> drift_offsets(const RoutingSpec& spec, int num_experts, std::uint64_t seed, int step) {
  if (num_experts < 1) throw std::invalid_argument("num_experts: must be >= 1, got " + std::to_string(num_experts));
  if (step < 0) throw std::invalid_argument("step: must be >= 0, got " + std::to_string(step));
  if (!(std::isfinite(spec.drift) && spec.drift >= 0.0))
    throw std::invalid_argument("drift: must be finite and >= 0, got " + format_number(spec.drift));
  std::vector<double> offset(static_cast<std::size_t>(num_experts), 0.0);
  if (spec.drift == 0.0) return offset;
  // Step i's increments come from a stream of their own, so step s reuses the walk of steps 1..s-1.
  for (int i = 1; i <= step; ++i) {
    Rng rng(seed, hash_combine(kDriftStream, static_cast<std::uint64_t>(i)));
    for (double& x : offset) x += spec.drift * normal_variate(rng);
  }
  return offset;
}

}  // namespace moesim::workloads
