#include "reports/writers.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

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
  return out;
}

void write_file_atomically(const std::string& path, const std::string& content) {
  const std::filesystem::path target(path);
  std::filesystem::path temp = target;
  temp += ".tmp";
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    if (!file) throw std::invalid_argument(path + ": cannot write file");
    file << content;
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

}  // namespace moesim::reports
