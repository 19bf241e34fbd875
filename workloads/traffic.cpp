// Per-token sampling of one MoE layer's routing, folded into per-rank and per-node traffic counts.
//
// Theory of operation. Every token draws its num_topk experts by successive sampling without replacement: each
// pick takes expert e with probability p_e / (sum of p over the eligible experts), the Plackett-Luce step. An
// expert is eligible if the token has not picked it yet and, once the token has experts on node_limit distinct
// nodes, if it sits on one of those nodes. Each pick is drawn by rejection from a proposal that is cheap to
// sample and covers the eligible experts with their popularity as weight:
//   - before the limit is reached: the popularity itself, from a Walker alias table over all experts;
//   - at the limit: the popularity restricted to the token's nodes, i.e. a touched node with probability
//     proportional to its mass, then an expert from that node's own alias table. Experts on other nodes are
//     never proposed, so the draw does not spin through the (often ~90%) ineligible mass.
// A proposal that was already picked is redrawn. Rejection keeps the law exact: an accepted expert has
// probability proportional to p_e among the eligible ones. When the eligible share of the proposal is small
// (strong skew once the hot experts are taken) redraws pile up, so after kMaxRedraws consecutive rejections the
// token switches to an exact inverse-CDF scan over its eligible experts, for this and its remaining picks (its
// eligible set only shrinks). Both methods sample the same conditional law, so the switch costs no accuracy,
// and extreme skew never loops for long.
//
// Invariants the counts satisfy (tests check them): per source, the copies row sums to tokens_per_rank x
// num_topk; tokens_to_rank <= copies_to_rank entrywise, and equal when every rank holds one expert (no token
// picks an expert twice); tokens_to_node <= copies_to_node; per token, at most node_limit nodes are touched.
//
// Cost: one alias draw per proposal before the limit, two at it (node, then expert), and a token makes
// num_topk / acceptance proposals, where acceptance is the unpicked share of the proposal's mass. Uniform routing
// accepts nearly every proposal; under strong skew most proposals hit the token's own hot experts (zipf:2 costs
// about six times as much as uniform), and kMaxRedraws caps the waste. Nothing is allocated per token: "already
// picked" and "node touched" are stamps compared with a per-token counter, so nothing is cleared between tokens,
// and a rank's copies are counted per expert and folded into its rows once. Ranks are split over threads; each
// rank draws from Rng(seed, hash(group, rank)) and writes only its own matrix rows, and each thread's expert
// counts are summed afterwards, so the result does not depend on the thread count. Measured on the 2-core
// development machine (Release): 2,048 ranks x 4,096 tokens, top-8 of 256 experts, node limit 4 on 8-GPU nodes
// take about 0.5 s uniform (0.8 s on one thread) and 1.2 s zipf:1 with EP 256; 0.45 s and 0.65 s with EP 64.
#include "workloads/traffic.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/rng.hpp"
#include "topologies/cluster.hpp"

namespace moesim::workloads {
namespace {

// Consecutive rejections before a token switches to exact scans. A proposal that is eligible with probability
// 1/4 still succeeds within 32 tries with probability 1 - 1e-4, so the O(E) scan is rare unless the eligible
// share really is small, which is when the scan is the cheaper method.
constexpr int kMaxRedraws = 32;
// Below this many expert picks per thread, starting a thread costs more than it saves.
constexpr std::int64_t kMinPicksPerThread = std::int64_t{1} << 16;
constexpr double kNever = std::numeric_limits<double>::infinity();  // a bound no draw reaches

__extension__ using Uint128 = unsigned __int128;

constexpr std::size_t to_size(int i) {
  return static_cast<std::size_t>(i);
}

// One column of a Walker alias table: keep `expert_idx` if the coin is below `threshold` (out of 2^64), else
// take `alias_idx`.
struct AliasColumn {
  std::uint64_t threshold = 0;
  std::int32_t expert_idx = 0;
  std::int32_t alias_idx = 0;
};

constexpr std::uint64_t kAlways = std::numeric_limits<std::uint64_t>::max();

// Builds, with Vose's method, the alias table of `count` experts (expert_of[i] with weight weights[i]) into
// out[0, count). Zero total weight gives a uniform table; callers never draw from one (its mass is zero).
void build_alias(const int* expert_of, const double* weights, int count, AliasColumn* out) {
  double total = 0.0;
  for (int i = 0; i < count; ++i) total += weights[i];
  std::vector<double> scaled(to_size(count));
  std::vector<int> small;
  std::vector<int> large;
  for (int i = 0; i < count; ++i) {
    scaled[i] = total > 0.0 ? weights[i] * count / total : 1.0;
    (scaled[i] < 1.0 ? small : large).push_back(i);
    out[i] = {kAlways, expert_of[i], expert_of[i]};
  }
  while (!small.empty() && !large.empty()) {
    const int s = small.back();
    small.pop_back();
    const int l = large.back();
    const double kept = std::ldexp(std::clamp(scaled[s], 0.0, 1.0), 64);
    out[s].threshold = kept >= 0x1.0p64 ? kAlways : static_cast<std::uint64_t>(kept);
    out[s].alias_idx = expert_of[l];
    scaled[l] = (scaled[l] + scaled[s]) - 1.0;  // loses less precision than scaled[l] - (1 - q_s)
    if (scaled[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // What remains has mass 1 up to rounding: those columns keep their own expert (threshold kAlways).
}

// One 64-bit draw gives both the column (high half of x * count) and the coin (low half).
int draw_alias(const AliasColumn* columns, int count, Rng& rng) {
  const Uint128 product = static_cast<Uint128>(rng.next()) * static_cast<std::uint64_t>(count);
  const AliasColumn& c = columns[static_cast<std::size_t>(product >> 64)];
  return static_cast<std::uint64_t>(product) < c.threshold ? c.expert_idx : c.alias_idx;
}

struct SharedInputs {
  const TrafficOptions& options;
  std::vector<double> popularity;
  std::vector<AliasColumn> alias;  // over all experts
  int experts_per_rank = 0;
};

// One thread's sampler: scratch sized once, reused for every token of every rank the thread owns.
class RankSampler {
 public:
  explicit RankSampler(const SharedInputs& shared)
      : shared_(shared),
        num_experts_(shared.options.num_experts),
        num_topk_(shared.options.num_topk),
        expert_mark_(to_size(num_experts_), 0),
        rank_mark_(to_size(shared.options.ep), 0),
        node_mark_(to_size(shared.options.ep), 0),
        expert_count_(to_size(num_experts_), 0),
        tokens_per_expert_(to_size(num_experts_), 0),
        rank_of_expert_(to_size(num_experts_), 0),
        node_of_expert_(to_size(num_experts_), 0),
        expert_order_(to_size(num_experts_), 0),
        node_alias_(to_size(num_experts_)),
        candidates_(to_size(num_experts_), 0),
        touched_nodes_(to_size(num_topk_) + 1, 0),
        touched_cumulative_mass_(to_size(num_topk_) + 2, 0.0),
        slot_alias_(to_size(num_topk_) + 1, nullptr),
        slot_count_(to_size(num_topk_) + 1, 0) {
    for (int e = 0; e < num_experts_; ++e) rank_of_expert_[e] = e / shared.experts_per_rank;
  }

  // Lays out the experts of a group by node: who lives where, each node's mass and its alias table.
  void set_group(const EpGroupTraffic& group) {
    const int num_nodes = group.num_nodes;
    const int limit = shared_.options.routing.node_limit;
    node_limit_ = limit > 0 && limit < num_nodes ? limit : std::numeric_limits<int>::max();
    node_begin_.assign(to_size(num_nodes) + 1, 0);
    node_mass_.assign(to_size(num_nodes), 0.0);
    for (int e = 0; e < num_experts_; ++e) {
      const int node = group.node_of_rank[rank_of_expert_[e]];
      node_of_expert_[e] = node;
      ++node_begin_[node + 1];
    }
    for (int n = 0; n < num_nodes; ++n) node_begin_[n + 1] += node_begin_[n];
    std::vector<int> next(node_begin_.begin(), node_begin_.end() - 1);
    for (int e = 0; e < num_experts_; ++e) expert_order_[next[node_of_expert_[e]]++] = e;
    std::vector<double> weights(to_size(num_experts_));
    for (int i = 0; i < num_experts_; ++i) weights[i] = shared_.popularity[expert_order_[i]];
    for (int n = 0; n < num_nodes; ++n) {
      const int begin = node_begin_[n];
      const int count = node_begin_[n + 1] - begin;
      for (int i = begin; i < begin + count; ++i) node_mass_[n] += weights[i];
      build_alias(expert_order_.data() + begin, weights.data() + begin, count, node_alias_.data() + begin);
    }
  }

  void sample_rank(EpGroupTraffic& group, int group_idx, int rank_idx) {
    // The hot loop reads everything through locals: the compiler cannot prove that the stores into the count
    // rows leave the sampler's members alone, and would reload them after every store.
    const auto num_nodes = to_size(group.num_nodes);
    std::int64_t* const tokens_to_rank = group.tokens_to_rank.data() + to_size(rank_idx) * to_size(shared_.options.ep);
    std::int64_t* const tokens_to_node = group.tokens_to_node.data() + to_size(rank_idx) * num_nodes;
    const AliasColumn* const alias = shared_.alias.data();
    const AliasColumn* const node_alias = node_alias_.data();
    const int* const node_begin = node_begin_.data();
    const double* const node_mass = node_mass_.data();
    const int* const rank_of_expert = rank_of_expert_.data();
    const int* const node_of_expert = node_of_expert_.data();
    std::uint32_t* const expert_mark = expert_mark_.data();
    std::uint32_t* const rank_mark = rank_mark_.data();
    std::uint32_t* const node_mark = node_mark_.data();
    std::int64_t* const expert_count = expert_count_.data();
    int* const touched_nodes = touched_nodes_.data();
    double* const cumulative = touched_cumulative_mass_.data();  // [t]: mass of the first t touched nodes
    const AliasColumn** const slot_alias = slot_alias_.data();   // by touched slot, at the limit
    int* const slot_count = slot_count_.data();
    const int num_experts = num_experts_;
    const int num_topk = num_topk_;
    const int limit = node_limit_;
    const std::int64_t num_tokens = shared_.options.tokens_per_rank;

    Rng rng(shared_.options.seed,
            hash_combine(static_cast<std::uint64_t>(group_idx), static_cast<std::uint64_t>(rank_idx)));
    for (std::int64_t token_idx = 0; token_idx < num_tokens; ++token_idx) {
      const std::uint32_t stamp = next_stamp();
      int num_touched = 0;
      bool is_exact = false;  // set when rejection failed kMaxRedraws times: scan for the remaining picks
      auto record = [&](int e) {
        expert_mark[e] = stamp;
        ++expert_count[e];
        // Branch-free: whether a pick opens a new rank or node is a coin flip the predictor cannot learn.
        const int rank = rank_of_expert[e];
        tokens_to_rank[rank] += rank_mark[rank] != stamp ? 1 : 0;
        rank_mark[rank] = stamp;
        const int node = node_of_expert[e];
        const int is_new_node = node_mark[node] != stamp ? 1 : 0;
        node_mark[node] = stamp;
        tokens_to_node[node] += is_new_node;
        // Written always, kept only if the node is new (the slot is otherwise the next free one).
        touched_nodes[num_touched] = node;
        cumulative[num_touched + 1] = cumulative[num_touched] + node_mass[node];
        slot_alias[num_touched] = node_alias + node_begin[node];
        slot_count[num_touched] = node_begin[node + 1] - node_begin[node];
        num_touched += is_new_node;
      };

      int k = 0;
      // Before the limit: propose from the whole popularity.
      for (; k < num_topk && num_touched < limit; ++k) {
        int e = -1;
        for (int attempt = 0; !is_exact && attempt <= kMaxRedraws; ++attempt) {
          const int proposal = draw_alias(alias, num_experts, rng);
          if (expert_mark[proposal] != stamp) {
            e = proposal;
            break;
          }
        }
        if (e < 0) {
          is_exact = true;
          e = draw_by_scan(rng, stamp, false, num_touched);
        }
        record(e);
      }
      if (k == num_topk) continue;
      // At the limit: propose a touched node by its mass, then an expert of it from the node's alias table. No
      // new node can be touched from here on, so a pick only updates the expert and rank counts.
      const double total = cumulative[num_touched];
      // The slot is the number of cumulative masses at or below u. Up to 4 slots (node limits are small: DeepSeek-V3
      // uses 4) it is counted without branches; the padding never counts, and the clamp absorbs u == total.
      const bool is_small = num_touched <= 4;
      const double bound[4] = {0.0, num_touched > 1 ? cumulative[1] : kNever, num_touched > 2 ? cumulative[2] : kNever,
                               num_touched > 3 ? cumulative[3] : kNever};
      for (; k < num_topk; ++k) {
        int e = -1;
        for (int attempt = 0; !is_exact && attempt <= kMaxRedraws; ++attempt) {
          const double u = rng.uniform() * total;
          int slot = 0;
          if (is_small) {
            slot = (u >= bound[1] ? 1 : 0) + (u >= bound[2] ? 1 : 0) + (u >= bound[3] ? 1 : 0);
          } else {
            for (int t = 1; t < num_touched; ++t) slot += u >= cumulative[t] ? 1 : 0;
          }
          slot = std::min(slot, num_touched - 1);
          const int proposal = draw_alias(slot_alias[slot], slot_count[slot], rng);
          if (expert_mark[proposal] != stamp) {
            e = proposal;
            break;
          }
        }
        if (e < 0) {
          is_exact = true;
          e = draw_by_scan(rng, stamp, true, num_touched);
        }
        expert_mark[e] = stamp;
        ++expert_count[e];
        const int rank = rank_of_expert[e];
        tokens_to_rank[rank] += rank_mark[rank] != stamp ? 1 : 0;
        rank_mark[rank] = stamp;
      }
    }

    std::int64_t* const copies_to_rank = group.copies_to_rank.data() + to_size(rank_idx) * to_size(shared_.options.ep);
    std::int64_t* const copies_to_node = group.copies_to_node.data() + to_size(rank_idx) * num_nodes;
    for (int e = 0; e < num_experts; ++e) {
      copies_to_rank[rank_of_expert[e]] += expert_count[e];
      copies_to_node[node_of_expert[e]] += expert_count[e];
      tokens_per_expert_[e] += expert_count[e];
      expert_count[e] = 0;
    }
  }

  const std::vector<std::int64_t>& tokens_per_expert() const { return tokens_per_expert_; }

 private:
  std::uint32_t next_stamp() {
    if (++stamp_ == 0) {  // wrapped: marks left from 2^32 tokens ago would look current
      std::fill(expert_mark_.begin(), expert_mark_.end(), 0);
      std::fill(rank_mark_.begin(), rank_mark_.end(), 0);
      std::fill(node_mark_.begin(), node_mark_.end(), 0);
      stamp_ = 1;
    }
    return stamp_;
  }

  // Inverse CDF over every eligible expert (unpicked; on a touched node at the limit), summed afresh in a fixed
  // order: exact whatever the skew. Kept out of line so that the hot loop stays small.
  [[gnu::noinline]] int draw_by_scan(Rng& rng, std::uint32_t stamp, bool is_at_limit, int num_touched) {
    const double* p = shared_.popularity.data();
    int num_candidates = 0;
    double total = 0.0;
    auto consider = [&](int e) {
      if (expert_mark_[e] == stamp) return;
      candidates_[num_candidates++] = e;
      total += p[e];
    };
    if (is_at_limit) {
      for (int t = 0; t < num_touched; ++t) {
        const auto node = to_size(touched_nodes_[t]);
        for (int i = node_begin_[node]; i < node_begin_[node + 1]; ++i) consider(expert_order_[i]);
      }
    } else {
      for (int e = 0; e < num_experts_; ++e) consider(e);
    }
    // The node-limit validation guarantees a candidate. Only popularities that underflowed to zero (zipf with
    // a huge exponent) can leave no mass: those experts are then equally (un)likely.
    if (!(total > 0.0)) return candidates_[rng.below(static_cast<std::uint64_t>(num_candidates))];
    double u = rng.uniform() * total;
    int last_positive = candidates_[0];
    for (int i = 0; i < num_candidates; ++i) {
      const int e = candidates_[i];
      if (!(p[e] > 0.0)) continue;
      last_positive = e;
      u -= p[e];
      if (u < 0.0) return e;
    }
    return last_positive;  // u ran past the end by rounding
  }

  const SharedInputs& shared_;
  const int num_experts_;
  const int num_topk_;
  int node_limit_ = 0;  // for the current group; INT_MAX when it cannot bind
  std::uint32_t stamp_ = 0;
  // 32-bit marks cannot alias the 64-bit counters.
  std::vector<std::uint32_t> expert_mark_;
  std::vector<std::uint32_t> rank_mark_;
  std::vector<std::uint32_t> node_mark_;  // a group has at most ep nodes
  std::vector<std::int64_t> expert_count_;
  std::vector<std::int64_t> tokens_per_expert_;
  std::vector<int> rank_of_expert_;
  // The group's layout: node of each expert; experts grouped by node (node n owns positions
  // [node_begin_[n], node_begin_[n + 1]) of expert_order_ and node_alias_); each node's popularity mass.
  std::vector<int> node_of_expert_;
  std::vector<int> expert_order_;
  std::vector<AliasColumn> node_alias_;
  std::vector<int> node_begin_;
  std::vector<double> node_mass_;
  std::vector<int> candidates_;
  // The current token's nodes in the order it touched them, and the mass of the first t of them at [t] ([0] = 0).
  std::vector<int> touched_nodes_;
  std::vector<double> touched_cumulative_mass_;
  std::vector<const AliasColumn*> slot_alias_;  // alias table and expert count of each touched node
  std::vector<int> slot_count_;
};

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument(message);
}

void validate(int num_gpus, const TrafficOptions& o) {
  const std::string gpus = std::to_string(num_gpus);
  if (o.ep < 1) fail("ep: must be >= 1, got " + std::to_string(o.ep));
  if (num_gpus % o.ep != 0) fail("ep: must divide the GPU count " + gpus + ", got " + std::to_string(o.ep));
  if (o.num_experts < 1) fail("num_experts: must be >= 1, got " + std::to_string(o.num_experts));
  if (o.num_experts % o.ep != 0) {
    fail("ep: must divide num_experts " + std::to_string(o.num_experts) + ", got " + std::to_string(o.ep));
  }
  if (o.num_topk < 1) fail("num_topk: must be >= 1, got " + std::to_string(o.num_topk));
  if (o.num_topk > o.num_experts) {
    fail("num_topk: must be <= num_experts (" + std::to_string(o.num_experts) + "), got " + std::to_string(o.num_topk));
  }
  if (o.tokens_per_rank < 0) fail("tokens_per_rank: must be >= 0, got " + std::to_string(o.tokens_per_rank));
  if (o.routing.node_limit < 0) fail("node_limit: must be >= 0, got " + std::to_string(o.routing.node_limit));
  if (o.routing.kind == RoutingSpec::Kind::kZipf &&
      !(std::isfinite(o.routing.zipf_exponent) && o.routing.zipf_exponent > 0.0)) {
    fail("routing: zipf exponent must be finite and > 0, got " + std::to_string(o.routing.zipf_exponent));
  }
}

// A token limited to node_limit nodes can always complete its top-k only if even the node_limit nodes with the
// fewest experts of the group hold num_topk experts between them.
void validate_node_limit(const EpGroupTraffic& group, int group_idx, const TrafficOptions& o, int experts_per_rank) {
  const int limit = o.routing.node_limit;
  if (limit == 0 || group.num_nodes <= limit) return;
  std::vector<int> experts_on_node(to_size(group.num_nodes), 0);
  for (const int node : group.node_of_rank) experts_on_node[node] += experts_per_rank;
  std::sort(experts_on_node.begin(), experts_on_node.end());
  int reachable = 0;
  for (int i = 0; i < limit; ++i) reachable += experts_on_node[i];
  if (reachable < o.num_topk) {
    fail("node_limit: " + std::to_string(limit) + " nodes of EP group " + std::to_string(group_idx) +
         " may hold only " + std::to_string(reachable) + " experts (" + std::to_string(experts_per_rank) +
         " per rank), fewer than num_topk " + std::to_string(o.num_topk) + "; raise the node limit or lower ep");
  }
}

}  // namespace

LayerTraffic build_layer_traffic(const topologies::Cluster& cluster, const TrafficOptions& options) {
  std::vector<int> node_of_gpu(to_size(cluster.num_gpus()));
  for (int g = 0; g < cluster.num_gpus(); ++g) node_of_gpu[g] = cluster.scale_up_unit_of(g);
  return build_layer_traffic(node_of_gpu, options);
}

LayerTraffic build_layer_traffic(const std::vector<int>& node_of_gpu, const TrafficOptions& options, int num_threads) {
  const int num_gpus = static_cast<int>(node_of_gpu.size());
  validate(num_gpus, options);
  const int ep = options.ep;
  const int experts_per_rank = options.num_experts / ep;
  const int num_groups = num_gpus / ep;

  LayerTraffic traffic;
  traffic.options = options;
  traffic.groups.resize(to_size(num_groups));
  for (int g = 0; g < num_groups; ++g) {
    EpGroupTraffic& group = traffic.groups[g];
    std::unordered_map<int, int> local_node;  // cluster node -> group-local index, in order of first appearance
    for (int r = 0; r < ep; ++r) {
      const int gpu = g * ep + r;
      const int node = node_of_gpu[to_size(gpu)];
      if (node < 0) fail("node of GPU " + std::to_string(gpu) + ": must be >= 0, got " + std::to_string(node));
      group.gpus.push_back(gpu);
      group.node_of_rank.push_back(local_node.try_emplace(node, static_cast<int>(local_node.size())).first->second);
    }
    group.num_nodes = static_cast<int>(local_node.size());
    validate_node_limit(group, g, options, experts_per_rank);
    const auto ep_size = to_size(ep);
    group.tokens_to_rank.assign(ep_size * ep_size, 0);
    group.copies_to_rank.assign(ep_size * ep_size, 0);
    group.tokens_to_node.assign(ep_size * to_size(group.num_nodes), 0);
    group.copies_to_node.assign(ep_size * to_size(group.num_nodes), 0);
  }

  SharedInputs shared{
      options, expert_popularity(options.routing, options.num_experts, options.seed), {}, experts_per_rank};
  std::vector<int> identity(to_size(options.num_experts));
  for (int e = 0; e < options.num_experts; ++e) identity[e] = e;
  shared.alias.resize(to_size(options.num_experts));
  build_alias(identity.data(), shared.popularity.data(), options.num_experts, shared.alias.data());

  // Ranks are numbered across groups (unit = group * ep + rank) and cut into contiguous ranges, one per thread.
  const std::int64_t num_units = num_gpus;
  const std::int64_t num_picks = num_units * options.tokens_per_rank * options.num_topk;
  const std::int64_t wanted = num_threads > 0 ? num_threads : std::max(1u, std::thread::hardware_concurrency());
  const auto num_workers =
      static_cast<int>(std::max<std::int64_t>(1, std::min({wanted, num_picks / kMinPicksPerThread, num_units})));

  std::vector<std::vector<std::int64_t>> tokens_per_expert(to_size(num_workers));
  std::vector<std::exception_ptr> errors(to_size(num_workers));
  auto run = [&](int worker) {
    try {
      // Each thread builds its own sampler, so the scratch that changes every token shares no cache line.
      RankSampler sampler(shared);
      const std::int64_t begin = num_units * worker / num_workers;
      const std::int64_t end = num_units * (worker + 1) / num_workers;
      int current_group = -1;
      for (std::int64_t unit = begin; unit < end; ++unit) {
        const auto g = static_cast<int>(unit / ep);
        EpGroupTraffic& group = traffic.groups[to_size(g)];
        if (g != current_group) {
          sampler.set_group(group);
          current_group = g;
        }
        sampler.sample_rank(group, g, static_cast<int>(unit % ep));
      }
      tokens_per_expert[to_size(worker)] = sampler.tokens_per_expert();
    } catch (...) {  // std::bad_alloc: rethrown on the calling thread rather than terminating
      errors[to_size(worker)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (int worker = 1; worker < num_workers; ++worker) threads.emplace_back(run, worker);
  run(0);
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }

  traffic.tokens_per_expert.assign(to_size(options.num_experts), 0);
  for (const auto& counts : tokens_per_expert) {
    for (std::size_t e = 0; e < counts.size(); ++e) traffic.tokens_per_expert[e] += counts[e];
  }
  return traffic;
}

}  // namespace moesim::workloads
