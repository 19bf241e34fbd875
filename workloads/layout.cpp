// Parallel layouts: the text form, Megatron-Core's validity rules, the rank mapping and the enumeration.
//
// Why every rule is checked and listed rather than stopping at the first: the planner prints why a layout was
// pruned, and a user fixing a hand-written layout wants to see all that is wrong with it at once (validate_layout
// still throws one line, the first problem).
#include "workloads/layout.hpp"

#include <charconv>
#include <limits>
#include <set>
#include <stdexcept>

namespace moesim::workloads {
namespace {

constexpr int kMaxInt = std::numeric_limits<int>::max();

std::string str(std::int64_t value) {
  return std::to_string(value);
}

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

[[noreturn]] void fail(std::string_view key, const std::string& expected) {
  throw std::invalid_argument("layout: " + std::string(key) + ": " + expected);
}

std::int64_t parse_value(std::string_view key, std::string_view text, std::int64_t max) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string got = "'" + std::string(text) + "'";
  if (ec == std::errc::result_out_of_range) fail(key, "must be an integer <= " + str(max) + ", got " + got);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
    fail(key, "must be an integer >= 1, got " + got);
  }
  if (value < 1) fail(key, "must be an integer >= 1, got " + got);
  if (value > max) fail(key, "must be an integer <= " + str(max) + ", got " + got);
  return value;
}

// The shape the rank mapping needs; the messages name the layout, since no single key is at fault.
void check_shape(const ParallelLayout& layout) {
  for (const int size : {layout.dp, layout.tp, layout.pp, layout.ep, layout.etp, layout.vpp, layout.mbs}) {
    if (size < 1) throw std::invalid_argument("layout " + format_layout(layout) + ": every size must be >= 1");
  }
  if ((static_cast<std::int64_t>(layout.dp) * layout.tp) % (static_cast<std::int64_t>(layout.ep) * layout.etp) != 0) {
    throw std::invalid_argument("layout " + format_layout(layout) + ": ep x etp (" +
                                str(std::int64_t{layout.ep} * layout.etp) + ") must divide dp x tp (" +
                                str(std::int64_t{layout.dp} * layout.tp) + ")");
  }
}

// The layers of each of num_virtual stages (the split rule of layout.hpp), or an empty vector when neither split
// works.
std::vector<int> split_layers(const MoeModel& model, int num_virtual) {
  if (model.num_layers % num_virtual == 0) return std::vector<int>(num_virtual, model.num_layers / num_virtual);
  const int units = model.num_layers + 2 + model.num_mtp_layers;
  if (units % num_virtual != 0) return {};
  const int per_stage = units / num_virtual;
  std::vector<int> layers(num_virtual, per_stage);
  layers.front() -= 1;                        // the embedding
  layers.back() -= 1 + model.num_mtp_layers;  // the loss and the MTP modules
  for (const int count : layers) {
    if (count < 0) return {};
  }
  return layers;
}

std::string split_problem(const MoeModel& model, const ParallelLayout& layout) {
  const int units = model.num_layers + 2 + model.num_mtp_layers;
  return "pp x vpp (" + str(layout.pp) + " x " + str(layout.vpp) + " = " + str(std::int64_t{layout.pp} * layout.vpp) +
         ") must divide num_layers (" + str(model.num_layers) + "), or num_layers + 2 + num_mtp_layers (" + str(units) +
         ": the embedding, the loss and the MTP modules counted as layers)";
}

std::vector<int> divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

}  // namespace

bool operator==(const ParallelLayout& a, const ParallelLayout& b) {
  return a.dp == b.dp && a.tp == b.tp && a.pp == b.pp && a.ep == b.ep && a.etp == b.etp && a.vpp == b.vpp &&
         a.mbs == b.mbs && a.gbs == b.gbs;
}

std::string format_layout(const ParallelLayout& layout) {
  return "dp=" + str(layout.dp) + ",tp=" + str(layout.tp) + ",pp=" + str(layout.pp) + ",ep=" + str(layout.ep) +
         ",etp=" + str(layout.etp) + ",vpp=" + str(layout.vpp) + ",mbs=" + str(layout.mbs) + ",gbs=" + str(layout.gbs);
}

ParallelLayout parse_layout(std::string_view text, int num_gpus) {
  ParallelLayout layout;
  std::set<std::string, std::less<>> seen;
  bool has_dp = false;
  bool has_gbs = false;
  std::string_view rest = text;
  while (!trim(rest).empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      throw std::invalid_argument("layout: expected key=value items separated by commas, got '" + std::string(item) +
                                  "'");
    }
    const std::string_view key = trim(item.substr(0, eq));
    const std::string_view value = trim(item.substr(eq + 1));
    if (!seen.insert(std::string(key)).second) fail(key, "given twice");
    if (key == "gbs") {
      layout.gbs = parse_value(key, value, std::numeric_limits<std::int64_t>::max());
      has_gbs = true;
      continue;
    }
    const int parsed = static_cast<int>(parse_value(key, value, kMaxInt));
    if (key == "dp") {
      layout.dp = parsed;
      has_dp = true;
    } else if (key == "tp") {
      layout.tp = parsed;
    } else if (key == "pp") {
      layout.pp = parsed;
    } else if (key == "ep") {
      layout.ep = parsed;
    } else if (key == "etp") {
      layout.etp = parsed;
    } else if (key == "vpp") {
      layout.vpp = parsed;
    } else if (key == "mbs") {
      layout.mbs = parsed;
    } else {
      fail(key, "unknown key; expected dp, tp, pp, ep, etp, vpp, mbs or gbs");
    }
  }
  if (!has_dp) {
    const std::int64_t model_parallel = static_cast<std::int64_t>(layout.tp) * layout.pp;
    if (num_gpus < 1 || num_gpus % model_parallel != 0) {
      fail("dp", "not given, and the GPU count (" + str(num_gpus) + ") is not a multiple of tp x pp (" +
                     str(model_parallel) + ") to derive it from");
    }
    layout.dp = static_cast<int>(num_gpus / model_parallel);
  }
  if (!has_gbs) layout.gbs = static_cast<std::int64_t>(layout.mbs) * layout.dp;
  return layout;
}

std::vector<std::string> layout_problems(const ParallelLayout& layout, const MoeModel& model, int num_gpus) {
  std::vector<std::string> problems;
  for (const int size : {layout.dp, layout.tp, layout.pp, layout.ep, layout.etp, layout.vpp, layout.mbs}) {
    if (size < 1) return {"every size must be >= 1"};
  }
  if (layout.gbs < 1) return {"gbs must be >= 1"};
  const std::int64_t dp = layout.dp;
  const std::int64_t tp = layout.tp;
  const std::int64_t pp = layout.pp;
  const std::int64_t ep = layout.ep;
  const std::int64_t etp = layout.etp;
  const std::int64_t vpp = layout.vpp;
  auto divides = [](std::int64_t d, std::int64_t n) { return n % d == 0; };

  if (dp * tp * pp != num_gpus) {
    problems.push_back("dp x tp x pp (" + str(dp) + " x " + str(tp) + " x " + str(pp) + " = " + str(dp * tp * pp) +
                       ") must equal the number of GPUs (" + str(num_gpus) + ")");
  }
  if (model.num_attention_heads > 0) {
    if (!divides(tp, model.num_attention_heads)) {
      problems.push_back("tp (" + str(tp) + ") must divide num_attention_heads (" + str(model.num_attention_heads) +
                         ")");
    }
    const std::int64_t kv = model.num_key_value_heads;
    if (kv > 0 && !divides(tp, kv) && !divides(kv, tp)) {
      problems.push_back("tp (" + str(tp) + ") and num_key_value_heads (" + str(kv) +
                         ") must divide one another (KV heads split over tp, or replicated when tp is a multiple)");
    }
  }
  if (split_layers(model, layout.pp * layout.vpp).empty()) problems.push_back(split_problem(model, layout));
  if (!divides(ep, model.num_experts)) {
    problems.push_back("ep (" + str(ep) + ") must divide num_experts (" + str(model.num_experts) + ")");
  }
  if (!divides(ep * etp, dp * tp)) {
    problems.push_back("ep x etp (" + str(ep) + " x " + str(etp) + " = " + str(ep * etp) + ") must divide dp x tp (" +
                       str(dp) + " x " + str(tp) + " = " + str(dp * tp) +
                       "): expert groups are carved out of a stage's data x tensor ranks");
  }
  if (!divides(etp, model.moe_intermediate_size)) {
    problems.push_back("etp (" + str(etp) + ") must divide moe_intermediate_size (" + str(model.moe_intermediate_size) +
                       ")");
  }
  if (model.num_dense_layers() > 0 && !divides(tp, model.intermediate_size)) {
    problems.push_back("tp (" + str(tp) + ") must divide intermediate_size (" + str(model.intermediate_size) + ")");
  }
  if (model.num_shared_experts > 0 && !divides(tp, model.shared_expert_intermediate_size)) {
    problems.push_back("tp (" + str(tp) + ") must divide shared_expert_intermediate_size (" +
                       str(model.shared_expert_intermediate_size) + ")");
  }
  const std::int64_t per_step = layout.mbs * dp;
  if (!divides(per_step, layout.gbs)) {
    problems.push_back("mbs x dp (" + str(layout.mbs) + " x " + str(dp) + " = " + str(per_step) +
                       ") must divide gbs (" + str(layout.gbs) + ")");
  }
  if (vpp > 1 && pp < 2) {
    problems.push_back("vpp (" + str(vpp) + ") > 1 interleaves pipeline stages, so pp must be >= 2, got " + str(pp));
  } else if (vpp > 1 && divides(per_step, layout.gbs) && !divides(pp, layout.gbs / per_step)) {
    problems.push_back("pp (" + str(pp) + ") must divide the number of micro-batches (" + str(layout.gbs / per_step) +
                       ") for the interleaved schedule (vpp " + str(vpp) + ")");
  }
  return problems;
}

void validate_layout(const ParallelLayout& layout, const MoeModel& model, int num_gpus) {
  const auto problems = layout_problems(layout, model, num_gpus);
  if (!problems.empty()) throw std::invalid_argument("layout " + format_layout(layout) + ": " + problems.front());
}

std::int64_t num_microbatches(const ParallelLayout& layout) {
  const std::int64_t per_step = static_cast<std::int64_t>(layout.mbs) * layout.dp;
  if (per_step < 1 || layout.gbs % per_step != 0) {
    throw std::invalid_argument("layout " + format_layout(layout) + ": mbs x dp (" + str(per_step) +
                                ") must divide gbs (" + str(layout.gbs) + ")");
  }
  return layout.gbs / per_step;
}

std::vector<int> virtual_stage_layers(const MoeModel& model, const ParallelLayout& layout) {
  if (layout.pp < 1 || layout.vpp < 1) {
    throw std::invalid_argument("layout " + format_layout(layout) + ": pp and vpp must be >= 1");
  }
  auto layers = split_layers(model, layout.pp * layout.vpp);
  if (layers.empty())
    throw std::invalid_argument("layout " + format_layout(layout) + ": " + split_problem(model, layout));
  return layers;
}

std::vector<int> stage_layer_indices(const MoeModel& model, const ParallelLayout& layout, int pp_idx) {
  if (pp_idx < 0 || pp_idx >= layout.pp) {
    throw std::invalid_argument("pipeline stage " + str(pp_idx) + ": must be in [0, " + str(layout.pp) + ")");
  }
  const auto layers = virtual_stage_layers(model, layout);
  std::vector<int> indices;
  int first = 0;
  for (std::size_t v = 0; v < layers.size(); ++v) {
    if (static_cast<int>(v) % layout.pp == pp_idx) {
      for (int i = 0; i < layers[v]; ++i) indices.push_back(first + i);
    }
    first += layers[v];
  }
  return indices;
}

const char* parallel_group_name(ParallelGroup group) {
  switch (group) {
    case ParallelGroup::kTp:
      return "tp";
    case ParallelGroup::kDp:
      return "dp";
    case ParallelGroup::kPp:
      return "pp";
    case ParallelGroup::kEp:
      return "ep";
    case ParallelGroup::kEtp:
      return "etp";
    case ParallelGroup::kEdp:
      return "edp";
  }
  return "?";
}

RankCoords rank_coords(const ParallelLayout& layout, int rank) {
  check_shape(layout);
  if (rank < 0 || rank >= layout.num_gpus()) {
    throw std::invalid_argument("rank " + str(rank) + ": must be in [0, " + str(layout.num_gpus()) + ")");
  }
  RankCoords coords;
  coords.tp_idx = rank % layout.tp;
  coords.dp_idx = rank / layout.tp % layout.dp;
  coords.pp_idx = rank / (layout.tp * layout.dp);
  coords.etp_idx = rank % layout.etp;
  coords.ep_idx = rank / layout.etp % layout.ep;
  coords.edp_idx = rank / (layout.etp * layout.ep) % layout.edp();
  return coords;
}

std::vector<int> group_ranks(const ParallelLayout& layout, ParallelGroup group, int rank) {
  const RankCoords c = rank_coords(layout, rank);
  // A group varies one coordinate over its size, with that coordinate's weight in the rank formula as the stride.
  struct Axis {
    int index;
    int size;
    int stride;
  };
  Axis axis{c.tp_idx, layout.tp, 1};
  switch (group) {
    case ParallelGroup::kTp:
      break;
    case ParallelGroup::kDp:
      axis = {c.dp_idx, layout.dp, layout.tp};
      break;
    case ParallelGroup::kPp:
      axis = {c.pp_idx, layout.pp, layout.tp * layout.dp};
      break;
    case ParallelGroup::kEtp:
      axis = {c.etp_idx, layout.etp, 1};
      break;
    case ParallelGroup::kEp:
      axis = {c.ep_idx, layout.ep, layout.etp};
      break;
    case ParallelGroup::kEdp:
      axis = {c.edp_idx, layout.edp(), layout.etp * layout.ep};
      break;
  }
  const int base = rank - axis.index * axis.stride;
  std::vector<int> ranks(axis.size);
  for (int i = 0; i < axis.size; ++i) ranks[i] = base + i * axis.stride;
  return ranks;
}

std::vector<std::vector<int>> all_groups(const ParallelLayout& layout, ParallelGroup group) {
  check_shape(layout);
  std::vector<std::vector<int>> groups;
  std::vector<bool> placed(layout.num_gpus(), false);
  for (int rank = 0; rank < layout.num_gpus(); ++rank) {
    if (placed[rank]) continue;
    groups.push_back(group_ranks(layout, group, rank));
    for (const int member : groups.back()) placed[member] = true;
  }
  return groups;
}

LayoutEnumeration enumerate_layouts(const MoeModel& model, int num_gpus, const EnumerateOptions& options) {
  auto require = [](bool ok, const std::string& key, const std::string& expected) {
    if (!ok) throw std::invalid_argument("layout enumeration: " + key + ": " + expected);
  };
  require(num_gpus >= 1, "num_gpus", "must be >= 1, got " + str(num_gpus));
  require(options.gbs >= 1, "gbs", "must be >= 1, got " + str(options.gbs));
  require(options.max_tp >= 1, "max_tp", "must be >= 1, got " + str(options.max_tp));
  require(!options.mbs_candidates.empty(), "mbs", "expected at least one candidate");
  require(!options.vpp_candidates.empty(), "vpp", "expected at least one candidate");
  for (const int mbs : options.mbs_candidates) require(mbs >= 1, "mbs", "must be >= 1, got " + str(mbs));
  for (const int vpp : options.vpp_candidates) require(vpp >= 1, "vpp", "must be >= 1, got " + str(vpp));

  LayoutEnumeration out;
  for (const int tp : divisors(num_gpus)) {
    for (const int pp : divisors(num_gpus / tp)) {
      const int dp = num_gpus / (tp * pp);
      for (const int ep : divisors(dp * tp)) {
        for (const int etp : options.allow_etp ? divisors(dp * tp / ep) : std::vector<int>{1}) {
          for (const int vpp : options.vpp_candidates) {
            for (const int mbs : options.mbs_candidates) {
              const ParallelLayout layout{dp, tp, pp, ep, etp, vpp, mbs, options.gbs};
              std::string reason;
              if (tp > options.max_tp) {
                reason = "tp (" + str(tp) + ") > max_tp (" + str(options.max_tp) + ")";
              } else if (etp > options.max_tp) {
                reason = "etp (" + str(etp) + ") > max_tp (" + str(options.max_tp) + ")";
              } else {
                const auto problems = layout_problems(layout, model, num_gpus);
                if (!problems.empty()) reason = problems.front();
              }
              if (reason.empty()) {
                out.valid.push_back(layout);
              } else {
                out.rejected.push_back({layout, std::move(reason)});
              }
            }
          }
        }
      }
    }
  }
  return out;
}

}  // namespace moesim::workloads
