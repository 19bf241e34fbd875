#include "kernels/harness/validate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <sstream>

#include "kernels/harness/reference.hpp"
#include "kernels/index_math.hpp"

namespace moesim::kernels::harness {
namespace {

using Kind = Skew::Kind;

ValidationShape shape(std::string name, std::int64_t tokens, std::int64_t hidden, int experts, int topk,
                      std::int64_t ffn) {
  ValidationShape s;
  s.name = std::move(name);
  s.tokens = tokens;
  s.hidden = hidden;
  s.experts = experts;
  s.topk = topk;
  s.ffn = ffn;
  return s;
}

std::vector<ValidationShape> make_shapes() {
  std::vector<ValidationShape> shapes;
  shapes.push_back(shape("empty", 0, 16, 4, 2, 8));
  shapes.push_back(shape("one_token", 1, 32, 8, 2, 16));
  {
    auto s = shape("hidden_1", 64, 1, 8, 2, 4);
    s.score = ScoreFunction::kSigmoid;
    shapes.push_back(s);
  }
  {
    auto s = shape("top1_drop_position", 96, 64, 8, 1, 32);
    s.capacity_factor = 1.0;
    shapes.push_back(s);
  }
  shapes.push_back(shape("topk_all_experts", 40, 32, 6, 6, 16));
  {
    auto s = shape("all_to_one_drop_position", 80, 32, 8, 1, 16);
    s.skew = {Kind::kAllToOne, 0};
    s.capacity_factor = 1.0;
    shapes.push_back(s);
  }
  {
    auto s = shape("all_to_one_drop_score", 80, 24, 4, 2, 16);
    s.skew = {Kind::kAllToOne, 0};
    s.capacity_factor = 1.5;
    s.policy = DropPolicy::kDropScore;
    s.is_quantized = true;
    shapes.push_back(s);
  }
  {
    auto s = shape("one_empty_dropless", 100, 48, 8, 2, 24);
    s.skew = {Kind::kOneEmpty, 0};
    shapes.push_back(s);
  }
  {
    auto s = shape("grouped_sigmoid_bias", 128, 64, 16, 4, 32);
    s.score = ScoreFunction::kSigmoid;
    s.groups = 4;
    s.group_limit = 2;
    s.has_bias = true;
    shapes.push_back(s);
  }
  {
    auto s = shape("groups_of_one", 50, 16, 8, 2, 8);
    s.groups = 8;
    s.group_limit = 3;
    shapes.push_back(s);
  }
  {
    auto s = shape("zipf_drop_score", 256, 64, 16, 2, 32);
    s.skew = {Kind::kZipf, 1.2};
    s.capacity_factor = 1.0;
    s.policy = DropPolicy::kDropScore;
    shapes.push_back(s);
  }
  {
    auto s = shape("zipf_dropless", 256, 128, 32, 4, 64);
    s.skew = {Kind::kZipf, 1.0};
    shapes.push_back(s);
  }
  {
    auto s = shape("odd_sizes", 129, 97, 7, 3, 33);
    s.capacity_factor = 1.25;
    s.normalize = false;
    s.has_bias = true;
    shapes.push_back(s);
  }
  {
    auto s = shape("mixtral_like", 256, 512, 8, 2, 448);
    s.is_quick = false;
    shapes.push_back(s);
  }
  {
    auto s = shape("dsv3_like", 128, 448, 64, 8, 128);
    s.score = ScoreFunction::kSigmoid;
    s.groups = 8;
    s.group_limit = 4;
    s.has_bias = true;
    s.is_quick = false;
    shapes.push_back(s);
  }
  {
    auto s = shape("wide_rows", 200, 1000, 4, 1, 200);
    s.skew = {Kind::kZipf, 0.5};
    s.capacity_factor = 1.1;
    s.is_quick = false;
    shapes.push_back(s);
  }
  return shapes;
}

// Runs `body`, turning what it throws into a failed row.
template <typename Body>
OpResult guarded(const std::string& op, const ValidationShape& s, Body body) {
  OpResult result;
  result.op = op;
  result.shape = s.name;
  try {
    body(result);
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

// The routing an op's inputs start from, and the maps the naive permute makes of it.
struct Dispatch {
  Routing routing;
  std::int64_t capacity = 0;
  PermuteReference maps;
};

Dispatch dispatch(const ValidationShape& s, Rng& rng) {
  Dispatch d;
  d.routing = sample_routing(s.tokens, s.experts, s.topk, s.skew, s.is_quantized, rng);
  d.capacity = expert_capacity(s.tokens, s.topk, s.experts, s.capacity_factor);
  PermuteArgs args;
  args.tokens = s.tokens;
  args.hidden = s.hidden;
  args.experts = s.experts;
  args.topk = s.topk;
  args.capacity = d.capacity;
  args.policy = s.policy;
  args.expert = d.routing.expert.data();
  args.weight = d.routing.weight.data();
  d.maps = permute_naive(args);
  return d;
}

std::string count_note(std::int64_t kept, std::int64_t copies, std::int64_t capacity) {
  std::string note = std::to_string(kept) + " of " + std::to_string(copies) + " copies kept";
  if (capacity > 0) note += " (capacity " + std::to_string(capacity) + ")";
  return note;
}

}  // namespace

const std::vector<ValidationShape>& validation_shapes() {
  static const std::vector<ValidationShape> shapes = make_shapes();
  return shapes;
}

std::vector<ValidationShape> select_shapes(bool is_quick) {
  std::vector<ValidationShape> out;
  for (const auto& s : validation_shapes())
    if (s.is_quick || !is_quick) out.push_back(s);
  return out;
}

bool OpResult::passed() const {
  if (!skipped.empty() || !error.empty()) return false;
  return std::all_of(outputs.begin(), outputs.end(), [](const Comparison& c) { return c.passed(); });
}

OpResult validate_router(Backend& backend, const ValidationShape& s, std::uint64_t seed) {
  return guarded("router", s, [&](OpResult& result) {
    Rng rng(seed, "router/" + s.name);
    const auto copies = static_cast<std::size_t>(s.tokens * s.topk);
    const std::vector<Bf16> x = random_bf16(static_cast<std::size_t>(s.tokens * s.hidden), 1.0, rng);
    // Weights scaled by 1 / sqrt(hidden) keep the logits O(1) at every hidden size.
    const std::vector<Bf16> w = random_bf16(static_cast<std::size_t>(s.hidden * s.experts),
                                            1.0 / std::sqrt(static_cast<double>(s.hidden)), rng);
    std::vector<float> bias;
    if (s.has_bias)
      for (int e = 0; e < s.experts; ++e) bias.push_back(static_cast<float>(rng.uniform(-0.05, 0.05)));

    RouterArgs host;
    host.tokens = s.tokens;
    host.hidden = s.hidden;
    host.experts = s.experts;
    host.topk = s.topk;
    host.score = s.score;
    host.groups = s.groups;
    host.group_limit = s.group_limit;
    host.normalize = s.normalize;
    host.x = x.data();
    host.w = w.data();
    host.bias = s.has_bias ? bias.data() : nullptr;

    DeviceArray<Bf16> d_x(backend, x);
    DeviceArray<Bf16> d_w(backend, w);
    DeviceArray<float> d_bias(backend, bias);
    DeviceArray<float> d_scores(backend, static_cast<std::size_t>(s.tokens * s.experts));
    DeviceArray<std::int32_t> d_expert(backend, copies);
    DeviceArray<float> d_weight(backend, copies);
    d_scores.fill(kPoisonFloat);
    d_expert.fill(kPoisonInt);
    d_weight.fill(kPoisonFloat);
    RouterArgs args = host;
    args.x = d_x.get();
    args.w = d_w.get();
    args.bias = s.has_bias ? d_bias.get() : nullptr;
    args.scores = d_scores.get();
    args.expert = d_expert.get();
    args.weight = d_weight.get();
    backend.router(args);
    backend.synchronize();
    const std::vector<float> scores = d_scores.download();
    const std::vector<std::int32_t> expert = d_expert.download();
    const std::vector<float> weight = d_weight.download();

    const RouterReference ref = router_fp64(host);
    result.outputs.push_back(compare_fp32("scores", scores, ref.scores));
    // Indices: exact on untied tokens; on tied ones, valid (in range, distinct) only.
    Comparison indices;
    indices.output = "expert";
    indices.is_exact = true;
    std::int64_t tied = 0;
    for (std::int64_t t = 0; t < s.tokens; ++t) {
      const bool is_tied = ref.is_tied[static_cast<std::size_t>(t)] != 0;
      tied += is_tied ? 1 : 0;
      for (int j = 0; j < s.topk; ++j) {
        const auto c = static_cast<std::size_t>(t * s.topk + j);
        bool ok = expert[c] >= 0 && expert[c] < s.experts;
        for (int i = 0; i < j && ok; ++i) ok = expert[static_cast<std::size_t>(t * s.topk + i)] != expert[c];
        if (!is_tied) ok = ok && expert[c] == ref.expert[c];
        ++indices.elements;
        if (ok) continue;
        if (indices.mismatches == 0)
          indices.first_bad = "[" + std::to_string(c) + "]: " + std::to_string(expert[c]) + " vs " +
                              std::to_string(ref.expert[c]) + (is_tied ? " (tied token: invalid choice)" : "");
        ++indices.mismatches;
      }
    }
    result.outputs.push_back(indices);
    result.outputs.push_back(compare_fp32("weight", weight, router_weights_fp64(host, ref.scores, expert)));
    if (tied > 0) result.note = std::to_string(tied) + " tied tokens: their indices checked for validity only";
  });
}

OpResult validate_permute(Backend& backend, const ValidationShape& s, std::uint64_t seed) {
  return guarded("permute", s, [&](OpResult& result) {
    Rng rng(seed, "permute/" + s.name);
    const auto copies = static_cast<std::size_t>(s.tokens * s.topk);
    const Routing routing = sample_routing(s.tokens, s.experts, s.topk, s.skew, s.is_quantized, rng);
    const std::vector<Bf16> x = random_bf16(static_cast<std::size_t>(s.tokens * s.hidden), 1.0, rng);
    PermuteArgs host;
    host.tokens = s.tokens;
    host.hidden = s.hidden;
    host.experts = s.experts;
    host.topk = s.topk;
    host.capacity = expert_capacity(s.tokens, s.topk, s.experts, s.capacity_factor);
    host.policy = s.policy;
    host.expert = routing.expert.data();
    host.weight = routing.weight.data();
    host.x = x.data();

    DeviceArray<std::int32_t> d_expert(backend, routing.expert);
    DeviceArray<float> d_weight(backend, routing.weight);
    DeviceArray<Bf16> d_x(backend, x);
    DeviceArray<std::int32_t> d_routed(backend, static_cast<std::size_t>(s.experts));
    DeviceArray<std::int32_t> d_offsets(backend, static_cast<std::size_t>(s.experts) + 1);
    DeviceArray<std::int32_t> d_row_of_copy(backend, copies);
    DeviceArray<std::int32_t> d_token_of_row(backend, copies);
    DeviceArray<Bf16> d_permuted(backend, copies * static_cast<std::size_t>(s.hidden));
    for (auto* a : {&d_routed, &d_offsets, &d_row_of_copy, &d_token_of_row}) a->fill(kPoisonInt);
    d_permuted.fill(kPoisonFloat);
    PermuteArgs args = host;
    args.expert = d_expert.get();
    args.weight = d_weight.get();
    args.x = d_x.get();
    args.routed = d_routed.get();
    args.offsets = d_offsets.get();
    args.row_of_copy = d_row_of_copy.get();
    args.token_of_row = d_token_of_row.get();
    args.permuted = d_permuted.get();
    backend.permute(args);
    backend.synchronize();

    const PermuteReference ref = permute_naive(host);
    result.outputs.push_back(compare_exact("routed", d_routed.download(), ref.routed));
    result.outputs.push_back(compare_exact("offsets", d_offsets.download(), ref.offsets));
    result.outputs.push_back(compare_exact("row_of_copy", d_row_of_copy.download(), ref.row_of_copy));
    result.outputs.push_back(compare_exact("token_of_row", d_token_of_row.download(), ref.token_of_row));
    result.outputs.push_back(compare_exact("permuted", d_permuted.download(ref.permuted.size()), ref.permuted));
    result.note = count_note(ref.offsets.back(), static_cast<std::int64_t>(copies), host.capacity);
  });
}

OpResult validate_grouped_ffn(Backend& backend, const ValidationShape& s, std::uint64_t seed) {
  return guarded("grouped_ffn", s, [&](OpResult& result) {
    Rng rng(seed, "grouped_ffn/" + s.name);
    const Dispatch d = dispatch(s, rng);
    const std::vector<std::int32_t>& offsets = d.maps.offsets;
    const auto rows = static_cast<std::size_t>(offsets.back());
    const auto weights = static_cast<std::size_t>(s.experts * s.hidden * s.ffn);
    const std::vector<Bf16> x = random_bf16(rows * static_cast<std::size_t>(s.hidden), 1.0, rng);
    const double in_scale = 1.0 / std::sqrt(static_cast<double>(s.hidden));
    const std::vector<Bf16> w_gate = random_bf16(weights, in_scale, rng);
    const std::vector<Bf16> w_up = random_bf16(weights, in_scale, rng);
    const std::vector<Bf16> w_down = random_bf16(weights, 1.0 / std::sqrt(static_cast<double>(s.ffn)), rng);
    GroupedFfnArgs host;
    host.experts = s.experts;
    host.hidden = s.hidden;
    host.ffn = s.ffn;
    host.offsets = offsets.data();
    host.host_offsets = offsets.data();
    host.x = x.data();
    host.w_gate = w_gate.data();
    host.w_up = w_up.data();
    host.w_down = w_down.data();

    DeviceArray<std::int32_t> d_offsets(backend, offsets);
    DeviceArray<Bf16> d_x(backend, x);
    DeviceArray<Bf16> d_gate(backend, w_gate);
    DeviceArray<Bf16> d_up(backend, w_up);
    DeviceArray<Bf16> d_down(backend, w_down);
    DeviceArray<Bf16> d_h(backend, rows * static_cast<std::size_t>(s.ffn));
    DeviceArray<Bf16> d_y(backend, rows * static_cast<std::size_t>(s.hidden));
    d_h.fill(kPoisonFloat);
    d_y.fill(kPoisonFloat);
    GroupedFfnArgs args = host;
    args.offsets = d_offsets.get();
    args.x = d_x.get();
    args.w_gate = d_gate.get();
    args.w_up = d_up.get();
    args.w_down = d_down.get();
    args.h = d_h.get();
    args.y = d_y.get();
    backend.grouped_ffn(args);
    backend.synchronize();

    const FfnReference ref = grouped_ffn_fp64(host);
    result.outputs.push_back(compare_bf16("h", d_h.download(), ref.h));
    result.outputs.push_back(compare_bf16("y", d_y.download(), ref.y));
    std::int32_t busiest = 0;
    int empty = 0;
    for (int e = 0; e < s.experts; ++e) {
      busiest = std::max(busiest, offsets[e + 1] - offsets[e]);
      empty += offsets[e + 1] == offsets[e] ? 1 : 0;
    }
    result.note = std::to_string(rows) + " rows, busiest expert " + std::to_string(busiest) + ", " +
                  std::to_string(empty) + " empty";
  });
}

OpResult validate_dense_gemm(Backend& backend, const ValidationShape& s, std::uint64_t seed) {
  return guarded("dense_gemm", s, [&](OpResult& result) {
    Rng rng(seed, "dense_gemm/" + s.name);
    // The baseline of equal FLOPs to a dropless grouped_ffn: every copy a row, gate, up and down as one GEMM.
    GemmArgs host;
    host.m = s.tokens * s.topk;
    host.n = 3 * s.ffn;
    host.k = s.hidden;
    const std::vector<Bf16> a = random_bf16(static_cast<std::size_t>(host.m * host.k), 1.0, rng);
    const std::vector<Bf16> b =
        random_bf16(static_cast<std::size_t>(host.k * host.n), 1.0 / std::sqrt(static_cast<double>(host.k)), rng);
    host.a = a.data();
    host.b = b.data();
    DeviceArray<Bf16> d_a(backend, a);
    DeviceArray<Bf16> d_b(backend, b);
    DeviceArray<Bf16> d_c(backend, static_cast<std::size_t>(host.m * host.n));
    d_c.fill(kPoisonFloat);
    GemmArgs args = host;
    args.a = d_a.get();
    args.b = d_b.get();
    args.c = d_c.get();
    backend.dense_gemm(args);
    backend.synchronize();
    result.outputs.push_back(compare_bf16("c", d_c.download(), dense_gemm_fp64(host)));
    result.note = std::to_string(host.m) + " x " + std::to_string(host.n) + " x " + std::to_string(host.k);
  });
}

OpResult validate_unpermute(Backend& backend, const ValidationShape& s, std::uint64_t seed) {
  return guarded("unpermute", s, [&](OpResult& result) {
    Rng rng(seed, "unpermute/" + s.name);
    const Dispatch d = dispatch(s, rng);
    const auto copies = static_cast<std::size_t>(s.tokens * s.topk);
    // y as large as a permute output can be; only the kept rows are read.
    const std::vector<Bf16> y = random_bf16(copies * static_cast<std::size_t>(s.hidden), 1.0, rng);
    UnpermuteArgs host;
    host.tokens = s.tokens;
    host.hidden = s.hidden;
    host.topk = s.topk;
    host.y = y.data();
    host.row_of_copy = d.maps.row_of_copy.data();
    host.weight = d.routing.weight.data();

    DeviceArray<Bf16> d_y(backend, y);
    DeviceArray<std::int32_t> d_rows(backend, d.maps.row_of_copy);
    DeviceArray<float> d_weight(backend, d.routing.weight);
    DeviceArray<Bf16> d_out(backend, static_cast<std::size_t>(s.tokens * s.hidden));
    d_out.fill(kPoisonFloat);
    UnpermuteArgs args = host;
    args.y = d_y.get();
    args.row_of_copy = d_rows.get();
    args.weight = d_weight.get();
    args.out = d_out.get();
    backend.unpermute(args);
    backend.synchronize();
    result.outputs.push_back(compare_bf16("out", d_out.download(), unpermute_fp64(host)));
    result.note = count_note(d.maps.offsets.back(), static_cast<std::int64_t>(copies), d.capacity);
  });
}

std::vector<OpResult> validate(Backend& backend, const std::vector<ValidationShape>& shapes, std::uint64_t seed,
                               const Progress& progress) {
  using Validator = OpResult (*)(Backend&, const ValidationShape&, std::uint64_t);
  const std::pair<const char*, Validator> ops[] = {{"router", validate_router},
                                                   {"permute", validate_permute},
                                                   {"grouped_ffn", validate_grouped_ffn},
                                                   {"dense_gemm", validate_dense_gemm},
                                                   {"unpermute", validate_unpermute}};
  std::vector<OpResult> results;
  const std::size_t total = shapes.size() * std::size(ops);
  for (const auto& s : shapes)
    for (const auto& [name, run] : ops) {
      if (progress)
        progress("[" + std::to_string(results.size() + 1) + "/" + std::to_string(total) + "] " + name + " " + s.name);
      results.push_back(run(backend, s, seed));
    }
  return results;
}

namespace {

std::string format_double(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_number(double value) {
  if (std::isnan(value)) return "\"nan\"";
  if (std::isinf(value)) return value > 0 ? "\"inf\"" : "\"-inf\"";
  return format_double("%.6g", value);
}

std::string backend_line(const Backend& backend) {
  return backend.name() + " (" + backend.device_name() + ", " + std::to_string(backend.compute_units()) +
         (backend.name() == "cpu" ? " threads)" : " SMs)");
}

// The first failing output of a row, in words.
std::string failure(const OpResult& r) {
  if (!r.error.empty()) return "threw: " + r.error;
  for (const auto& c : r.outputs) {
    if (c.passed()) continue;
    if (c.mismatches > 0)
      return c.output + ": " + std::to_string(c.mismatches) + " bad, first " + c.first_bad +
             (c.is_exact ? "" : " (error " + format_double("%.2e", c.error) + ")");
    if (c.is_nonzero_required && !c.is_nonzero) return c.output + ": all zero, the reference is not";
    return c.output + ": error " + format_double("%.2e", c.error) + " > " + format_double("%.2e", c.tolerance);
  }
  return "";
}

}  // namespace

std::string validation_text(const Backend& backend, const std::vector<OpResult>& results, std::uint64_t seed) {
  std::ostringstream out;
  out << "validate: backend " << backend_line(backend) << ", seed " << seed << "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-14s %-26s %13s %10s %10s %8s %7s  %s\n", "op", "shape", "exact", "error",
                "tolerance", "nonzero", "result", "note");
  out << line;
  int failed = 0;
  int skipped = 0;
  for (const auto& r : results) {
    if (!r.skipped.empty()) {
      ++skipped;
      std::snprintf(line, sizeof line, "%-14s %-26s %13s %10s %10s %8s %7s  %s\n", r.op.c_str(), r.shape.c_str(), "-",
                    "-", "-", "-", "skipped", r.skipped.c_str());
      out << line;
      continue;
    }
    std::int64_t mismatches = 0;
    std::int64_t exact_elements = 0;
    bool has_exact = false;
    bool has_reduction = false;
    double error = 0;
    double tolerance = 0;
    bool nonzero_required = false;
    bool nonzero = true;
    for (const auto& c : r.outputs) {
      if (c.is_exact) {
        has_exact = true;
        mismatches += c.mismatches;
        exact_elements += c.elements;
      } else {
        has_reduction = true;
        error = std::max(error, c.error);
        tolerance = std::max(tolerance, c.tolerance);
      }
      if (c.is_nonzero_required) {
        nonzero_required = true;
        nonzero = nonzero && c.is_nonzero;
      }
    }
    const bool passed = r.passed();
    failed += passed ? 0 : 1;
    const std::string exact = has_exact ? std::to_string(mismatches) + "/" + std::to_string(exact_elements) : "-";
    std::snprintf(line, sizeof line, "%-14s %-26s %13s %10s %10s %8s %7s  %s\n", r.op.c_str(), r.shape.c_str(),
                  exact.c_str(), has_reduction ? format_double("%.2e", error).c_str() : "-",
                  has_reduction ? format_double("%.2e", tolerance).c_str() : "-",
                  !nonzero_required ? "n/a" : (nonzero ? "yes" : "NO"), passed ? "pass" : "FAIL",
                  (passed ? r.note : failure(r)).c_str());
    out << line;
  }
  const std::string ran = std::to_string(results.size() - static_cast<std::size_t>(skipped));
  out << (failed == 0 ? "all " + ran + " checks passed" : std::to_string(failed) + " of " + ran + " checks FAILED")
      << (skipped > 0 ? ", " + std::to_string(skipped) + " skipped" : "") << "\n";
  return out.str();
}

std::string validation_json(const Backend& backend, const std::vector<OpResult>& results, std::uint64_t seed) {
  std::ostringstream out;
  // "passed": nothing failed; skipped rows carry their reason and "passed": false.
  const bool all_passed = std::none_of(results.begin(), results.end(), [](const OpResult& r) { return r.failed(); });
  out << "{\n  \"backend\": " << json_string(backend.name())
      << ",\n  \"device\": " << json_string(backend.device_name())
      << ",\n  \"compute_units\": " << backend.compute_units() << ",\n  \"seed\": " << seed
      << ",\n  \"passed\": " << (all_passed ? "true" : "false") << ",\n  \"results\": [";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const OpResult& r = results[i];
    out << (i == 0 ? "\n" : ",\n") << "    {\"op\": " << json_string(r.op) << ", \"shape\": " << json_string(r.shape)
        << ", \"passed\": " << (r.passed() ? "true" : "false") << ", \"note\": " << json_string(r.note)
        << ", \"error\": " << json_string(r.error) << ", \"skipped\": " << json_string(r.skipped) << ", \"outputs\": [";
    for (std::size_t j = 0; j < r.outputs.size(); ++j) {
      const Comparison& c = r.outputs[j];
      out << (j == 0 ? "" : ", ") << "{\"name\": " << json_string(c.output)
          << ", \"exact\": " << (c.is_exact ? "true" : "false") << ", \"elements\": " << c.elements
          << ", \"mismatches\": " << c.mismatches << ", \"error\": " << json_number(c.error)
          << ", \"tolerance\": " << json_number(c.tolerance)
          << ", \"nonzero_required\": " << (c.is_nonzero_required ? "true" : "false")
          << ", \"nonzero\": " << (c.is_nonzero ? "true" : "false")
          << ", \"passed\": " << (c.passed() ? "true" : "false") << ", \"first_bad\": " << json_string(c.first_bad)
          << "}";
    }
    out << "]}";
  }
  out << "\n  ]\n}\n";
  return out.str();
}

}  // namespace moesim::kernels::harness
