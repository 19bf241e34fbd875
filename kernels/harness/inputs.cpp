#include "kernels/harness/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace moesim::kernels::harness {

std::string Skew::name() const {
  switch (kind) {
    case Kind::kUniform:
      return "uniform";
    case Kind::kZipf: {
      std::ostringstream out;
      out << "zipf:" << alpha;
      return out.str();
    }
    case Kind::kAllToOne:
      return "all_to_one";
    case Kind::kOneEmpty:
      return "one_empty";
  }
  return "unknown";
}

Skew parse_skew(const std::string& text) {
  if (text == "uniform") return {};
  if (text == "all_to_one") return {Skew::Kind::kAllToOne, 0};
  if (text == "one_empty") return {Skew::Kind::kOneEmpty, 0};
  if (text.rfind("zipf:", 0) == 0) {
    std::size_t used = 0;
    double alpha = -1;
    try {
      alpha = std::stod(text.substr(5), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used > 0 && used == text.size() - 5 && alpha >= 0 && std::isfinite(alpha)) return {Skew::Kind::kZipf, alpha};
  }
  throw std::invalid_argument("skew: expected uniform, zipf:ALPHA (ALPHA >= 0), all_to_one or one_empty, got '" + text +
                              "'");
}

Routing sample_routing(std::int64_t tokens, int experts, int topk, const Skew& skew, bool is_quantized, Rng& rng) {
  if (skew.kind == Skew::Kind::kOneEmpty && topk >= experts)
    throw std::invalid_argument("skew one_empty: needs topk < experts, got topk = " + std::to_string(topk));
  std::vector<double> log_popularity(static_cast<std::size_t>(experts), 0.0);
  for (int e = 0; e < experts; ++e) {
    if (skew.kind == Skew::Kind::kZipf) log_popularity[static_cast<std::size_t>(e)] = -skew.alpha * std::log(e + 1.0);
    if (skew.kind == Skew::Kind::kOneEmpty && e == experts - 1)
      log_popularity[static_cast<std::size_t>(e)] = -std::numeric_limits<double>::infinity();
  }
  Routing routing;
  const auto copies = static_cast<std::size_t>(tokens * topk);
  routing.expert.resize(copies);
  routing.weight.resize(copies);
  std::vector<double> key(static_cast<std::size_t>(experts));
  std::vector<std::int32_t> order(static_cast<std::size_t>(experts));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::size_t e = 0; e < key.size(); ++e) key[e] = log_popularity[e] - std::log(-std::log(rng.uniform()));
    std::iota(order.begin(), order.end(), 0);
    if (skew.kind != Skew::Kind::kAllToOne)
      std::partial_sort(order.begin(), order.begin() + topk, order.end(),
                        [&](std::int32_t a, std::int32_t b) { return key[a] > key[b] || (key[a] == key[b] && a < b); });
    for (int j = 0; j < topk; ++j) {
      const auto c = static_cast<std::size_t>(t * topk + j);
      routing.expert[c] = order[static_cast<std::size_t>(j)];
      routing.weight[c] =
          is_quantized ? 0.25f * static_cast<float>(1 + rng.next() % 3) : static_cast<float>(rng.uniform(0.05, 1.0));
    }
  }
  return routing;
}

std::vector<Bf16> random_bf16(std::size_t count, double scale, Rng& rng) {
  std::vector<Bf16> values(count);
  for (auto& v : values) v = bf16_from_double(rng.uniform(-scale, scale));
  return values;
}

}  // namespace moesim::kernels::harness
