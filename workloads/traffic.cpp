// Per-token sampling of one MoE layer's routing, folded into per-rank and per-node traffic counts.
//
// Theory of operation. Each pick of a token belongs to a pick class with a weight w_e per expert. Popularity
// routing (uniform, zipf, dirichlet, lognormal) has one class, whose weight is the popularity. hot:H:P has two,
// hot and cold, each weighing 1 on its members and 0 elsewhere; a token draws its hot count n_h first (one uniform,
// skipped when k P is an integer) and makes its n_h hot picks, then its cold ones. A pick takes expert e of its
// class with probability w_e / (sum of w over the class's eligible experts), the Plackett-Luce step. An expert is
// eligible if the token has not picked it yet and it respects the limits: once the token has experts on node_limit
// distinct nodes, it must sit on one of those nodes; once on device_limit distinct ranks, on one of those ranks.
// So a token passes through up to three stages, and each pick is drawn by rejection from a proposal that is cheap
// to sample and covers the stage's eligible experts with their weight:
//   - free (no limit reached): the class weight itself, from a Walker alias table over the class's members;
//   - node limit reached: a touched node with probability proportional to its class mass, then an expert from
//     that node's alias table for the class (a pick may still open a new rank on a touched node);
//   - device limit reached: a touched rank by its class mass, then an expert from that rank's alias table. This
//     stage is final (the touched ranks lie on touched nodes, so the node limit cannot bind any more).
// Experts off the touched nodes (ranks) are never proposed, so the draw does not spin through the (often ~90%)
// ineligible mass. A proposal that was already picked, or that fell on a touched unit without members of the class,
// is redrawn. Rejection keeps the law exact: an accepted expert has probability proportional to w_e among the
// eligible ones. When the eligible share of the proposal is small (strong skew once the hot experts are taken)
// redraws pile up, so after kMaxRedraws consecutive rejections the token switches to an exact inverse-CDF scan over
// its eligible experts, for this and its remaining picks of the class (its eligible set only shrinks). Both methods
// sample the same conditional law, so the switch costs no accuracy, and extreme skew never loops for long.
//
// Validation guarantees that a pick never finds its class's eligible set empty: the limits' units must hold num_topk
// experts (the fewest experts that node_limit nodes, or device_limit ranks, can hold), and for hot routing the
// units a token can be confined to must hold its hot picks and then its cold ones (validate_hot_limit).
//
// Invariants the counts satisfy (tests check them): per source, the copies row sums to tokens_per_rank x
// num_topk; tokens_to_rank <= copies_to_rank entrywise, and equal when every rank holds one expert (no token
// picks an expert twice); tokens_to_node <= copies_to_node; per token, at most node_limit nodes and device_limit
// ranks are touched.
//
// Cost: one alias draw per proposal in the free stage, two at a limit (unit, then expert), and a token makes
// num_topk / acceptance proposals, where acceptance is the unpicked share of the proposal's mass. Uniform and hot
// routing accept nearly every proposal; under strong skew most proposals hit the token's own hot experts (zipf:2
// costs about six times as much as uniform), and kMaxRedraws caps the waste. Nothing is allocated per token:
// "already picked", "rank touched" and "node touched" are stamps compared with a per-token counter, so nothing is
// cleared between tokens, and a rank's copies are counted per expert and folded into its rows once. Ranks are split
// over threads; each rank draws from Rng(seed, hash(group, rank)) and writes only its own matrix rows, and each
// thread's expert counts are summed afterwards, so the result does not depend on the thread count.
//
// Measured on the 2-core development machine (Release, both cores), 2,048 ranks x 4,096 tokens, top-8 of 256
// experts, node limit 4 on 8-GPU nodes, seconds with EP 256 / EP 64:
//   uniform 0.41 / 0.37, zipf:1 0.94 / 0.58, zipf:2 2.8 / 2.1, dirichlet:1 0.56 / 0.40, dirichlet:0.3 0.72 / 0.43,
//   lognormal:1 0.53 / 0.39, lognormal:3 0.83 / 0.47, hot:16:0.5 0.39 / 0.40.
// A device limit of 6 ranks (EP 64) brings them to 0.51 uniform, 0.93 zipf:1, 0.75 dirichlet:0.3, 0.77 lognormal:3
// and 0.49 hot:16:0.5: most tokens reach the limit, and its proposals meet the token's own picks often. Scanning
// the (24) experts of the touched ranks, or weighting the ranks by their unpicked mass, measured slower still.
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
constexpr int kNoLimit = std::numeric_limits<int>::max();

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

// Experts of one pick class, grouped by a unit (rank or node): the members on unit u are
// order[begin[u], begin[u + 1]) in ascending expert order, with their alias table at the same positions of `alias`
// and their total weight mass[u].
struct UnitTables {
  std::vector<int> begin;
  std::vector<int> order;
  std::vector<AliasColumn> alias;
  std::vector<double> mass;

  void build(const std::vector<double>& weight, const std::vector<int>& members, const std::vector<int>& unit_of_expert,
             int num_units) {
    begin.assign(to_size(num_units) + 1, 0);
    mass.assign(to_size(num_units), 0.0);
    order.resize(members.size());
    alias.resize(members.size());
    for (const int e : members) ++begin[to_size(unit_of_expert[to_size(e)]) + 1];
    for (int u = 0; u < num_units; ++u) begin[to_size(u) + 1] += begin[to_size(u)];
    std::vector<int> next(begin.begin(), begin.end() - 1);
    for (const int e : members) order[to_size(next[to_size(unit_of_expert[to_size(e)])]++)] = e;
    std::vector<double> weights(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) weights[i] = weight[to_size(order[i])];
    for (int u = 0; u < num_units; ++u) {
      const int first = begin[to_size(u)];
      const int count = begin[to_size(u) + 1] - first;
      for (int i = first; i < first + count; ++i) mass[to_size(u)] += weights[to_size(i)];
      build_alias(order.data() + first, weights.data() + first, count, alias.data() + first);
    }
  }
};

// A pick class: its weight by expert (0 off the class), its members (ascending), their alias table, and the same
// grouped by EP rank (the rank layout is the same in every group; the node layout is per group, in RankSampler).
struct PickClass {
  std::vector<double> weight;
  std::vector<int> members;
  std::vector<AliasColumn> alias;
  UnitTables by_rank;
};

// k P, rounded to the nearest integer when it is one up to rounding (0.3 x 10 is 3.0000000000000004 in doubles, and
// must not allow a fourth hot pick).
double expected_hot_picks(int num_topk, double hot_share) {
  const double x = num_topk * hot_share;
  const double nearest = std::round(x);
  return std::abs(x - nearest) <= 1e-9 * std::max(1.0, x) ? nearest : x;
}

struct SharedInputs {
  const TrafficOptions& options;
  std::vector<PickClass> classes;  // [0] only, or [0] hot and [1] cold
  int experts_per_rank = 0;
  std::vector<int> rank_of_expert;
  bool is_hot = false;
  int min_hot_picks = 0;      // floor(k P)
  double extra_hot_odds = 0;  // frac(k P): the probability of one more hot pick
};

// The scan's candidates at each stage.
enum class Stage { kFree, kNodeLimit, kDeviceLimit };

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
        node_of_expert_(to_size(num_experts_), 0),
        node_tables_(shared.classes.size()),
        candidates_(to_size(num_experts_), 0),
        touched_nodes_(to_size(num_topk_) + 1, 0),
        touched_ranks_(to_size(num_topk_) + 1, 0),
        cumulative_mass_(to_size(num_topk_) + 2, 0.0),
        slot_alias_(to_size(num_topk_) + 1, nullptr),
        slot_count_(to_size(num_topk_) + 1, 0) {
    const int limit = shared.options.routing.device_limit;
    device_limit_ = limit > 0 && limit < shared.options.ep ? limit : kNoLimit;
  }

  // Lays out the experts of a group by node: who lives where, and per class each node's mass and alias table.
  void set_group(const EpGroupTraffic& group) {
    const int limit = shared_.options.routing.node_limit;
    node_limit_ = limit > 0 && limit < group.num_nodes ? limit : kNoLimit;
    for (int e = 0; e < num_experts_; ++e) {
      node_of_expert_[to_size(e)] = group.node_of_rank[to_size(shared_.rank_of_expert[to_size(e)])];
    }
    for (std::size_t c = 0; c < shared_.classes.size(); ++c) {
      node_tables_[c].build(shared_.classes[c].weight, shared_.classes[c].members, node_of_expert_, group.num_nodes);
    }
  }

  void sample_rank(EpGroupTraffic& group, int group_idx, int rank_idx) {
    // The hot loop reads everything through locals: the compiler cannot prove that the stores into the count
    // rows leave the sampler's members alone, and would reload them after every store.
    const auto num_nodes = to_size(group.num_nodes);
    std::int64_t* const tokens_to_rank = group.tokens_to_rank.data() + to_size(rank_idx) * to_size(shared_.options.ep);
    std::int64_t* const tokens_to_node = group.tokens_to_node.data() + to_size(rank_idx) * num_nodes;
    const int* const rank_of_expert = shared_.rank_of_expert.data();
    const int* const node_of_expert = node_of_expert_.data();
    std::uint32_t* const expert_mark = expert_mark_.data();
    std::uint32_t* const rank_mark = rank_mark_.data();
    std::uint32_t* const node_mark = node_mark_.data();
    std::int64_t* const expert_count = expert_count_.data();
    int* const touched_nodes = touched_nodes_.data();
    int* const touched_ranks = touched_ranks_.data();
    double* const cumulative = cumulative_mass_.data();         // [t]: class mass of the first t touched units
    const AliasColumn** const slot_alias = slot_alias_.data();  // by touched slot, at a limit
    int* const slot_count = slot_count_.data();
    const int num_topk = num_topk_;
    const int node_limit = node_limit_;
    const int device_limit = device_limit_;
    const bool is_hot = shared_.is_hot;
    const int min_hot_picks = shared_.min_hot_picks;
    const double extra_hot_odds = shared_.extra_hot_odds;
    const std::int64_t num_tokens = shared_.options.tokens_per_rank;

    // The first class's alias table, and the current class's (switched once per hot token, from hot to cold). Plain
    // locals: the free stage reads them on every proposal.
    const AliasColumn* const first_alias = shared_.classes[0].alias.data();
    const auto first_num_members = static_cast<int>(shared_.classes[0].members.size());
    const PickClass& second = shared_.classes.back();
    // Loads the touched units' class masses and alias tables into the slots; returns the total mass.
    auto load_slots = [&](const UnitTables& tables, const int* units, int num_units) {
      cumulative[0] = 0.0;
      for (int t = 0; t < num_units; ++t) {
        const auto u = to_size(units[t]);
        cumulative[t + 1] = cumulative[t] + tables.mass[u];
        slot_alias[t] = tables.alias.data() + tables.begin[u];
        slot_count[t] = tables.begin[u + 1] - tables.begin[u];
      }
      return cumulative[num_units];
    };

    Rng rng(shared_.options.seed,
            hash_combine(static_cast<std::uint64_t>(group_idx), static_cast<std::uint64_t>(rank_idx)));
    // At a limit: a touched unit by its class mass (its slot is the number of cumulative masses at or below u,
    // counted without branches against `bounds` when given, for up to 4 units), then an expert of it from the
    // unit's alias table, redrawn while already picked. -1 when kMaxRedraws proposals all failed.
    auto propose_at_limit = [&](std::uint32_t stamp, int num_slots, double total, const double* bounds) {
      for (int attempt = 0; attempt <= kMaxRedraws; ++attempt) {
        const double u = rng.uniform() * total;
        int slot = 0;
        if (bounds != nullptr) {
          slot = (u >= bounds[1] ? 1 : 0) + (u >= bounds[2] ? 1 : 0) + (u >= bounds[3] ? 1 : 0);
        } else {
          for (int t = 1; t < num_slots; ++t) slot += u >= cumulative[t] ? 1 : 0;
        }
        slot = std::min(slot, num_slots - 1);  // u == total by rounding
        if (slot_count[slot] == 0) continue;   // a unit without members of the class, reached only by rounding
        const int proposal = draw_alias(slot_alias[slot], slot_count[slot], rng);
        if (expert_mark[proposal] != stamp) return proposal;
      }
      return -1;
    };
    for (std::int64_t token_idx = 0; token_idx < num_tokens; ++token_idx) {
      const std::uint32_t stamp = next_stamp();
      // Picks before the class switch: all of them for popularity routing, n_h for hot routing.
      int num_first = num_topk;
      if (is_hot) num_first = min_hot_picks + (extra_hot_odds > 0.0 && rng.uniform() < extra_hot_odds ? 1 : 0);
      int class_idx = 0;
      const AliasColumn* alias = first_alias;
      int num_members = first_num_members;
      int num_nodes_touched = 0;
      int num_ranks_touched = 0;
      bool is_exact = false;  // set when rejection failed kMaxRedraws times: scan for the remaining picks
      int k = 0;
      // Free stage: propose from the class's whole weight.
      for (; k < num_topk && num_nodes_touched < node_limit && num_ranks_touched < device_limit; ++k) {
        if (k == num_first) {  // hot routing only: from hot to cold
          class_idx = 1;
          alias = second.alias.data();
          num_members = static_cast<int>(second.members.size());
          is_exact = false;
        }
        int e = -1;
        for (int attempt = 0; !is_exact && attempt <= kMaxRedraws; ++attempt) {
          const int proposal = draw_alias(alias, num_members, rng);
          if (expert_mark[proposal] != stamp) {
            e = proposal;
            break;
          }
        }
        if (e < 0) {
          is_exact = true;
          e = draw_by_scan(rng, stamp, Stage::kFree, class_idx, 0);
        }
        expert_mark[e] = stamp;
        ++expert_count[e];
        // Branch-free: whether a pick opens a new rank or node is a coin flip the predictor cannot learn. The
        // slot is written always and kept only if the unit is new (it is otherwise the next free one).
        const int rank = rank_of_expert[e];
        const int is_new_rank = rank_mark[rank] != stamp ? 1 : 0;
        rank_mark[rank] = stamp;
        tokens_to_rank[rank] += is_new_rank;
        touched_ranks[num_ranks_touched] = rank;
        num_ranks_touched += is_new_rank;
        const int node = node_of_expert[e];
        const int is_new_node = node_mark[node] != stamp ? 1 : 0;
        node_mark[node] = stamp;
        tokens_to_node[node] += is_new_node;
        touched_nodes[num_nodes_touched] = node;
        num_nodes_touched += is_new_node;
      }

      // Node limit reached: propose a touched node by its mass, then an expert of it from the node's alias table.
      // No new node can be touched from here on, but a new rank of a touched node can.
      if (k < num_topk && num_ranks_touched < device_limit) {
        double total = 0.0;
        // The slot is the number of cumulative masses at or below u. Up to 4 slots (node limits are small:
        // DeepSeek-V3 uses 4) it is counted without branches; the padding never counts, and the clamp absorbs
        // u == total.
        const bool is_small = num_nodes_touched <= 4;
        double bound[4] = {0.0, kNever, kNever, kNever};
        auto load_nodes = [&] {
          total = load_slots(node_tables_[to_size(class_idx)], touched_nodes, num_nodes_touched);
          for (int t = 1; t < 4; ++t) bound[t] = num_nodes_touched > t ? cumulative[t] : kNever;
        };
        load_nodes();
        for (; k < num_topk && num_ranks_touched < device_limit; ++k) {
          if (k == num_first) {
            class_idx = 1;
            is_exact = false;
            load_nodes();
          }
          int e = is_exact ? -1 : propose_at_limit(stamp, num_nodes_touched, total, is_small ? bound : nullptr);
          if (e < 0) {
            is_exact = true;
            e = draw_by_scan(rng, stamp, Stage::kNodeLimit, class_idx, num_nodes_touched);
          }
          expert_mark[e] = stamp;
          ++expert_count[e];
          const int rank = rank_of_expert[e];
          const int is_new_rank = rank_mark[rank] != stamp ? 1 : 0;
          rank_mark[rank] = stamp;
          tokens_to_rank[rank] += is_new_rank;
          touched_ranks[num_ranks_touched] = rank;
          num_ranks_touched += is_new_rank;
        }
      }

      // Device limit reached: propose a touched rank by its mass, then an expert of it. Touched ranks lie on
      // touched nodes, so nothing new is touched from here on.
      if (k < num_topk) {
        double total = load_slots(shared_.classes[to_size(class_idx)].by_rank, touched_ranks, num_ranks_touched);
        for (; k < num_topk; ++k) {
          if (k == num_first) {
            class_idx = 1;
            is_exact = false;
            total = load_slots(second.by_rank, touched_ranks, num_ranks_touched);
          }
          int e = is_exact ? -1 : propose_at_limit(stamp, num_ranks_touched, total, nullptr);
          if (e < 0) {
            is_exact = true;
            e = draw_by_scan(rng, stamp, Stage::kDeviceLimit, class_idx, num_ranks_touched);
          }
          expert_mark[e] = stamp;
          ++expert_count[e];
        }
      }
    }

    std::int64_t* const copies_to_rank = group.copies_to_rank.data() + to_size(rank_idx) * to_size(shared_.options.ep);
    std::int64_t* const copies_to_node = group.copies_to_node.data() + to_size(rank_idx) * num_nodes;
    for (int e = 0; e < num_experts_; ++e) {
      copies_to_rank[rank_of_expert[e]] += expert_count[e];
      copies_to_node[node_of_expert[e]] += expert_count[e];
      tokens_per_expert_[to_size(e)] += expert_count[e];
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

  // Inverse CDF over every eligible expert of the class (unpicked; on a touched node or rank at a limit), summed
  // afresh in a fixed order: exact whatever the skew. Kept out of line so that the hot loop stays small.
  [[gnu::noinline]] int draw_by_scan(Rng& rng, std::uint32_t stamp, Stage stage, int class_idx, int num_touched) {
    const PickClass& pick_class = shared_.classes[to_size(class_idx)];
    const double* w = pick_class.weight.data();
    int num_candidates = 0;
    double total = 0.0;
    auto consider = [&](int e) {
      if (expert_mark_[to_size(e)] == stamp) return;
      candidates_[to_size(num_candidates++)] = e;
      total += w[e];
    };
    auto consider_units = [&](const UnitTables& tables, const std::vector<int>& touched) {
      for (int t = 0; t < num_touched; ++t) {
        const auto unit = to_size(touched[to_size(t)]);
        for (int i = tables.begin[unit]; i < tables.begin[unit + 1]; ++i) consider(tables.order[to_size(i)]);
      }
    };
    if (stage == Stage::kNodeLimit) {
      consider_units(node_tables_[to_size(class_idx)], touched_nodes_);
    } else if (stage == Stage::kDeviceLimit) {
      consider_units(pick_class.by_rank, touched_ranks_);
    } else {
      for (const int e : pick_class.members) consider(e);
    }
    if (num_candidates == 0)
      throw std::logic_error("routing: a token ran out of eligible experts; validation missed it");
    // Only popularities that underflowed to zero (zipf with a huge exponent) can leave no mass: those experts are
    // then equally (un)likely.
    if (!(total > 0.0)) return candidates_[rng.below(static_cast<std::uint64_t>(num_candidates))];
    double u = rng.uniform() * total;
    int last_positive = candidates_[0];
    for (int i = 0; i < num_candidates; ++i) {
      const int e = candidates_[to_size(i)];
      if (!(w[e] > 0.0)) continue;
      last_positive = e;
      u -= w[e];
      if (u < 0.0) return e;
    }
    return last_positive;  // u ran past the end by rounding
  }

  const SharedInputs& shared_;
  const int num_experts_;
  const int num_topk_;
  int node_limit_ = kNoLimit;    // for the current group; kNoLimit when it cannot bind
  int device_limit_ = kNoLimit;  // kNoLimit when it cannot bind
  std::uint32_t stamp_ = 0;
  // 32-bit marks cannot alias the 64-bit counters.
  std::vector<std::uint32_t> expert_mark_;
  std::vector<std::uint32_t> rank_mark_;
  std::vector<std::uint32_t> node_mark_;  // a group has at most ep nodes
  std::vector<std::int64_t> expert_count_;
  std::vector<std::int64_t> tokens_per_expert_;
  std::vector<int> node_of_expert_;      // in the current group
  std::vector<UnitTables> node_tables_;  // per class, in the current group
  std::vector<int> candidates_;
  // The current token's nodes and ranks in the order it touched them.
  std::vector<int> touched_nodes_;
  std::vector<int> touched_ranks_;
  // At a limit: the class mass of the first t touched units at [t] ([0] = 0), each unit's alias table and count.
  std::vector<double> cumulative_mass_;
  std::vector<const AliasColumn*> slot_alias_;
  std::vector<int> slot_count_;
};

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument(message);
}

// "hot:16:0.5", without the limits.
std::string distribution_of(RoutingSpec spec) {
  spec.node_limit = 0;
  spec.device_limit = 0;
  return spec.describe();
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
  if (o.routing.device_limit < 0) fail("device_limit: must be >= 0, got " + std::to_string(o.routing.device_limit));
  if (o.routing.kind == RoutingSpec::Kind::kZipf &&
      !(std::isfinite(o.routing.zipf_exponent) && o.routing.zipf_exponent > 0.0)) {
    fail("routing: zipf exponent must be finite and > 0, got " + std::to_string(o.routing.zipf_exponent));
  }
  if (o.routing.kind == RoutingSpec::Kind::kHot) {
    const RoutingSpec& r = o.routing;
    const std::string spec = distribution_of(r);
    if (r.hot_experts < 1 || r.hot_experts >= o.num_experts) {
      fail("routing: " + spec + ": H must be >= 1 and < num_experts " + std::to_string(o.num_experts));
    }
    if (!(r.hot_share > 0.0 && r.hot_share < 1.0)) fail("routing: " + spec + ": P must be in (0, 1)");
    // Each token picks at most ceil(k P) hot and k - floor(k P) cold experts, without replacement.
    const double hot_picks = expected_hot_picks(o.num_topk, r.hot_share);
    const std::string k = std::to_string(o.num_topk);
    if (hot_picks > r.hot_experts) {
      fail("routing: " + spec + ": P must be <= H / num_topk = " + std::to_string(r.hot_experts) + " / " + k +
           " (a token cannot pick more than H distinct hot experts)");
    }
    if (o.num_topk - hot_picks > o.num_experts - r.hot_experts) {
      fail("routing: " + spec +
           ": 1 - P must be <= (E - H) / num_topk = " + std::to_string(o.num_experts - r.hot_experts) + " / " + k +
           " (a token cannot pick more than E - H distinct cold experts)");
    }
  }
}

// The smallest `count` values of `values` added up (all of them if there are fewer).
int sum_of_smallest(std::vector<int> values, int count) {
  std::sort(values.begin(), values.end());
  int total = 0;
  for (std::size_t i = 0; i < values.size() && i < to_size(count); ++i) total += values[i];
  return total;
}

// A token limited to `limit` units (nodes or ranks) can always complete its top-k only if even the `limit` units
// with the fewest experts hold num_topk experts between them. Popularity routing only: hot routing needs more.
void validate_limit(const std::vector<int>& experts_on_unit, int limit, const TrafficOptions& o,
                    const std::string& what, const std::string& remedy) {
  const int reachable = sum_of_smallest(experts_on_unit, limit);
  if (reachable < o.num_topk) {
    fail(what + " may hold only " + std::to_string(reachable) + " experts (" + std::to_string(o.num_experts / o.ep) +
         " per rank), fewer than num_topk " + std::to_string(o.num_topk) + "; " + remedy + " or lower ep");
  }
}

[[noreturn]] void fail_cold_bound(const std::string& what, const std::string& context, const std::string& remedy,
                                  int reachable, int num_cold) {
  fail(what + " may hold only " + std::to_string(reachable) + " cold experts" + context + ", fewer than the " +
       std::to_string(num_cold) + " cold picks a token can make; " + remedy + " or lower P");
}

// hot:H:P under a limit of `limit` units (nodes or ranks) with hot_on[u] hot and cold_on[u] cold experts on unit u.
// A token is stuck only if it reached the limit and its class has nothing left on the units it touched; the bounds
// below are the fewest experts of the class those units can hold, so passing them means no token is ever stuck.
//   - Hot picks come first, so every touched unit holds a hot expert: the `limit` smallest non-zero hot counts must
//     reach the most hot picks a token makes, ceil(k P) (unless no more than `limit` units hold hot experts).
//   - Then the cold picks, k - n_h of them: a unit touched by a cold pick holds a cold expert, and units without
//     cold experts can only have been touched by one of the n_h hot picks. So the bound is the sum of the
//     limit - min(n_h, units without cold experts) smallest non-zero cold counts, for n_h = floor(k P) and ceil(k P).
// The bounds are tight where hot experts are spread thinly (one per unit): a device limit below ceil(k P) then
// cannot work, whatever the sampler does.
void validate_hot_limit(const std::vector<int>& hot_on, const std::vector<int>& cold_on, int limit,
                        const TrafficOptions& o, const std::string& what, const std::string& remedy) {
  const auto num_units = static_cast<int>(hot_on.size());
  const double hot_picks = expected_hot_picks(o.num_topk, o.routing.hot_share);
  const auto min_hot = static_cast<int>(std::floor(hot_picks));
  const auto max_hot = static_cast<int>(std::ceil(hot_picks));
  const std::string context = " of " + distribution_of(o.routing) + " (hot experts drawn from seed " +
                              std::to_string(o.seed) + ", num_topk " + std::to_string(o.num_topk) + ")";
  std::vector<int> positive_hot;
  std::vector<int> positive_cold;
  int num_without_cold = 0;
  for (int u = 0; u < num_units; ++u) {
    if (hot_on[to_size(u)] > 0) positive_hot.push_back(hot_on[to_size(u)]);
    if (cold_on[to_size(u)] > 0) {
      positive_cold.push_back(cold_on[to_size(u)]);
    } else {
      ++num_without_cold;
    }
  }
  if (max_hot > 0 && static_cast<int>(positive_hot.size()) > limit) {
    const int reachable = sum_of_smallest(positive_hot, limit);
    if (reachable < max_hot) {
      fail(what + " may hold only " + std::to_string(reachable) + " hot experts" + context + ", fewer than the " +
           std::to_string(max_hot) + " hot picks a token can make; " + remedy + " or choose more hot experts");
    }
  }
  // The cold bound is checked for both hot counts: floor(k P) leaves more cold picks, ceil(k P) may use up more
  // units without cold experts.
  for (const int num_hot : {min_hot, max_hot}) {
    const int num_cold = o.num_topk - num_hot;
    const int reachable = sum_of_smallest(positive_cold, limit - std::min({num_hot, num_without_cold, limit}));
    if (num_cold > 0 && reachable < num_cold) {
      fail_cold_bound(what, context, remedy, reachable, num_cold);
    }
  }
}

// Counts, per unit, the experts of the whole layout and (hot routing) the hot and cold ones.
struct UnitCounts {
  std::vector<int> experts;
  std::vector<int> hot;
  std::vector<int> cold;
};

UnitCounts count_per_unit(const std::vector<int>& unit_of_expert, int num_units,
                          const std::vector<double>* hot_weight) {
  UnitCounts counts{std::vector<int>(to_size(num_units), 0), std::vector<int>(to_size(num_units), 0),
                    std::vector<int>(to_size(num_units), 0)};
  for (std::size_t e = 0; e < unit_of_expert.size(); ++e) {
    const auto u = to_size(unit_of_expert[e]);
    ++counts.experts[u];
    if (hot_weight) ++((*hot_weight)[e] > 0.0 ? counts.hot : counts.cold)[u];
  }
  return counts;
}

// Checks a limit on `num_units` units (expert e on unit_of_expert[e]); `what` names the limit and its units.
void validate_unit_limit(const std::vector<int>& unit_of_expert, int num_units, int limit, const SharedInputs& shared,
                         const std::string& what, const std::string& remedy) {
  if (limit == 0 || num_units <= limit) return;  // a limit the token cannot reach never binds
  const UnitCounts counts =
      count_per_unit(unit_of_expert, num_units, shared.is_hot ? &shared.classes[0].weight : nullptr);
  if (shared.is_hot) {
    validate_hot_limit(counts.hot, counts.cold, limit, shared.options, what, remedy);
  } else {
    validate_limit(counts.experts, limit, shared.options, what, remedy);
  }
}

}  // namespace

LayerTraffic build_layer_traffic(const topologies::Cluster& cluster, const TrafficOptions& options) {
  std::vector<int> node_of_gpu(to_size(cluster.num_gpus()));
  for (int g = 0; g < cluster.num_gpus(); ++g) node_of_gpu[g] = cluster.scale_up_unit_of(g);
  return build_layer_traffic(node_of_gpu, options);
}

const char* placement_name(Placement placement) {
  return placement == Placement::kRoundRobin ? "round-robin" : "contiguous";
}

Placement parse_placement(const std::string& name) {
  for (Placement p : {Placement::kContiguous, Placement::kRoundRobin}) {
    if (name == placement_name(p)) return p;
  }
  throw std::invalid_argument("placement: expected contiguous or round-robin, got '" + name + "'");
}

std::vector<int> place_experts(Placement placement, int num_experts, int ep) {
  std::vector<int> rank_of_expert(to_size(num_experts));
  const int experts_per_rank = num_experts / ep;
  for (int e = 0; e < num_experts; ++e) {
    rank_of_expert[to_size(e)] = placement == Placement::kRoundRobin ? e % ep : e / experts_per_rank;
  }
  return rank_of_expert;
}

LayerTraffic build_layer_traffic(const std::vector<int>& node_of_gpu, const TrafficOptions& options, int num_threads) {
  const int num_gpus = static_cast<int>(node_of_gpu.size());
  validate(num_gpus, options);
  const int ep = options.ep;
  const int experts_per_rank = options.num_experts / ep;
  const int num_groups = num_gpus / ep;
  const auto num_experts = to_size(options.num_experts);

  // The pick classes: the popularity, or hot and cold with weight 1 on their members.
  SharedInputs shared{options, {}, experts_per_rank, place_experts(options.placement, options.num_experts, ep), false,
                      0,       0.0};
  if (options.routing.kind == RoutingSpec::Kind::kHot) {
    shared.is_hot = true;
    const double hot_picks = expected_hot_picks(options.num_topk, options.routing.hot_share);
    shared.min_hot_picks = static_cast<int>(std::floor(hot_picks));
    shared.extra_hot_odds = hot_picks - std::floor(hot_picks);
    shared.classes.resize(2);
    shared.classes[0].weight.assign(num_experts, 0.0);
    for (const int e : hot_experts(options.routing, options.num_experts, options.seed)) {
      shared.classes[0].weight[to_size(e)] = 1.0;
    }
    shared.classes[1].weight.assign(num_experts, 0.0);
    for (std::size_t e = 0; e < num_experts; ++e) shared.classes[1].weight[e] = 1.0 - shared.classes[0].weight[e];
  } else {
    shared.classes.resize(1);
    shared.classes[0].weight = expert_popularity(options.routing, options.num_experts, options.seed);
  }
  for (PickClass& c : shared.classes) {
    for (std::size_t e = 0; e < num_experts; ++e) {
      // Popularity routing keeps zero-weight experts (zipf underflow) as members: they stay eligible, at weight 0.
      if (c.weight[e] > 0.0 || !shared.is_hot) c.members.push_back(static_cast<int>(e));
    }
    std::vector<double> member_weight(c.members.size());
    for (std::size_t i = 0; i < c.members.size(); ++i) member_weight[i] = c.weight[to_size(c.members[i])];
    c.alias.resize(c.members.size());
    build_alias(c.members.data(), member_weight.data(), static_cast<int>(c.members.size()), c.alias.data());
    c.by_rank.build(c.weight, c.members, shared.rank_of_expert, ep);
  }
  validate_unit_limit(shared.rank_of_expert, ep, options.routing.device_limit, shared,
                      "device_limit: " + std::to_string(options.routing.device_limit) + " ranks",
                      "raise the device limit");

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
    std::vector<int> node_of_expert(num_experts);
    for (std::size_t e = 0; e < num_experts; ++e) {
      node_of_expert[e] = group.node_of_rank[to_size(shared.rank_of_expert[e])];
    }
    validate_unit_limit(
        node_of_expert, group.num_nodes, options.routing.node_limit, shared,
        "node_limit: " + std::to_string(options.routing.node_limit) + " nodes of EP group " + std::to_string(g),
        "raise the node limit");
    const auto ep_size = to_size(ep);
    group.tokens_to_rank.assign(ep_size * ep_size, 0);
    group.copies_to_rank.assign(ep_size * ep_size, 0);
    group.tokens_to_node.assign(ep_size * to_size(group.num_nodes), 0);
    group.copies_to_node.assign(ep_size * to_size(group.num_nodes), 0);
  }

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
