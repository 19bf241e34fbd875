#include "sim/a2a.hpp"

#include <algorithm>
#include <cstdio>
#include <future>
#include <numeric>
#include <stdexcept>

#include "sim/core/simulator.hpp"
#include "sim/network/network.hpp"
#include "topologies/cluster.hpp"
#include "workloads/capacity.hpp"
#include "workloads/replication.hpp"
#include "workloads/traffic.hpp"

namespace moesim::sim {
namespace {

constexpr int kNumBusiestLinks = 5;

using collectives::A2aDemand;
using collectives::TransferGraph;

// Demand of a plain all-to-all: every rank sends bytes_per_rank / n to every rank, itself included.
A2aDemand uniform_demand(const topologies::Cluster& cluster, int first_gpu, int n, double bytes_per_rank) {
  A2aDemand d;
  d.gpus.resize(static_cast<std::size_t>(n));
  std::iota(d.gpus.begin(), d.gpus.end(), first_gpu);
  std::vector<int> node_ids;
  for (int gpu : d.gpus) {
    const int node = cluster.scale_up_unit_of(gpu);
    auto it = std::find(node_ids.begin(), node_ids.end(), node);
    if (it == node_ids.end()) {
      node_ids.push_back(node);
      it = node_ids.end() - 1;
    }
    d.node_of_rank.push_back(static_cast<int>(it - node_ids.begin()));
  }
  d.num_nodes = static_cast<int>(node_ids.size());
  const double per_pair = bytes_per_rank / n;
  d.rank_units.assign(static_cast<std::size_t>(n) * n, per_pair);
  d.node_units.assign(static_cast<std::size_t>(n) * d.num_nodes, 0.0);
  for (int s = 0; s < n; ++s) {
    for (int t = 0; t < n; ++t) d.node_units[static_cast<std::size_t>(s) * d.num_nodes + d.node_of_rank[t]] += per_pair;
  }
  return d;
}

}  // namespace

A2aDemand layer_demand(const workloads::EpGroupTraffic& g, bool token_dedup, const std::vector<int>* gpu_of) {
  A2aDemand d;
  d.gpus = g.gpus;
  if (gpu_of != nullptr) {
    for (int& gpu : d.gpus) gpu = gpu_of->at(static_cast<std::size_t>(gpu));
  }
  d.node_of_rank = g.node_of_rank;
  d.num_nodes = g.num_nodes;
  const auto& ranks = token_dedup ? g.tokens_to_rank : g.copies_to_rank;
  const auto& nodes = token_dedup ? g.tokens_to_node : g.copies_to_node;
  d.rank_units.assign(ranks.begin(), ranks.end());
  d.node_units.assign(nodes.begin(), nodes.end());
  return d;
}

namespace {

reports::RoutingSummary summarize_routing(const workloads::LayerTraffic& traffic) {
  reports::RoutingSummary s;
  const auto& per_expert = traffic.tokens_per_expert;
  const double total_copies =
      static_cast<double>(std::accumulate(per_expert.begin(), per_expert.end(), std::int64_t{0}));
  const double max_expert =
      per_expert.empty() ? 0.0 : static_cast<double>(*std::max_element(per_expert.begin(), per_expert.end()));
  s.set_tokens_per_expert_mean(per_expert.empty() ? 0.0 : total_copies / static_cast<double>(per_expert.size()));
  s.set_tokens_per_expert_max(max_expert);
  s.set_expert_load_imbalance(s.tokens_per_expert_mean() > 0 ? max_expert / s.tokens_per_expert_mean() : 0.0);
  double max_rank = 0.0, sum_rank = 0.0, num_ranks = 0.0, rank_hits = 0.0, node_hits = 0.0;
  for (const auto& g : traffic.groups) {
    const std::size_t n = g.gpus.size();
    for (std::size_t t = 0; t < n; ++t) {
      double received = 0.0;
      for (std::size_t src = 0; src < n; ++src) received += static_cast<double>(g.copies_to_rank[src * n + t]);
      max_rank = std::max(max_rank, received);
      sum_rank += received;
      num_ranks += 1.0;
    }
    for (auto v : g.tokens_to_rank) rank_hits += static_cast<double>(v);
    for (auto v : g.tokens_to_node) node_hits += static_cast<double>(v);
  }
  const double num_tokens = num_ranks * static_cast<double>(traffic.options.tokens_per_rank);
  s.set_copies_per_rank_mean(num_ranks > 0 ? sum_rank / num_ranks : 0.0);
  s.set_copies_per_rank_max(max_rank);
  s.set_rank_load_imbalance(s.copies_per_rank_mean() > 0 ? max_rank / s.copies_per_rank_mean() : 0.0);
  s.set_ranks_per_token_mean(num_tokens > 0 ? rank_hits / num_tokens : 0.0);
  s.set_nodes_per_token_mean(num_tokens > 0 ? node_hits / num_tokens : 0.0);
  const auto total_of = [](const std::vector<std::int64_t>& v) {
    return static_cast<double>(std::accumulate(v.begin(), v.end(), std::int64_t{0}));
  };
  const double routed = total_of(traffic.routed_per_expert);
  s.set_capacity(traffic.capacity);
  s.set_capacity_policy(workloads::capacity_policy_name(traffic.options.capacity.policy));
  s.set_dropped_fraction(routed > 0 ? total_of(traffic.dropped_per_expert) / routed : 0.0);
  s.set_rerouted_fraction(routed > 0 ? total_of(traffic.rerouted_per_expert) / routed : 0.0);
  const double slots = total_copies + static_cast<double>(traffic.padded_slots);
  s.set_padding_fraction(slots > 0 ? static_cast<double>(traffic.padded_slots) / slots : 0.0);
  s.set_tokens_all_dropped(traffic.tokens_all_dropped);
  return s;
}

// Dispatch and combine of one layer's traffic: the collectives, and their total time.
double simulate_layer(const topologies::Cluster& cluster, const A2aConfig& config,
                      const workloads::LayerTraffic& traffic,
                      google::protobuf::RepeatedPtrField<reports::CollectiveResult>& out) {
  const workloads::MoeModel& model = *config.model;
  TransferGraph graph;
  double units_total = 0.0;
  for (const auto& group : traffic.groups) {
    const A2aDemand demand = layer_demand(group, config.token_dedup);
    units_total += std::accumulate(demand.rank_units.begin(), demand.rank_units.end(), 0.0);
    collectives::build_all_to_all(graph, demand, config.algorithm);
  }
  const double units_per_rank = units_total / cluster.num_gpus();
  const int ep = traffic.options.ep;
  // Dispatch and combine are separate simulations with nothing in common but the (thread-safe) cluster, so
  // they run on two threads; each result is what it would be alone.
  const TransferGraph combine = graph.reversed();
  auto combined = std::async(std::launch::async, [&] {
    return run_collective(cluster, combine, model.combine_bytes_per_token(), config.epsilon, "combine",
                          units_per_rank * model.combine_bytes_per_token(), ep);
  });
  *out.Add() = run_collective(cluster, graph, model.dispatch_bytes_per_token(), config.epsilon, "dispatch",
                              units_per_rank * model.dispatch_bytes_per_token(), ep);
  *out.Add() = combined.get();
  double total_us = 0.0;
  for (const auto& c : out) total_us += c.time_us();
  return total_us;
}

// The EPLB what-if: replicas planned from the expert loads of another batch of the same routing (the next
// step's: a plan never sees the batch it is judged on; a replayed file has only its own batch, so there the plan
// does), then the same layer again with them.
void replication_what_if(const topologies::Cluster& cluster, const A2aConfig& config,
                         const workloads::TrafficOptions& options, double time_before,
                         reports::ReplicationWhatIf& out) {
  workloads::TrafficOptions history = options;
  if (options.replay == nullptr) history.step = options.step + 1;
  const workloads::LayerTraffic seen = workloads::build_layer_traffic(cluster, history);
  const std::vector<double> loads(seen.tokens_per_expert.begin(), seen.tokens_per_expert.end());
  const workloads::ExpertReplicas replicas = workloads::plan_replication(loads, options.ep, config.replica_slots);
  workloads::TrafficOptions replicated = options;
  replicated.replicas = &replicas;
  const workloads::LayerTraffic traffic = workloads::build_layer_traffic(cluster, replicated);
  out.set_replica_slots(config.replica_slots);
  std::int64_t num_replicated = 0;
  for (int e = 0; e < replicas.num_experts(); ++e) num_replicated += replicas.num_replicas(e) > 1 ? 1 : 0;
  out.set_num_replicated_experts(num_replicated);
  out.set_total_time_us(simulate_layer(cluster, config, traffic, *out.mutable_collectives()));
  *out.mutable_routing() = summarize_routing(traffic);
  out.set_speedup(out.total_time_us() > 0 ? time_before / out.total_time_us() : 0.0);
}

}  // namespace

namespace {

// Bytes each GPU's transfers put on and took off the wire (local copies excluded), over the GPUs involved.
void fill_wire_bytes(const TransferGraph& graph, double bytes_per_unit, int num_gpus, reports::CollectiveResult& r) {
  const auto n = static_cast<std::size_t>(num_gpus);
  std::vector<double> sent(n, 0.0), received(n, 0.0);
  std::vector<char> involved(n, 0);
  double total = 0.0;
  for (const auto& node : graph.nodes()) {
    if (node.src_gpu < 0) continue;
    const auto src = static_cast<std::size_t>(node.src_gpu), dst = static_cast<std::size_t>(node.dst_gpu);
    involved[src] = involved[dst] = 1;
    if (src == dst) continue;
    const double bytes = node.units * bytes_per_unit;
    sent[src] += bytes;
    received[dst] += bytes;
    total += bytes;
  }
  double num_involved = 0.0, max_sent = 0.0, max_received = 0.0;
  for (std::size_t g = 0; g < n; ++g) {
    if (!involved[g]) continue;
    num_involved += 1.0;
    max_sent = std::max(max_sent, sent[g]);
    max_received = std::max(max_received, received[g]);
  }
  auto* per_rank = r.mutable_wire_bytes_per_rank();
  per_rank->set_max_sent(max_sent);
  per_rank->set_max_received(max_received);
  per_rank->set_mean_sent(num_involved > 0 ? total / num_involved : 0.0);  // every byte sent is received
  per_rank->set_mean_received(per_rank->mean_sent());
  r.set_total_bytes(total);
}

// The lower bound: no link delivers its bytes faster than its capacity, and nothing moves before the smallest
// start-up latency has passed.
void fill_bound(const topologies::Cluster& cluster, const network::Network& net, reports::CollectiveResult& r) {
  const auto& counters = net.link_counters();
  double bound_s = 0.0;
  std::uint32_t bound_link = 0;
  for (std::uint32_t l = 0; l < counters.size(); ++l) {
    const double t = counters[l].bytes / cluster.link(l).capacity_bps;
    if (t > bound_s) {
      bound_s = t;
      bound_link = l;
    }
  }
  if (bound_s <= 0.0) return;
  r.set_bound_us(bound_s * 1e6 + us_from_time(net.stats().min_flow_latency_ps));
  r.set_sim_over_bound(r.time_us() / r.bound_us());
  r.set_bound_link(cluster.link_name(bound_link));
}

// The busiest links by utilisation (ties by link index), and totals per kind of link.
void fill_link_usage(const topologies::Cluster& cluster, const network::Network& net, TimePs elapsed,
                     reports::CollectiveResult& r) {
  const auto& counters = net.link_counters();
  const double seconds = seconds_from_time(elapsed);
  std::vector<double> utilisation(counters.size(), 0.0);
  std::vector<std::uint32_t> used;
  for (std::uint32_t l = 0; l < counters.size(); ++l) {
    if (counters[l].bytes <= 0.0) continue;
    used.push_back(l);
    if (seconds > 0) utilisation[l] = counters[l].bytes / (cluster.link(l).capacity_bps * seconds);
  }
  const std::size_t shown = std::min<std::size_t>(kNumBusiestLinks, used.size());
  std::partial_sort(used.begin(), used.begin() + static_cast<std::ptrdiff_t>(shown), used.end(),
                    [&](std::uint32_t a, std::uint32_t b) {
                      return utilisation[a] != utilisation[b] ? utilisation[a] > utilisation[b] : a < b;
                    });
  for (std::size_t i = 0; i < shown; ++i) {
    const std::uint32_t l = used[i];
    auto* u = r.add_busiest_links();
    u->set_name(cluster.link_name(l));
    u->set_kind(topologies::link_kind_name(cluster.link(l).kind));
    u->set_bytes(counters[l].bytes);
    u->set_capacity_gbps(cluster.link(l).capacity_bps / 1e9);
    u->set_utilisation(utilisation[l]);
    u->set_busy_fraction(elapsed > 0 ? static_cast<double>(counters[l].busy_ps) / static_cast<double>(elapsed) : 0.0);
  }
  for (int k = 0; k < topologies::kNumLinkKinds; ++k) {
    const auto kind = static_cast<topologies::LinkKind>(k);
    double bytes = 0.0, max_util = 0.0, sum_util = 0.0;
    std::int64_t num_links = 0, num_used = 0;
    for (std::uint32_t l = 0; l < counters.size(); ++l) {
      if (cluster.link(l).kind != kind) continue;
      ++num_links;
      bytes += counters[l].bytes;
      if (counters[l].bytes <= 0.0) continue;
      ++num_used;
      max_util = std::max(max_util, utilisation[l]);
      sum_util += utilisation[l];
    }
    auto* usage = r.add_link_kinds();
    usage->set_kind(topologies::link_kind_name(kind));
    usage->set_num_links(num_links);
    usage->set_bytes(bytes);
    usage->set_max_utilisation(max_util);
    usage->set_mean_utilisation(num_used > 0 ? sum_util / static_cast<double>(num_used) : 0.0);
  }
}

}  // namespace

reports::CollectiveResult run_collective(const topologies::Cluster& cluster, const TransferGraph& graph,
                                         double bytes_per_unit, double epsilon, const std::string& name,
                                         double send_buffer_bytes_mean, int group_size) {
  Simulator simulator;
  network::Network net(simulator, cluster, network::NetworkOptions{epsilon});
  collectives::TransferRunner runner(net, graph, bytes_per_unit);
  runner.start();
  simulator.run();
  if (!runner.finished()) throw std::logic_error(name + ": the transfer graph did not finish (a dependency cycle?)");

  reports::CollectiveResult r;
  r.set_name(name);
  const TimePs elapsed = runner.end_time() - runner.start_time();
  r.set_time_us(us_from_time(elapsed));
  fill_wire_bytes(graph, bytes_per_unit, cluster.num_gpus(), r);
  r.set_send_buffer_bytes_mean(send_buffer_bytes_mean);
  const double algbw = elapsed > 0 ? send_buffer_bytes_mean / seconds_from_time(elapsed) : 0.0;
  r.set_algbw_gbps(algbw / 1e9);
  r.set_busbw_gbps(group_size > 0 ? algbw / 1e9 * (group_size - 1) / group_size : 0.0);
  fill_bound(cluster, net, r);
  fill_link_usage(cluster, net, elapsed, r);

  const auto& stats = net.stats();
  r.set_num_flows(static_cast<std::int64_t>(stats.num_flows));
  r.set_num_recomputations(static_cast<std::int64_t>(stats.num_recomputations));
  r.set_max_active_flows(static_cast<std::int64_t>(stats.max_active_flows));
  r.set_num_rates_solved(static_cast<std::int64_t>(stats.num_flows_rerated));
  char fingerprint[17];
  std::snprintf(fingerprint, sizeof fingerprint, "%016llx", static_cast<unsigned long long>(stats.fingerprint));
  r.set_fingerprint(fingerprint);
  return r;
}

reports::A2aResult run_a2a(const topologies::Cluster& cluster, const A2aConfig& config) {
  reports::A2aResult result;
  result.set_tool("moesim " MOESIM_VERSION);
  auto* in = result.mutable_inputs();
  const int num_gpus = cluster.num_gpus();
  in->set_cluster(config.cluster_name);
  in->set_num_gpus(num_gpus);
  in->set_num_nodes(cluster.num_nodes());
  in->set_gpus_per_node(cluster.gpus_per_node());
  in->set_algorithm(collectives::algorithm_name(config.algorithm));
  in->set_seed(config.seed);
  in->set_epsilon(config.epsilon);

  if (!config.model) {
    TransferGraph graph;
    if (!(config.bytes_per_rank > 0.0)) throw std::invalid_argument("bytes_per_rank: must be > 0");
    const int ep = config.ep > 0 ? config.ep : num_gpus;
    if (num_gpus % ep != 0) {
      throw std::invalid_argument("ep: must divide the GPU count " + std::to_string(num_gpus) + ", got " +
                                  std::to_string(ep));
    }
    in->set_ep(ep);
    in->set_num_ep_groups(num_gpus / ep);
    in->set_bytes_per_rank(config.bytes_per_rank);
    in->set_routing("uniform");
    for (int first = 0; first < num_gpus; first += ep) {
      collectives::build_all_to_all(graph, uniform_demand(cluster, first, ep, config.bytes_per_rank), config.algorithm);
    }
    *result.add_collectives() =
        run_collective(cluster, graph, 1.0, config.epsilon, "all-to-all", config.bytes_per_rank, ep);
  } else {
    const workloads::MoeModel& model = *config.model;
    const int ep = config.ep > 0 ? config.ep : std::gcd(num_gpus, model.num_experts);
    workloads::TrafficOptions options;
    options.ep = ep;
    options.placement = config.placement;
    options.tokens_per_rank = config.tokens_per_rank;
    options.num_experts = model.num_experts;
    options.num_topk = model.num_topk;
    options.routing = config.routing;
    options.seed = config.seed;
    options.layer = config.layer;
    options.step = config.step;
    options.capacity = config.capacity;
    options.replay = config.replay.get();
    const workloads::LayerTraffic traffic = workloads::build_layer_traffic(cluster, options);

    in->set_model(model.name);
    in->set_hidden_size(model.hidden_size);
    in->set_num_experts(model.num_experts);
    in->set_num_topk(model.num_topk);
    in->set_tokens_per_rank(config.tokens_per_rank);
    in->set_ep(ep);
    in->set_num_ep_groups(num_gpus / ep);
    in->set_dispatch_bytes_per_token(model.dispatch_bytes_per_token());
    in->set_combine_bytes_per_token(model.combine_bytes_per_token());
    in->set_routing(config.replay ? "replay" : config.routing.describe());
    in->set_node_limit(config.routing.node_limit);
    in->set_device_limit(config.routing.device_limit);
    in->set_placement(workloads::placement_name(config.placement));
    in->set_token_dedup(config.token_dedup);
    in->set_layer(config.layer);
    in->set_step(config.step);
    in->set_capacity_policy(workloads::capacity_policy_name(config.capacity.policy));
    in->set_capacity_factor(config.capacity.is_dropless() ? 0.0 : config.capacity.factor);
    in->set_min_capacity(config.capacity.min_capacity);
    if (config.replay) in->set_routing_file(config.replay->source);
    in->set_expert_groups(config.routing.expert_groups);
    in->set_group_limit(config.routing.group_limit);
    in->set_drift(config.routing.drift);
    in->set_replica_slots(config.replica_slots);

    const double total_us = simulate_layer(cluster, config, traffic, *result.mutable_collectives());
    *result.mutable_routing() = summarize_routing(traffic);
    if (config.replica_slots > 0) {
      replication_what_if(cluster, config, options, total_us, *result.mutable_replication());
    }
  }
  double total_us = 0.0;
  for (const auto& c : result.collectives()) total_us += c.time_us();
  result.set_total_time_us(total_us);
  return result;
}

}  // namespace moesim::sim
