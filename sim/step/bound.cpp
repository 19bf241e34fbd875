#include "sim/step/bound.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "common/rng.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::step {

std::size_t RouteCache::KeyHash::operator()(const Key& key) const {
  const auto pair = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(key.src_gpu)) << 32) |
                    static_cast<std::uint32_t>(key.dst_gpu);
  return static_cast<std::size_t>(hash_combine(pair, key.salt));
}

const RouteCache::Route& RouteCache::route(int src_gpu, int dst_gpu, std::uint64_t salt) {
  const auto [it, is_new] = routes_.try_emplace(Key{src_gpu, dst_gpu, salt});
  if (is_new) {
    scratch_.clear();
    cluster_.route(src_gpu, dst_gpu, salt, scratch_);
    it->second.first = static_cast<std::uint32_t>(links_.size());
    it->second.num_hops = static_cast<std::uint32_t>(scratch_.size());
    it->second.latency_ps = scratch_.empty() ? 0 : cluster_.path_latency(scratch_.data(), scratch_.size());
    links_.insert(links_.end(), scratch_.begin(), scratch_.end());
  }
  return it->second;
}

TimePs TransferGraphBound::time_ps(double bytes_per_unit) const {
  if (!(seconds_per_unit > 0.0)) return 0;
  return min_latency_ps + static_cast<TimePs>(std::floor(seconds_per_unit * bytes_per_unit * kPsPerS));
}

TransferGraphBound transfer_graph_bound(const topologies::Cluster& cluster, const collectives::TransferGraph& graph,
                                        double comm_bandwidth_limit_bps, RouteCache& routes) {
  std::vector<double> units_on(cluster.num_links(), 0.0);
  const bool is_capped = comm_bandwidth_limit_bps > 0.0;
  std::vector<double> sent(is_capped ? static_cast<std::size_t>(cluster.num_gpus()) : 0, 0.0);
  std::vector<double> received(sent.size(), 0.0);
  TimePs min_latency = std::numeric_limits<TimePs>::max();
  for (const collectives::TransferGraph::Node& node : graph.nodes()) {
    // Joins, local copies and empty transfers start no flow (transfer_graph.hpp).
    if (node.src_gpu < 0 || node.src_gpu == node.dst_gpu || !(node.units > 0.0)) continue;
    const RouteCache::Route& route = routes.route(node.src_gpu, node.dst_gpu, node.salt);
    const std::uint32_t* links = routes.links(route);
    for (std::uint32_t h = 0; h < route.num_hops; ++h) units_on[links[h]] += node.units;
    min_latency = std::min(min_latency, route.latency_ps);
    if (is_capped) {
      sent[static_cast<std::size_t>(node.src_gpu)] += node.units;
      received[static_cast<std::size_t>(node.dst_gpu)] += node.units;
    }
  }
  TransferGraphBound bound;
  if (min_latency == std::numeric_limits<TimePs>::max()) return bound;
  bound.min_latency_ps = min_latency;
  for (std::uint32_t l = 0; l < units_on.size(); ++l) {
    if (units_on[l] > 0.0)
      bound.seconds_per_unit = std::max(bound.seconds_per_unit, units_on[l] / cluster.link(l).capacity_bps);
  }
  for (std::size_t g = 0; g < sent.size(); ++g) {
    bound.seconds_per_unit =
        std::max(bound.seconds_per_unit, std::max(sent[g], received[g]) / comm_bandwidth_limit_bps);
  }
  return bound;
}

namespace {

// Doubles by their exact bits' hexadecimal form, so that no two distinct options share a key.
void append(std::string& key, double x) {
  char text[40];
  std::snprintf(text, sizeof text, "%a,", x);
  key += text;
}
void append(std::string& key, std::int64_t x) {
  key += std::to_string(x);
  key += ',';
}

}  // namespace

std::shared_ptr<const GroupRoutingCache::GroupRouting> GroupRoutingCache::group_routing(
    const std::vector<int>& node_of_group, const workloads::TrafficOptions& options) {
  // The nodes renumbered in order of first appearance: all the traffic builder sees of them.
  std::vector<int> pattern(node_of_group.size());
  std::unordered_map<int, int> label;
  for (std::size_t i = 0; i < node_of_group.size(); ++i) {
    pattern[i] = label.try_emplace(node_of_group[i], static_cast<int>(label.size())).first->second;
  }
  auto sample = [&] {
    workloads::LayerTraffic traffic = workloads::build_layer_traffic(pattern, options);
    auto routing = std::make_shared<GroupRouting>();
    routing->traffic = std::move(traffic.groups.front());
    routing->traffic.copies_to_rank = {};
    routing->traffic.copies_to_node = {};
    routing->tokens_per_expert.assign(
        traffic.tokens_per_group_expert.begin(),
        traffic.tokens_per_group_expert.begin() + static_cast<std::ptrdiff_t>(options.num_experts));
    return std::shared_ptr<const GroupRouting>(std::move(routing));
  };
  if (options.replay != nullptr || options.replicas != nullptr || !options.expert_bias.empty() ||
      options.record_picks) {
    return sample();
  }
  // Every option that changes the routing, doubles by their exact bits.
  std::string key;
  for (const int node : pattern) append(key, std::int64_t{node});
  key += '|';
  const workloads::RoutingSpec& r = options.routing;
  for (const std::int64_t x :
       {std::int64_t{options.ep}, options.tokens_per_rank, std::int64_t{options.num_experts},
        std::int64_t{options.num_topk}, static_cast<std::int64_t>(options.seed),
        std::int64_t{static_cast<int>(options.placement)}, std::int64_t{options.layer}, std::int64_t{options.step},
        std::int64_t{options.batch}, std::int64_t{static_cast<int>(r.kind)}, std::int64_t{r.hot_experts},
        std::int64_t{r.node_limit}, std::int64_t{r.device_limit}, std::int64_t{r.expert_groups},
        std::int64_t{r.group_limit}, std::int64_t{static_cast<int>(options.capacity.policy)},
        std::int64_t{options.capacity.min_capacity}}) {
    append(key, x);
  }
  for (const double x :
       {r.zipf_exponent, r.dirichlet_alpha, r.lognormal_cv, r.hot_share, r.drift, options.capacity.factor}) {
    append(key, x);
  }
  std::shared_ptr<Slot> slot;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::shared_ptr<Slot>& entry = slots_[key];
    if (entry == nullptr) entry = std::make_shared<Slot>();
    slot = entry;
  }
  // Sampled outside the lock, once: a thread that asks meanwhile waits here. An error is kept and thrown to every
  // caller (the same options fail the same way), so that nothing escapes call_once.
  std::call_once(slot->sampled, [&] {
    try {
      slot->routing = sample();
    } catch (...) {
      slot->error = std::current_exception();
    }
  });
  if (slot->error) std::rethrow_exception(slot->error);
  return slot->routing;
}

std::size_t GroupRoutingCache::size() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return slots_.size();
}

}  // namespace moesim::sim::step
