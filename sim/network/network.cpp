#include "sim/network/network.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/rng.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::network {
namespace {

constexpr TimePs kNever = std::numeric_limits<TimePs>::max();
constexpr double kNoChange = std::numeric_limits<double>::infinity();  // changed_below_ of an unchanged link
constexpr double kPsPerSecond = 1e12;

}  // namespace

Network::Network(Simulator& sim, const topologies::Cluster& cluster, NetworkOptions options)
    : sim_(sim), cluster_(cluster), options_(options) {
  if (!(options_.epsilon >= 0.0) || options_.epsilon > 1.0) {
    throw std::invalid_argument("epsilon: must be in [0, 1], got " + std::to_string(options_.epsilon));
  }
  const double limit = options_.comm_bandwidth_limit_bps;
  if (!(limit >= 0.0) || !std::isfinite(limit)) {
    throw std::invalid_argument("comm_bandwidth_limit_bps: must be finite and >= 0 (0: no limit), got " +
                                std::to_string(limit));
  }
  num_cluster_links_ = cluster.num_links();
  const std::size_t num_virtual = limit > 0.0 ? 2 * static_cast<std::size_t>(cluster.num_gpus()) : 0;
  const std::size_t num_links = num_cluster_links_ + num_virtual;
  capacity_.resize(num_links, limit / kPsPerSecond);
  for (std::size_t l = 0; l < num_cluster_links_; ++l)
    capacity_[l] = cluster.link(static_cast<std::uint32_t>(l)).capacity_bps / kPsPerSecond;
  flows_on_.resize(num_links);
  counters_.resize(num_links);
  busy_since_.resize(num_links, 0);
  link_mark_.resize(num_links, 0);
  changed_below_.resize(num_links, kNoChange);
  link_local_.resize(num_links, 0);
  dying_on_link_.resize(num_links, 0);
}

void Network::append_virtual_links(int src_gpu, int dst_gpu, std::vector<std::uint32_t>& path) const {
  const auto base = static_cast<std::uint32_t>(num_cluster_links_);
  path.push_back(base + 2 * static_cast<std::uint32_t>(src_gpu));
  path.push_back(base + 2 * static_cast<std::uint32_t>(dst_gpu) + 1);
}

void Network::route(int src_gpu, int dst_gpu, std::uint64_t salt, std::vector<std::uint32_t>& path) const {
  if (src_gpu == dst_gpu) return;
  cluster_.route(src_gpu, dst_gpu, salt, path);
  if (capacity_.size() > num_cluster_links_) append_virtual_links(src_gpu, dst_gpu, path);
}

void Network::start_flow(int src_gpu, int dst_gpu, double bytes, std::uint64_t salt, FlowListener* listener,
                         std::uint64_t tag) {
  if (!(bytes >= 0.0) || !std::isfinite(bytes)) throw std::invalid_argument("flow size must be finite and >= 0");
  const TimePs now = sim_.now();
  if (num_active_ == 0 && arrivals_.empty()) busy_start_ = now;

  route_scratch_.clear();
  if (src_gpu != dst_gpu) cluster_.route(src_gpu, dst_gpu, salt, route_scratch_);
  // Latency is the cluster path's alone; the virtual links only share bandwidth.
  const TimePs latency =
      route_scratch_.empty() ? 0 : cluster_.path_latency(route_scratch_.data(), route_scratch_.size());
  if (!route_scratch_.empty() && capacity_.size() > num_cluster_links_) {
    append_virtual_links(src_gpu, dst_gpu, route_scratch_);
  }

  const auto id = static_cast<std::uint32_t>(flows_.size());
  Flow flow;
  flow.bytes = bytes;
  flow.remaining = bytes;
  flow.listener = listener;
  flow.tag = tag;
  flows_.push_back(flow);
  rates_.push_back(0.0);
  paths_.push_back(
      PathRef{static_cast<std::uint32_t>(path_links_.size()), static_cast<std::uint32_t>(route_scratch_.size())});
  flow_mark_.push_back(0);
  is_dying_.push_back(0);
  path_links_.insert(path_links_.end(), route_scratch_.begin(), route_scratch_.end());
  path_slots_.resize(path_links_.size(), 0);
  arrivals_[now + latency].push_back(id);

  ++stats_.num_flows;
  if (!route_scratch_.empty()) stats_.min_flow_latency_ps = std::min(stats_.min_flow_latency_ps, latency);
  if (!in_event_) schedule_next();
}

void Network::mark_changed(std::uint32_t link, double keep_below) {
  if (changed_below_[link] == kNoChange) changed_links_.push_back(link);
  changed_below_[link] = std::min(changed_below_[link], keep_below);
}

void Network::activate(std::uint32_t f, TimePs now) {
  Flow& flow = flows_[f];
  const PathRef path = paths_[f];
  if (path.num_hops == 0 || flow.bytes <= 0.0) {
    done_.push_back(Done{flow.listener, flow.tag});
    return;
  }
  flow.updated_at = static_cast<double>(now);
  flow.remaining = flow.bytes;
  rates_[f] = 0.0;
  for (std::uint32_t h = 0; h < path.num_hops; ++h) {
    const std::uint32_t link = path_links_[path.begin + h];
    auto& on_link = flows_on_[link];
    if (on_link.empty()) busy_since_[link] = now;
    path_slots_[path.begin + h] = static_cast<std::uint32_t>(on_link.size());
    on_link.push_back(f);
    mark_changed(link, 0.0);  // an arrival can change every rate in its component
  }
  ++num_active_;
  stats_.max_active_flows = std::max(stats_.max_active_flows, num_active_);
}

// Removes every flow that has finished by `now` from its links, in one pass. A link that loses many of its
// flows at once is filtered and renumbered; one that loses few has them swapped out one by one.
void Network::retire_finished(TimePs now) {
  retiring_.clear();
  finish_.pop_all_at_most(static_cast<double>(now), retiring_);
  if (retiring_.empty()) return;
  touched_links_.clear();
  for (std::uint32_t f : retiring_) {
    is_dying_[f] = 1;
    for (std::uint32_t link : links_of(f)) {
      if (dying_on_link_[link]++ == 0) touched_links_.push_back(link);
      mark_changed(link, rates_[f]);  // flows slower than a departing one keep their rates (maxmin.hpp)
    }
  }
  auto rebuild = [&](std::uint32_t link) { return std::size_t{dying_on_link_[link]} * 4 >= flows_on_[link].size(); };
  for (std::uint32_t f : retiring_) {
    const Flow& flow = flows_[f];
    const PathRef path = paths_[f];
    for (std::uint32_t h = 0; h < path.num_hops; ++h) {
      const std::uint32_t link = path_links_[path.begin + h];
      counters_[link].bytes += flow.bytes;
      if (rebuild(link)) continue;
      auto& on_link = flows_on_[link];
      const std::uint32_t slot = path_slots_[path.begin + h];
      const std::uint32_t moved = on_link.back();
      on_link[slot] = moved;
      on_link.pop_back();
      if (moved != f) set_slot(moved, link, slot);
    }
    done_.push_back(Done{flow.listener, flow.tag});
  }
  for (std::uint32_t link : touched_links_) {
    auto& on_link = flows_on_[link];
    if (rebuild(link)) {
      std::size_t kept = 0;
      for (std::uint32_t f : on_link) {
        if (is_dying_[f]) continue;
        on_link[kept] = f;
        set_slot(f, link, static_cast<std::uint32_t>(kept));
        ++kept;
      }
      on_link.resize(kept);
    }
    dying_on_link_[link] = 0;
    if (on_link.empty()) counters_[link].busy_ps += now - busy_since_[link];
  }
  // The order of flows within one instant is incidental (heap layout), so their tags enter the fingerprint
  // through a sum, and the instant through the running hash.
  std::uint64_t tags = 0;
  for (std::uint32_t f : retiring_) {
    is_dying_[f] = 0;
    tags += splitmix64(flows_[f].tag);
  }
  stats_.fingerprint = hash_combine(hash_combine(stats_.fingerprint, static_cast<std::uint64_t>(now)), tags);
  num_active_ -= retiring_.size();
}

void Network::set_slot(std::uint32_t flow, std::uint32_t link, std::uint32_t slot) {
  const PathRef path = paths_[flow];
  for (std::uint32_t k = 0; k < path.num_hops; ++k) {
    if (path_links_[path.begin + k] == link) {
      path_slots_[path.begin + k] = slot;
      return;
    }
  }
}

void Network::recompute(TimePs now) {
  if (changed_links_.empty()) return;
  if (++mark_ == 0) {  // wrapped: clear stale marks once every 2^32 recomputations
    std::fill(link_mark_.begin(), link_mark_.end(), 0);
    std::fill(flow_mark_.begin(), flow_mark_.end(), 0);
    mark_ = 1;
  }
  component_links_.clear();
  component_flows_.clear();
  auto add_link = [&](std::uint32_t link) {
    if (link_mark_[link] == mark_) return;
    link_mark_[link] = mark_;
    link_local_[link] = static_cast<std::uint32_t>(component_links_.size());
    component_links_.push_back(link);
  };

  // Breadth-first over the flow-link graph from every changed link: everything a change can reach. Flows slower
  // than the slowest flow that left through a changed link keep their rates (maxmin.hpp): they stop the search
  // and only use up capacity; an arrival stops nothing. Searches run from the lowest threshold up, so a region
  // that two changes reach is searched with the lower threshold (the higher one's region is then inside it),
  // while changes in unrelated parts of the network keep their own thresholds. A small relative slack includes
  // flows that rounding left a hair below a threshold, which is always safe. The same scan of each link's flows
  // yields the problem's residual capacity and its flows to solve.
  std::sort(changed_links_.begin(), changed_links_.end(), [&](std::uint32_t a, std::uint32_t b) {
    return changed_below_[a] != changed_below_[b] ? changed_below_[a] < changed_below_[b] : a < b;
  });
  SharingProblem& problem = problem_;
  problem.remaining.clear();
  problem.link_begin.assign(1, 0);
  auto scan = [&](std::uint32_t link, double keep_below) {
    double remaining = capacity_[link];
    std::uint32_t num_solving = 0;
    for (std::uint32_t f : flows_on_[link]) {
      const double rate = rates_[f];
      if (rate < keep_below) {
        remaining -= rate;
        continue;
      }
      ++num_solving;
      if (flow_mark_[f] == mark_) continue;
      flow_mark_[f] = mark_;
      component_flows_.push_back(f);
      for (std::uint32_t m : links_of(f)) add_link(m);
    }
    problem.remaining.push_back(remaining);
    problem.link_begin.push_back(problem.link_begin.back() + num_solving);
  };
  std::size_t scanned = 0;
  for (std::uint32_t seed : changed_links_) {
    const double keep_below = changed_below_[seed] * (1.0 - 1e-9);
    changed_below_[seed] = kNoChange;
    add_link(seed);
    for (; scanned < component_links_.size(); ++scanned) scan(component_links_[scanned], keep_below);
  }
  changed_links_.clear();
  if (component_flows_.empty()) return;
  ++stats_.num_recomputations;
  stats_.num_flows_rerated += component_flows_.size();

  problem.link_flows.resize(problem.link_begin.back());
  problem.flow_begin.assign(1, 0);
  problem.flow_links.clear();
  fill_.assign(problem.link_begin.begin(), problem.link_begin.end() - 1);
  for (std::uint32_t i = 0; i < component_flows_.size(); ++i) {
    for (std::uint32_t m : links_of(component_flows_[i])) {
      const std::uint32_t local = link_local_[m];
      problem.flow_links.push_back(local);
      problem.link_flows[fill_[local]++] = i;
    }
    problem.flow_begin.push_back(static_cast<std::uint32_t>(problem.flow_links.size()));
  }
  solver_.solve(problem, new_rates_);

  const double t = static_cast<double>(now);
  for (std::uint32_t i = 0; i < component_flows_.size(); ++i) {
    const std::uint32_t f = component_flows_[i];
    Flow& flow = flows_[f];
    const double rate = new_rates_[i];
    if (rate == rates_[f] && finish_.contains(f)) continue;
    flow.remaining = std::max(0.0, flow.remaining - rates_[f] * (t - flow.updated_at));
    flow.updated_at = t;
    rates_[f] = rate;
    finish_.set(f, rate > 0.0 ? t + flow.remaining / rate : std::numeric_limits<double>::infinity());
  }
}

TimePs Network::next_completion_time() const {
  if (finish_.empty() || !std::isfinite(finish_.top_key())) return kNever;
  const double first = finish_.top_key();
  const double threshold = first + options_.epsilon * std::max(0.0, first - static_cast<double>(busy_start_));
  double last = first;
  if (threshold > first) {
    // The entries within the window form a subtree at the top of the heap.
    const auto& items = finish_.items();
    std::vector<std::size_t> stack{0};
    while (!stack.empty()) {
      const std::size_t i = stack.back();
      stack.pop_back();
      const double key = finish_.key(items[i]);
      if (key > threshold) continue;
      last = std::max(last, key);
      if (2 * i + 1 < items.size()) stack.push_back(2 * i + 1);
      if (2 * i + 2 < items.size()) stack.push_back(2 * i + 2);
    }
  }
  return static_cast<TimePs>(std::ceil(last));
}

void Network::schedule_next() {
  const TimePs next_arrival = arrivals_.empty() ? kNever : arrivals_.begin()->first;
  const TimePs at = std::max(sim_.now(), std::min(next_arrival, next_completion_time()));
  if (at == kNever || at == scheduled_at_) return;
  const std::uint64_t generation = ++generation_;
  scheduled_at_ = at;
  sim_.schedule_at(
      at, [this, generation] { on_event(generation); }, kPriorityNetwork);
}

void Network::on_event(std::uint64_t generation) {
  if (generation != generation_) return;  // superseded by a later schedule_next()
  scheduled_at_ = -1;
  in_event_ = true;
  const TimePs now = sim_.now();
  retire_finished(now);
  std::vector<Done> batch;
  for (;;) {
    while (!arrivals_.empty() && arrivals_.begin()->first <= now) {
      const std::vector<std::uint32_t> arriving = std::move(arrivals_.begin()->second);
      arrivals_.erase(arrivals_.begin());
      for (std::uint32_t f : arriving) activate(f, now);
    }
    if (done_.empty()) break;
    batch.swap(done_);
    for (const Done& d : batch) d.listener->on_flow_done(d.tag);  // may start flows arriving now
    batch.clear();
  }
  recompute(now);
  in_event_ = false;
  reset_if_idle();
  schedule_next();
}

void Network::reset_if_idle() {
  if (num_active_ != 0 || !arrivals_.empty() || !done_.empty()) return;
  flows_.clear();
  paths_.clear();
  rates_.clear();
  flow_mark_.clear();
  is_dying_.clear();
  path_links_.clear();
  path_slots_.clear();
}

}  // namespace moesim::sim::network
