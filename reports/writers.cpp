#include "reports/writers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

namespace moesim::reports {
namespace {

std::string fmt(const char* format, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, a);
  return buf;
}

std::string human_bytes(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return fmt("%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  if (bytes >= 1024.0 * 1024) return fmt("%.2f MiB", bytes / (1024.0 * 1024));
  if (bytes >= 1024.0) return fmt("%.1f KiB", bytes / 1024.0);
  return fmt("%.0f B", bytes);
}

std::string pad(std::string s, std::size_t width, bool right = true) {
  if (s.size() >= width) return s;
  return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

}  // namespace

std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  const auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) throw std::logic_error("cannot print results as JSON: " + status.ToString());
  return out;
}

std::string a2a_text(const A2aResult& r) {
  const A2aInputs& in = r.inputs();
  std::string out;
  if (in.model().empty()) {
    out += "moesim a2a: all-to-all of " + human_bytes(in.bytes_per_rank()) + " per rank on " + in.cluster() + " (" +
           std::to_string(in.num_nodes()) + " nodes, " + std::to_string(in.num_gpus()) + " GPUs), " +
           std::to_string(in.num_ep_groups()) + " group(s) of " + std::to_string(in.ep()) + " ranks\n";
    out += "algorithm " + in.algorithm() + ", epsilon " + fmt("%g", in.epsilon()) + "\n";
  } else {
    out += "moesim a2a: one " + in.model() + " MoE layer on " + in.cluster() + " (" + std::to_string(in.num_nodes()) +
           " nodes, " + std::to_string(in.num_gpus()) + " GPUs), EP " + std::to_string(in.ep()) + " x " +
           std::to_string(in.num_ep_groups()) + " group(s), " + std::to_string(in.tokens_per_rank()) +
           " tokens per rank\n";
    out += "routing " + in.routing() + ", top-" + std::to_string(in.num_topk()) + " of " +
           std::to_string(in.num_experts()) + " experts, seed " + std::to_string(in.seed()) + "; algorithm " +
           in.algorithm() + ", " + in.placement() + " placement, token dedup " + (in.token_dedup() ? "on" : "off") +
           "; " + fmt("%.0f", in.dispatch_bytes_per_token()) + " B per token copy dispatched, " +
           fmt("%.0f", in.combine_bytes_per_token()) + " B combined\n";
    const RoutingSummary& rs = r.routing();
    out += "load: tokens per expert mean " + fmt("%.1f", rs.tokens_per_expert_mean()) + ", max " +
           fmt("%.0f", rs.tokens_per_expert_max()) + " (" + fmt("%.2fx", rs.expert_load_imbalance()) +
           "); copies per rank mean " + fmt("%.1f", rs.copies_per_rank_mean()) + ", max " +
           fmt("%.0f", rs.copies_per_rank_max()) + " (" + fmt("%.2fx", rs.rank_load_imbalance()) + ")\n";
    out += "fan-out: " + fmt("%.2f", rs.ranks_per_token_mean()) + " ranks and " +
           fmt("%.2f", rs.nodes_per_token_mean()) + " nodes per token on average\n";
    if (rs.capacity() > 0) {
      out += "capacity: " + rs.capacity_policy() + " at factor " + fmt("%g", in.capacity_factor()) + ", C " +
             std::to_string(rs.capacity()) + " per rank and expert; dropped " +
             fmt("%.2f%%", 100.0 * rs.dropped_fraction()) + " of the choices (" +
             std::to_string(rs.tokens_all_dropped()) + " tokens lost all), rerouted " +
             fmt("%.2f%%", 100.0 * rs.rerouted_fraction()) + ", padding " +
             fmt("%.2f%%", 100.0 * rs.padding_fraction()) + " of the slots sent\n";
    }
  }
  out += "\n";
  out += pad("", 10, false) + pad("time", 13) + pad("bound", 13) + pad("sim/bound", 11) + pad("algbw", 13) +
         pad("busbw", 13) + pad("max sent", 12) + pad("mean sent", 12) + pad("max recv", 12) + "\n";
  for (const CollectiveResult& c : r.collectives()) {
    out += pad(c.name(), 10, false) + pad(fmt("%.2f us", c.time_us()), 13) + pad(fmt("%.2f us", c.bound_us()), 13) +
           pad(fmt("%.3f", c.sim_over_bound()), 11) + pad(fmt("%.1f GB/s", c.algbw_gbps()), 13) +
           pad(fmt("%.1f GB/s", c.busbw_gbps()), 13) + pad(human_bytes(c.wire_bytes_per_rank().max_sent()), 12) +
           pad(human_bytes(c.wire_bytes_per_rank().mean_sent()), 12) +
           pad(human_bytes(c.wire_bytes_per_rank().max_received()), 12) + "\n";
  }
  if (r.collectives_size() > 1) out += pad("total", 10, false) + pad(fmt("%.2f us", r.total_time_us()), 13) + "\n";
  for (const CollectiveResult& c : r.collectives()) {
    out += "\n" + c.name() + ": " + std::to_string(c.num_flows()) + " flows, " +
           std::to_string(c.num_recomputations()) + " rate recomputations solving " +
           std::to_string(c.num_rates_solved()) + " flow rates; bound set by " + c.bound_link() + "\n";
    out += "  busiest links" + pad("kind", 25) + pad("carried", 12) + pad("util", 9) + pad("busy", 9) + "\n";
    for (const LinkUsage& l : c.busiest_links()) {
      out += "  " + pad(l.name(), 28, false) + pad(l.kind(), 10) + pad(human_bytes(l.bytes()), 12) +
             pad(fmt("%.1f%%", 100.0 * l.utilisation()), 9) + pad(fmt("%.1f%%", 100.0 * l.busy_fraction()), 9) + "\n";
    }
    out += "  by link kind:";
    for (const LinkKindUsage& k : c.link_kinds()) {
      if (k.bytes() <= 0.0) continue;
      out += "  " + k.kind() + " " + human_bytes(k.bytes()) + " (max util " +
             fmt("%.1f%%", 100.0 * k.max_utilisation()) + ")";
    }
    out += "\n";
  }
  if (r.has_replication()) {
    const ReplicationWhatIf& w = r.replication();
    const RoutingSummary& before = r.routing();
    const RoutingSummary& after = w.routing();
    out += "\nwith " + std::to_string(w.replica_slots()) + " replica slot(s) per rank (EPLB, " +
           std::to_string(w.num_replicated_experts()) + " experts replicated), same routing:\n";
    out += pad("", 10, false) + pad("before", 13) + pad("after", 13) + "\n";
    for (int i = 0; i < r.collectives_size() && i < w.collectives_size(); ++i) {
      out += pad(r.collectives(i).name(), 10, false) + pad(fmt("%.2f us", r.collectives(i).time_us()), 13) +
             pad(fmt("%.2f us", w.collectives(i).time_us()), 13) + "\n";
    }
    out += pad("total", 10, false) + pad(fmt("%.2f us", r.total_time_us()), 13) +
           pad(fmt("%.2f us", w.total_time_us()), 13) + "   " + fmt("%.2fx", w.speedup()) + " faster\n";
    out += pad("rank load", 10, false) + pad(fmt("%.2fx", before.rank_load_imbalance()), 13) +
           pad(fmt("%.2fx", after.rank_load_imbalance()), 13) + "   max/mean copies received per rank\n";
  }
  return out;
}

namespace {

// "0-31", or "0-3, 7, 9-10": the layer ids, ranges collapsed.
std::string layer_list(const google::protobuf::RepeatedField<std::int64_t>& layers) {
  std::string out;
  for (int i = 0; i < layers.size();) {
    int j = i;
    while (j + 1 < layers.size() && layers.Get(j + 1) == layers.Get(j) + 1) ++j;
    out += (out.empty() ? "" : ", ") + std::to_string(layers.Get(i));
    if (j > i) out += "-" + std::to_string(layers.Get(j));
    i = j + 1;
  }
  return out;
}

// "1 node", "8 nodes".
std::string count_of(std::int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// "1.00", "1.25", and as many digits as it takes beyond two decimals ("1.125", "0.001").
std::string factor_text(double factor) {
  const double hundredths = factor * 100.0;
  return std::abs(hundredths - std::round(hundredths)) < 1e-9 ? fmt("%.2f", factor) : fmt("%g", factor);
}

std::string percent(double fraction) {
  return fmt("%.2f%%", 100.0 * fraction);
}

std::string load_line(const std::string& what, const LoadSummary& s) {
  return "  " + pad(what, 12, false) + "max/mean " + fmt("%.2fx", s.max_over_mean()) + "   CV " + fmt("%.3f", s.cv()) +
         "   Gini " + fmt("%.3f", s.gini()) + "\n";
}

// At most `max_rows` step indices spread evenly over [0, n), the first and the last included.
std::vector<int> sampled_steps(int n, int max_rows) {
  std::vector<int> out;
  const int rows = std::min(n, max_rows);
  for (int i = 0; i < rows; ++i) {
    const int idx = rows == 1 ? 0 : static_cast<int>(std::lround(static_cast<double>(i) * (n - 1) / (rows - 1)));
    if (out.empty() || idx != out.back()) out.push_back(idx);
  }
  return out;
}

void balancing_text(const BiasBalancing& b, std::string& out) {
  constexpr int kMaxRows = 10;
  out += "\nbias balancing on layer " + std::to_string(b.layer()) + " (F " + factor_text(b.capacity_factor()) + ", " +
         b.capacity_policy() + "), " + std::to_string(b.steps_size()) + " steps, rate " + fmt("%g", b.bias_rate()) +
         " vs rate 0 on the same tokens:\n";
  out += pad("step", 8) + pad("expert max/mean", 20) + pad("expert CV", 20) + pad("dropped", 20) + "\n";
  out += pad("", 8);
  for (int i = 0; i < 3; ++i) out += pad("balanced", 11) + pad("base", 9);
  out += "\n";
  for (const int i : sampled_steps(b.steps_size(), kMaxRows)) {
    const BalancingStep& s = b.steps(i);
    out += pad(std::to_string(s.step()), 8) + pad(fmt("%.2fx", s.expert_load().max_over_mean()), 11) +
           pad(fmt("%.2fx", s.baseline_expert_load().max_over_mean()), 9) + pad(fmt("%.3f", s.expert_load().cv()), 11) +
           pad(fmt("%.3f", s.baseline_expert_load().cv()), 9) + pad(percent(s.dropped_fraction()), 11) +
           pad(percent(s.baseline_dropped_fraction()), 9) + "\n";
  }
  out += "settled (mean of the last " + std::to_string(b.num_settled_steps()) + " steps): expert max/mean " +
         fmt("%.2fx", b.settled_expert_max_over_mean()) + " vs " +
         fmt("%.2fx", b.baseline_settled_expert_max_over_mean()) + ", dropped " +
         percent(b.settled_dropped_fraction()) + " vs " + percent(b.baseline_settled_dropped_fraction()) + "\n";
}

}  // namespace

std::string capacity_text(const CapacityResult& r) {
  const CapacityInputs& in = r.inputs();
  std::string out = "moesim capacity: " + in.model();
  if (in.cluster().empty()) {
    out += ", one EP group of " + std::to_string(in.ep()) + " GPUs on " + count_of(in.num_nodes(), "node") +
           " (no cluster)";
  } else {
    out += " on " + in.cluster() + " (" + count_of(in.num_nodes(), "node") + ", " + std::to_string(in.num_gpus()) +
           " GPUs), EP " + std::to_string(in.ep()) + " x " + std::to_string(in.num_ep_groups()) + " group(s)";
  }
  out += ", " + std::to_string(in.tokens_per_rank()) + " tokens per rank, layer" + (in.layers_size() > 1 ? "s " : " ") +
         layer_list(in.layers()) + "\n";
  out += (in.routing_file().empty() ? "routing " + in.routing() + ", seed " + std::to_string(in.seed())
                                    : "routing replayed from " + in.routing_file()) +
         ", top-" + std::to_string(in.num_topk()) + " of " + std::to_string(in.num_experts()) + " experts; policy " +
         in.capacity_policy() + (in.min_capacity() > 0 ? ", min capacity " + std::to_string(in.min_capacity()) : "") +
         ", " + in.placement() + " placement\n";

  out += "\nrouted load, before capacity (mean over " + count_of(r.routed_size(), "layer") + "):\n";
  out += load_line("per expert", r.routed_expert_load());
  out += load_line("per rank", r.routed_rank_load());

  out += "\n" + pad("F", 6) + pad("C", 9) + pad("dropped", 10) + pad("rerouted", 10) + pad("padding", 10) +
         pad("worst layer", 20) + pad("expert max/mean", 17) + pad("rank max/mean", 15) + "\n";
  const bool dropless = in.capacity_policy() == "dropless";
  for (const CapacityRow& row : r.rows()) {
    out += pad(factor_text(row.capacity_factor()), 6) +
           pad(dropless ? std::string("-") : std::to_string(row.capacity()), 9) +
           pad(percent(row.dropped_fraction()), 10) + pad(percent(row.rerouted_fraction()), 10) +
           pad(percent(row.padding_fraction()), 10) +
           pad(percent(row.worst_layer_dropped_fraction()) + " (layer " + std::to_string(row.worst_layer()) + ")", 20) +
           pad(fmt("%.2fx", row.expert_load().max_over_mean()), 17) +
           pad(fmt("%.2fx", row.rank_load().max_over_mean()), 15) + "\n";
  }
  out +=
      "C: capacity per rank and expert. dropped, rerouted: share of the routed choices; padding: share of the slots\n"
      "sent; worst layer: the largest dropped share; max/mean: after capacity, mean over the layers\n";
  if (r.has_balancing()) balancing_text(r.balancing(), out);
  return out;
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path target(path);
  std::filesystem::path temp = target;
  temp += ".tmp";
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    if (!file) throw std::invalid_argument(path + ": cannot write file");
    write(file);
    file.flush();
    if (!file) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      throw std::invalid_argument(path + ": cannot write file");
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, target, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    throw std::invalid_argument(path + ": cannot write file (" + ec.message() + ")");
  }
}

void write_file_atomically(const std::string& path, const std::string& content) {
  write_file_atomically(path, [&content](std::ostream& out) { out << content; });
}

std::string step_text(const StepReport& r) {
  const StepInputs& in = r.inputs();
  std::string out = "moesim step: " + in.mode() + " " + in.model() + " on " + in.cluster() + " (" +
                    std::to_string(in.num_gpus()) + " GPUs, " + in.gpu() + "), " + in.layout() + "\n";
  const std::string tokens = in.mode() == "decode" ? "1 new token after " + std::to_string(in.context_len()) + " cached"
                                                   : std::to_string(in.seq_len()) + " tokens";
  out += "schedule " + in.schedule() + ", " + std::to_string(in.num_microbatches()) +
         " micro-batches of sequences of " + tokens + "; routing " + in.routing() + ", All-to-All " + in.algorithm() +
         "; " + in.precision() + " GEMMs, ZeRO " + std::to_string(in.zero_stage()) + ", recompute " + in.recompute();
  if (in.routing_samples() > 1) out += ", " + std::to_string(in.routing_samples()) + " routing samples per layer";
  if (in.comm_sms() > 0) out += ", " + std::to_string(in.comm_sms()) + " SMs for communication";
  out += "\n\n";
  out += "step time " + fmt("%.2f ms", r.step_time_ms()) + "; " + fmt("%.0f", r.tokens_per_s_per_gpu()) +
         " tokens/s per GPU; " + fmt("%.1f", r.model_tflops_per_gpu()) + " model TFLOP/s per GPU (MFU " +
         fmt("%.1f%%", 100.0 * r.mfu()) + ")\n\n";
  out += pad("stage", 7, false) + pad("compute", 13) + pad("exposed TP/EP", 15) + pad("exposed PP", 13) +
         pad("exposed DP", 13) + pad("bubble/wait", 13) + "\n";
  for (const StepStage& s : r.stages()) {
    out += pad(std::to_string(s.stage()), 7, false) + pad(fmt("%.2f ms", s.compute_ms()), 13) +
           pad(fmt("%.2f ms", s.exposed_layer_comm_ms()), 15) + pad(fmt("%.2f ms", s.exposed_pp_comm_ms()), 13) +
           pad(fmt("%.2f ms", s.exposed_dp_comm_ms()), 13) + pad(fmt("%.2f ms", s.idle_ms()), 13) + "\n";
  }
  const StepMemory& m = r.memory();
  out += "\nmemory per GPU (stage " + std::to_string(m.stage()) + ", " + fmt("%g", m.in_flight_microbatches()) +
         " micro-batches in flight): parameters " + fmt("%.1f", m.parameters_gib()) + " GiB, gradients " +
         fmt("%.1f", m.gradients_gib()) + ", optimizer " + fmt("%.1f", m.optimizer_states_gib()) + ", activations " +
         fmt("%.1f", m.activations_gib()) + ", All-to-All buffers " + fmt("%.1f", m.a2a_buffers_gib()) +
         (m.kv_cache_gib() > 0 ? ", KV cache " + fmt("%.1f", m.kv_cache_gib()) : std::string()) + "; total " +
         fmt("%.1f", m.total_gib()) + " of " + fmt("%.1f", m.capacity_gib()) + " GiB (" +
         (m.fits() ? "fits" : "does not fit") + ")\n";
  out += "critical path:";
  for (const CategoryTime& c : r.critical_path()) out += " " + c.category() + " " + fmt("%.2f ms", c.ms()) + ",";
  if (!out.empty() && out.back() == ',') out.pop_back();
  out += "\n" + std::to_string(r.num_tasks()) + " tasks; " + std::to_string(r.collectives_played()) +
         " collectives simulated flow by flow (" + std::to_string(r.num_flows()) + " flows), " +
         std::to_string(r.collectives_memoized()) + " repeats memoised\n";
  return out;
}

std::string plan_text(const PlanResult& r) {
  std::string out = "moesim plan: train " + r.model() + " on " + r.cluster() + " (" + std::to_string(r.num_gpus()) +
                    " GPUs), global batch " + std::to_string(r.gbs()) + " sequences of " + std::to_string(r.seq_len()) +
                    " tokens\n";
  out += std::to_string(r.num_valid()) + " valid layouts, " + std::to_string(r.num_fit()) + " fit in memory, " +
         std::to_string(r.num_simulated()) + " simulated\n\n";
  // The layout column fits the longest layout (they grow with the GPU count), two spaces before the next.
  std::size_t layout_width = std::string("layout").size();
  for (const PlanEntry& e : r.ranked()) layout_width = std::max(layout_width, e.layout().size());
  layout_width += 2;
  out += pad("rank", 5, false) + pad("layout", layout_width, false) + pad("recompute", 10, false) + pad("step", 12) +
         pad("tokens/s/GPU", 14) + pad("MFU", 8) + pad("memory", 11) + pad("bubble", 9) + "\n";
  for (const PlanEntry& e : r.ranked()) {
    out += pad(std::to_string(e.rank()), 5, false) + pad(e.layout(), layout_width, false) +
           pad(e.recompute(), 10, false) + pad(fmt("%.1f ms", e.step_time_ms()), 12) +
           pad(fmt("%.0f", e.tokens_per_s_per_gpu()), 14) + pad(fmt("%.1f%%", 100.0 * e.mfu()), 8) +
           pad(fmt("%.1f GiB", e.memory_gib()), 11) + pad(fmt("%.0f%%", 100.0 * e.bubble_fraction()), 9) + "\n";
  }
  std::map<std::string, int> count;
  std::map<std::string, std::string> example;
  for (const PlanEntry& e : r.others()) {
    if (++count[e.status()] == 1) example[e.status()] = e.layout() + ": " + e.reason();
  }
  if (!count.empty()) out += "\nnot ranked:\n";
  for (const auto& [status, n] : count) {
    out += "  " + pad(status, 10, false) + pad(std::to_string(n), 6) + "  e.g. " + example[status] + "\n";
  }
  return out;
}

}  // namespace moesim::reports
