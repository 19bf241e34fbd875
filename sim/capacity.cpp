#include "sim/capacity.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <stdexcept>
#include <utility>

#include "topologies/cluster.hpp"
#include "workloads/balancing.hpp"
#include "workloads/load_stats.hpp"

namespace moesim::sim {
namespace {

// The balancing's "settled" figures average this many final steps (fewer when the run is shorter).
constexpr int kSettledSteps = 10;

std::int64_t sum(const std::vector<std::int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::int64_t{0});
}

double ratio(std::int64_t num, std::int64_t den) {
  return den > 0 ? static_cast<double>(num) / static_cast<double>(den) : 0.0;
}

reports::LoadSummary summary_of(const workloads::LoadStats& s) {
  reports::LoadSummary out;
  out.set_count(s.count);
  out.set_mean(s.mean);
  out.set_max(s.max);
  out.set_max_over_mean(s.max_over_mean);
  out.set_cv(s.cv);
  out.set_gini(s.gini);
  out.set_min(s.min);
  return out;
}

template <class T>
reports::LoadSummary summary_of(const std::vector<T>& loads) {
  return summary_of(workloads::load_stats(loads));
}

reports::Histogram histogram_of(const std::vector<std::int64_t>& loads, int num_bins) {
  const workloads::Histogram h = workloads::load_histogram(std::vector<double>(loads.begin(), loads.end()), num_bins);
  reports::Histogram out;
  out.set_bin_width(h.bin_width);
  for (const std::int64_t c : h.counts) out.add_counts(c);
  return out;
}

// Field by field, the mean of the layers' summaries: the typical layer (a pooled vector would hide that each
// layer has its own hot experts).
template <class Layers, class Get>
reports::LoadSummary mean_summary(const Layers& layers, Get get) {
  reports::LoadSummary out;
  if (layers.empty()) return out;
  double mean = 0.0, max = 0.0, max_over_mean = 0.0, cv = 0.0, gini = 0.0, min = 0.0;
  for (const auto& layer : layers) {
    const reports::LoadSummary& s = get(layer);
    out.set_count(s.count());
    mean += s.mean();
    max += s.max();
    max_over_mean += s.max_over_mean();
    cv += s.cv();
    gini += s.gini();
    min += s.min();
  }
  const auto n = static_cast<double>(layers.size());
  out.set_mean(mean / n);
  out.set_max(max / n);
  out.set_max_over_mean(max_over_mean / n);
  out.set_cv(cv / n);
  out.set_gini(gini / n);
  out.set_min(min / n);
  return out;
}

// The layers to analyse: as given, else the replayed file's, else every MoE layer of the model. Layer ids here
// are MoE-layer indices (0 .. num_moe_layers() - 1, as routing's `layer` counts them): dense layers route nothing,
// so DeepSeek-V3's 61 layers give 58 ids, not 61.
std::vector<int> layers_of(const CapacityConfig& config) {
  if (!config.layers.empty()) return config.layers;
  std::vector<int> layers;
  if (config.replay) {
    for (const workloads::RecordedLayer& layer : config.replay->layers) layers.push_back(layer.layer);
    return layers;
  }
  const int num_moe_layers = config.model.num_moe_layers();
  if (num_moe_layers < 1) {
    throw std::invalid_argument("layers: the model has no MoE layers (num_layers " +
                                std::to_string(config.model.num_layers) + "); name one with layer");
  }
  layers.resize(static_cast<std::size_t>(num_moe_layers));
  std::iota(layers.begin(), layers.end(), 0);
  return layers;
}

void validate(const CapacityConfig& config) {
  if (config.factors.empty()) throw std::invalid_argument("capacity_factor: expected at least one factor");
  for (const double f : config.factors) {
    if (!(std::isfinite(f) && f > 0.0)) {
      throw std::invalid_argument("capacity_factor: each factor must be finite and > 0, got " + std::to_string(f));
    }
  }
  for (const int layer : config.layers) {
    if (layer < 0) throw std::invalid_argument("layers: each layer must be >= 0, got " + std::to_string(layer));
  }
  if (config.histogram_bins < 1) {
    throw std::invalid_argument("histogram_bins: must be >= 1, got " + std::to_string(config.histogram_bins));
  }
  if (config.balancing_steps < 0) {
    throw std::invalid_argument("steps: must be >= 0, got " + std::to_string(config.balancing_steps));
  }
  // Checked before the analysis rather than when the balancing starts, after all the other work.
  if (config.balancing_steps > 0) {
    if (config.replay) {
      throw std::invalid_argument("steps: bias balancing re-routes the tokens, and a replayed routing is fixed");
    }
    if (!(std::isfinite(config.bias_rate) && config.bias_rate >= 0.0)) {
      throw std::invalid_argument("bias_rate: must be finite and >= 0, got " + std::to_string(config.bias_rate));
    }
  }
}

void fill_inputs(const CapacityConfig& config, const std::vector<int>& node_of_gpu, int ep,
                 const std::vector<int>& layers, reports::CapacityInputs& in) {
  const auto num_gpus = static_cast<std::int64_t>(node_of_gpu.size());
  in.set_cluster(config.cluster_name);
  in.set_num_gpus(num_gpus);
  in.set_num_nodes(static_cast<std::int64_t>(std::set<int>(node_of_gpu.begin(), node_of_gpu.end()).size()));
  in.set_model(config.model.name);
  in.set_num_experts(config.model.num_experts);
  in.set_num_topk(config.model.num_topk);
  in.set_tokens_per_rank(config.tokens_per_rank);
  in.set_ep(ep);
  in.set_num_ep_groups(num_gpus / ep);
  in.set_routing(config.replay ? "replay" : config.routing.describe());
  if (config.replay) in.set_routing_file(config.replay->source);
  in.set_placement(workloads::placement_name(config.placement));
  in.set_capacity_policy(workloads::capacity_policy_name(config.policy));
  for (const double f : config.factors) in.add_capacity_factors(f);
  in.set_min_capacity(config.min_capacity);
  for (const int layer : layers) in.add_layers(layer);
  in.set_step(config.step);
  in.set_seed(config.seed);
  in.set_node_limit(config.routing.node_limit);
  in.set_device_limit(config.routing.device_limit);
  in.set_expert_groups(config.routing.expert_groups);
  in.set_group_limit(config.routing.group_limit);
  in.set_drift(config.routing.drift);
  in.set_histogram_bins(config.histogram_bins);
  in.set_balancing_steps(config.balancing_steps);
  in.set_bias_rate(config.balancing_steps > 0 ? config.bias_rate : 0.0);
}

void fill_routed(const workloads::LayerTraffic& traffic, int num_bins, reports::RoutedLayer& out) {
  out.set_layer(traffic.options.layer);
  out.set_routed(sum(traffic.routed_per_expert));
  // Without capacity every choice is kept where it was routed, so these loads are the router's alone.
  *out.mutable_expert_load() = summary_of(traffic.routed_per_expert);
  *out.mutable_rank_load() = summary_of(workloads::received_per_rank(traffic));
  *out.mutable_expert_histogram() = histogram_of(traffic.routed_per_expert, num_bins);
  for (const std::int64_t n : traffic.routed_per_expert) out.add_routed_per_expert(n);
}

void fill_layer(const workloads::LayerTraffic& traffic, int num_bins, reports::LayerCapacity& out) {
  out.set_layer(traffic.options.layer);
  out.set_routed(sum(traffic.routed_per_expert));
  out.set_kept(sum(traffic.tokens_per_expert));
  out.set_dropped(sum(traffic.dropped_per_expert));
  out.set_rerouted(sum(traffic.rerouted_per_expert));
  out.set_padded_slots(traffic.padded_slots);
  out.set_tokens_all_dropped(traffic.tokens_all_dropped);
  out.set_dropped_fraction(ratio(out.dropped(), out.routed()));
  out.set_rerouted_fraction(ratio(out.rerouted(), out.routed()));
  out.set_padding_fraction(ratio(out.padded_slots(), out.kept() + out.padded_slots()));
  *out.mutable_expert_load() = summary_of(traffic.tokens_per_expert);
  *out.mutable_rank_load() = summary_of(workloads::received_per_rank(traffic));
  *out.mutable_expert_histogram() = histogram_of(traffic.tokens_per_expert, num_bins);
  for (std::size_t e = 0; e < traffic.tokens_per_expert.size(); ++e) {
    out.add_kept_per_expert(traffic.tokens_per_expert[e]);
    out.add_dropped_per_expert(traffic.dropped_per_expert[e]);
    out.add_rerouted_per_expert(traffic.rerouted_per_expert[e]);
    out.add_dropped_fraction_per_expert(ratio(traffic.dropped_per_expert[e], traffic.routed_per_expert[e]));
    out.add_routed_per_expert(traffic.routed_per_expert[e]);
  }
}

// Sums and worst layer over the row's layers.
void finish_row(reports::CapacityRow& row) {
  double worst = -1.0;
  for (const reports::LayerCapacity& layer : row.layers()) {
    row.set_routed(row.routed() + layer.routed());
    row.set_kept(row.kept() + layer.kept());
    row.set_dropped(row.dropped() + layer.dropped());
    row.set_rerouted(row.rerouted() + layer.rerouted());
    row.set_padded_slots(row.padded_slots() + layer.padded_slots());
    row.set_tokens_all_dropped(row.tokens_all_dropped() + layer.tokens_all_dropped());
    if (layer.dropped_fraction() > worst) {
      worst = layer.dropped_fraction();
      row.set_worst_layer(layer.layer());
      row.set_worst_layer_dropped_fraction(layer.dropped_fraction());
    }
  }
  row.set_dropped_fraction(ratio(row.dropped(), row.routed()));
  row.set_rerouted_fraction(ratio(row.rerouted(), row.routed()));
  row.set_padding_fraction(ratio(row.padded_slots(), row.kept() + row.padded_slots()));
  *row.mutable_expert_load() = mean_summary(
      row.layers(), [](const auto& l) -> const auto& { return l.expert_load(); });
  *row.mutable_rank_load() = mean_summary(
      row.layers(), [](const auto& l) -> const auto& { return l.rank_load(); });
}

void run_balancing(const std::vector<int>& node_of_gpu, const CapacityConfig& config,
                   const workloads::TrafficOptions& options, reports::BiasBalancing& out) {
  const auto balanced =
      workloads::simulate_bias_balancing(node_of_gpu, options, config.balancing_steps, config.bias_rate);
  const auto baseline = workloads::simulate_bias_balancing(node_of_gpu, options, config.balancing_steps, 0.0);
  out.set_layer(options.layer);
  out.set_capacity_factor(options.capacity.factor);
  out.set_capacity_policy(workloads::capacity_policy_name(options.capacity.policy));
  out.set_bias_rate(config.bias_rate);
  for (std::size_t i = 0; i < balanced.size(); ++i) {
    reports::BalancingStep* step = out.add_steps();
    step->set_step(balanced[i].step);
    *step->mutable_expert_load() = summary_of(balanced[i].expert_load);
    *step->mutable_rank_load() = summary_of(balanced[i].rank_load);
    step->set_dropped_fraction(balanced[i].dropped_fraction);
    *step->mutable_baseline_expert_load() = summary_of(baseline[i].expert_load);
    *step->mutable_baseline_rank_load() = summary_of(baseline[i].rank_load);
    step->set_baseline_dropped_fraction(baseline[i].dropped_fraction);
    for (const double b : balanced[i].bias) step->add_bias(b);
  }
  const int settled = std::min(kSettledSteps, out.steps_size());
  double imbalance = 0.0, base_imbalance = 0.0, dropped = 0.0, base_dropped = 0.0;
  for (int i = out.steps_size() - settled; i < out.steps_size(); ++i) {
    const reports::BalancingStep& s = out.steps(i);
    imbalance += s.expert_load().max_over_mean();
    base_imbalance += s.baseline_expert_load().max_over_mean();
    dropped += s.dropped_fraction();
    base_dropped += s.baseline_dropped_fraction();
  }
  out.set_num_settled_steps(settled);
  out.set_settled_expert_max_over_mean(imbalance / settled);
  out.set_baseline_settled_expert_max_over_mean(base_imbalance / settled);
  out.set_settled_dropped_fraction(dropped / settled);
  out.set_baseline_settled_dropped_fraction(base_dropped / settled);
}

}  // namespace

reports::CapacityResult run_capacity(const CapacityConfig& config, workloads::RecordedRouting* routing_out) {
  validate(config);
  const workloads::MoeModel& model = config.model;
  std::vector<int> node_of_gpu = config.node_of_gpu;
  int ep = config.ep;
  if (node_of_gpu.empty()) {
    if (ep == 0) ep = std::gcd(model.num_experts, kMaxDefaultEpWithoutCluster);
    if (ep < 1) throw std::invalid_argument("ep: must be >= 1, got " + std::to_string(ep));
    node_of_gpu.resize(static_cast<std::size_t>(ep));
    for (int g = 0; g < ep; ++g) node_of_gpu[static_cast<std::size_t>(g)] = g / kGpusPerNodeWithoutCluster;
  } else if (ep == 0) {
    ep = std::gcd(static_cast<int>(node_of_gpu.size()), model.num_experts);
  }
  const std::vector<int> layers = layers_of(config);

  reports::CapacityResult result;
  result.set_tool("moesim " MOESIM_VERSION);
  fill_inputs(config, node_of_gpu, ep, layers, *result.mutable_inputs());

  workloads::TrafficOptions base;
  base.ep = ep;
  base.tokens_per_rank = config.tokens_per_rank;
  base.num_experts = model.num_experts;
  base.num_topk = model.num_topk;
  base.routing = config.routing;
  base.seed = config.seed;
  base.placement = config.placement;
  base.step = config.step;
  base.replay = config.replay.get();
  const auto capacity_at = [&](double factor) {
    return workloads::CapacitySpec{.policy = config.policy, .factor = factor, .min_capacity = config.min_capacity};
  };

  if (routing_out != nullptr) {
    *routing_out = workloads::RecordedRouting{};
    routing_out->num_topk = model.num_topk;
    routing_out->has_scores = true;
  }
  std::vector<reports::CapacityRow> rows(config.factors.size());
  for (std::size_t f = 0; f < rows.size(); ++f) rows[f].set_capacity_factor(config.factors[f]);
  // Layer by layer, so only one layer's traffic is held at a time. Every build below uses the same seed, layer and
  // step: the choices are the same in each, and only the policy's treatment of the overflow differs. The first
  // build records every token's choices (and scores), and the factors replay that record instead of sampling it
  // again (a replay gives identical traffic, tests/unit/workloads/traffic_policies_test.cpp checks it), except for
  // reroute, whose continued ranked lists a record does not hold.
  const bool reuse_record = config.policy != workloads::CapacityPolicy::kReroute && !config.replay;
  for (const int layer : layers) {
    workloads::TrafficOptions options = base;
    options.layer = layer;
    options.record_picks = routing_out != nullptr || reuse_record;
    // Scores cost a logarithm or two per pick: recorded for a routing file, or for drop-score to compare.
    options.record_scores = routing_out != nullptr || config.policy == workloads::CapacityPolicy::kDropScore;
    workloads::LayerTraffic routed = workloads::build_layer_traffic(node_of_gpu, options);
    fill_routed(routed, config.histogram_bins, *result.add_routed());
    workloads::RecordedRouting record;
    if (reuse_record) {
      record.source = "<layer " + std::to_string(layer) + " as sampled>";
      record.num_topk = model.num_topk;
      record.has_scores = !routed.picks.scores.empty();
      record.layers.push_back(routed.picks);
    }
    if (routing_out != nullptr) {
      routing_out->has_scores = routing_out->has_scores && !routed.picks.scores.empty();
      routing_out->layers.push_back(std::move(routed.picks));
    }
    options.record_picks = false;
    if (reuse_record) {
      options.replay = &record;
      options.routing = workloads::RoutingSpec{};  // the record already obeys the limits
    }
    for (std::size_t f = 0; f < rows.size(); ++f) {
      options.capacity = capacity_at(config.factors[f]);
      const workloads::LayerTraffic traffic = workloads::build_layer_traffic(node_of_gpu, options);
      rows[f].set_capacity(traffic.capacity);
      fill_layer(traffic, config.histogram_bins, *rows[f].add_layers());
    }
  }
  if (routing_out != nullptr && !routing_out->has_scores) {
    for (workloads::RecordedLayer& layer : routing_out->layers) layer.scores.clear();
  }
  for (reports::CapacityRow& row : rows) {
    finish_row(row);
    *result.add_rows() = std::move(row);
  }
  *result.mutable_routed_expert_load() = mean_summary(
      result.routed(), [](const auto& l) -> const auto& { return l.expert_load(); });
  *result.mutable_routed_rank_load() = mean_summary(
      result.routed(), [](const auto& l) -> const auto& { return l.rank_load(); });

  if (config.balancing_steps > 0) {
    workloads::TrafficOptions options = base;
    options.layer = layers.front();
    options.capacity = capacity_at(config.factors.front());
    run_balancing(node_of_gpu, config, options, *result.mutable_balancing());
  }
  return result;
}

CapacityConfig resolve_capacity(const ScenarioSpec& spec) {
  CapacityConfig config;
  if (spec.bytes_per_rank) {
    throw std::invalid_argument("bytes_per_rank: capacity analyses an MoE layer; give a model instead");
  }
  if (spec.replica_slots > 0) {
    throw std::invalid_argument("replica_slots: not modelled by capacity (moesim a2a reports replication)");
  }
  config.model = resolve_model(spec);
  const bool has_cluster = (spec.cluster_inline.IsDefined() && !spec.cluster_inline.IsNull()) || !spec.cluster.empty();
  if (has_cluster) {
    topologies::ClusterConfig cluster_config =
        spec.cluster.empty() ? topologies::parse_cluster(spec.cluster_inline, spec.cluster_source, spec.nodes)
                             : topologies::load_cluster(spec.cluster, spec.nodes);
    config.cluster_name = cluster_config.name;
    const topologies::Cluster cluster(std::move(cluster_config));
    config.node_of_gpu.resize(static_cast<std::size_t>(cluster.num_gpus()));
    for (int g = 0; g < cluster.num_gpus(); ++g)
      config.node_of_gpu[static_cast<std::size_t>(g)] = cluster.scale_up_unit_of(g);
  } else if (spec.nodes) {
    throw std::invalid_argument("nodes: needs a cluster (without one, capacity analyses one EP group of ep GPUs)");
  }
  config.tokens_per_rank = resolve_tokens_per_rank(spec, config.model);
  config.ep = spec.ep;
  config.routing = resolve_routing(spec);
  config.replay = resolve_replay(spec, config.model);
  config.placement = workloads::parse_placement(spec.placement);
  config.seed = spec.seed;
  config.step = spec.step;
  // This command's defaults: the question is what overflows, so drop-position over a list of factors.
  config.policy = workloads::parse_capacity_policy(spec.capacity_policy.value_or("drop-position"));
  if (spec.capacity_factor) config.factors = {*spec.capacity_factor};
  if (spec.layer) config.layers = {*spec.layer};
  config.min_capacity = spec.min_capacity;
  return config;
}

}  // namespace moesim::sim
