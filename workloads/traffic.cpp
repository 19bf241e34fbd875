// Per-token routing of one MoE layer (sampled or replayed), capacity per source rank, folded into per-rank and
// per-node traffic counts. A rank's tokens go through three passes: the picks (each token's ranked experts, and
// their scores where needed, into a buffer), the capacity policy (which copies are kept, dropped or rerouted), and
// the fold (the kept copies into the rank's rows, deduplicated per token for tokens_to_rank/node).
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
// Picks are resumable: a token's state (its stage, touched units, picked mass, last score) lives in TokenState, so
// reroute can continue the ranked list past the top-k. Scores (top-down truncated Gumbels, routing.hpp) and the
// continued picks draw from streams of their own, so neither changes the top-k choices of any token.
// Group-limited routing has its own pick path: every group's two best experts first, then the chosen groups'
// ranked lists merged, each extended lazily by the same top-down construction within the group.
//
// Invariants the counts satisfy (tests check them): per source, the copies row sums to tokens_per_rank x
// num_topk minus the dropped copies (plus padding for padded); tokens_to_rank <= copies_to_rank entrywise, and
// equal when every rank holds one expert (no token picks an expert twice); tokens_to_node <= copies_to_node; per
// token, at most node_limit nodes and device_limit ranks are touched; with a capacity, no (rank, expert) gets
// more than C copies.
//
// Cost: one alias draw per proposal in the free stage, two at a limit (unit, then expert), and a token makes
// num_topk / acceptance proposals, where acceptance is the unpicked share of the proposal's mass. Uniform and hot
// routing accept nearly every proposal; under strong skew most proposals hit the token's own hot experts (zipf:2
// costs about six times as much as uniform), and kMaxRedraws caps the waste. Nothing is allocated per token:
// "already picked", "rank touched" and "node touched" are stamps compared with a per-token counter, so nothing is
// cleared between tokens, and a rank's copies are counted per expert and folded into its rows once. Ranks are split
// over threads; each rank draws from Rng(layer seed, hash(group, rank)) and writes only its own matrix rows, and
// each thread's expert counts are summed afterwards, so the result does not depend on the thread count.
//
// Measured on the 2-core development machine (Release, both cores), 2,048 ranks x 4,096 tokens, top-8 of 256
// experts, node limit 4 on 8-GPU nodes, seconds with EP 256 / EP 64, before the picks went through a buffer (the
// per-token passes cost about 35% more since; BENCHMARKS.md has both):
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
#include <memory>
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
constexpr std::uint64_t kStepStream = 0x747261696e737470ULL;   // "trainstp": token streams of later steps
constexpr std::uint64_t kBatchStream = 0x6d6963726f626174ULL;  // "microbat": token streams of later batches

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

// Used where no limit applies or no capacity binds.
constexpr std::int64_t kUnlimited = std::numeric_limits<std::int64_t>::max();

struct SharedInputs {
  const TrafficOptions& options;
  std::vector<PickClass> classes{};  // [0] only, or [0] hot and [1] cold
  std::vector<int> rank_of_expert;
  bool is_hot = false;
  int min_hot_picks = 0;             // floor(k P)
  double extra_hot_odds = 0;         // frac(k P): the probability of one more hot pick
  std::vector<double> class_mass{};  // total weight of each class
  // Group-limited routing: groups of group_size consecutive experts, their class-0 tables by group.
  int num_groups = 0;
  int group_size = 0;
  UnitTables by_group{};
  std::int64_t capacity = kUnlimited;  // per (source rank, expert)
  bool want_scores = false;            // the policy, the routing or the record needs router scores
  const RecordedLayer* replay = nullptr;
  int num_ep_groups = 0;
};

// The scan's candidates at each stage.
enum class Stage { kNone, kFree, kNodeLimit, kDeviceLimit };

// The top-down score of the next pick: the largest of the logits log w_e + Gumbel over candidates of total weight
// exp(log_mass), given that it lies below `bound` (the previous pick's score; +inf for a first pick). For a
// Gumbel of location mu truncated below b, inverting the CDF exp(-exp(mu - x)) at U F(b) gives
// x = mu - log(E + exp(mu - b)) with E = -log U exponential.
double next_score(Rng& rng, double log_mass, double bound) {
  const double u = (static_cast<double>(rng.next() >> 11) + 0.5) * 0x1.0p-53;  // (0, 1): E is finite and > 0
  const double e = -std::log(u);
  return bound == kNever ? log_mass - std::log(e) : log_mass - std::log(e + std::exp(log_mass - bound));
}

// The log of a remaining mass that rounding may have pushed to (or below) zero: such candidates are the least
// likely ones, so they get a score far below any other, not a NaN.
double log_remaining(double mass) {
  return mass > 0.0 ? std::log(mass) : -745.0;  // about log of the smallest double
}

// The state of the token whose picks are being drawn. Picks are drawn one at a time, so a token's ranked list can
// be continued after its top-k (reroute).
struct TokenState {
  std::uint32_t stamp = 0;
  int num_first = 0;  // picks of the first class: all of them, or the token's hot count n_h
  int num_picks = 0;
  int class_idx = 0;
  int num_nodes_touched = 0;
  int num_ranks_touched = 0;
  bool is_exact = false;        // rejection failed kMaxRedraws times: scan from here on (until the class changes)
  Stage loaded = Stage::kNone;  // the stage whose candidates are loaded into the slots
  double total = 0.0;           // class mass of the stage's candidates, picked ones included
  double picked_mass = 0.0;     // class mass of the picks made in the current class
  double last_score = kNever;   // score of the previous pick
  double bound[4] = {0.0, kNever, kNever, kNever};  // at a limit, up to 4 slots: the cumulative masses
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
        tokens_per_group_expert_(to_size(shared.num_ep_groups) * to_size(num_experts_), 0),
        routed_per_expert_(to_size(num_experts_), 0),
        dropped_per_expert_(to_size(num_experts_), 0),
        rerouted_per_expert_(to_size(num_experts_), 0),
        node_of_expert_(to_size(num_experts_), 0),
        node_tables_(shared.classes.size()),
        candidates_(to_size(num_experts_), 0),
        touched_nodes_(to_size(num_experts_) + 1, 0),
        touched_ranks_(to_size(num_experts_) + 1, 0),
        cumulative_mass_(to_size(num_experts_) + 2, 0.0),
        slot_alias_(to_size(num_experts_) + 1, nullptr),
        slot_count_(to_size(num_experts_) + 1, 0),
        fill_(to_size(num_experts_), 0) {
    const int limit = shared.options.routing.device_limit;
    device_limit_ = limit > 0 && limit < shared.options.ep ? limit : kNoLimit;
    if (shared.num_groups > 0) {
      group_expert_.resize(to_size(num_experts_));
      group_score_.resize(to_size(num_experts_));
      group_generated_.resize(to_size(shared.num_groups));
      group_used_.resize(to_size(shared.num_groups));
      group_generated_mass_.resize(to_size(shared.num_groups));
      group_rank_.resize(to_size(shared.num_groups));
    }
  }

  // Lays out the experts of a group by node: who lives where, and per class each node's mass and alias table.
  void set_group(const EpGroupTraffic& group) {
    const int limit = shared_.options.routing.node_limit;
    node_limit_ = limit > 0 && limit < group.num_nodes ? limit : kNoLimit;
    track_units_ = node_limit_ != kNoLimit || device_limit_ != kNoLimit;
    for (int e = 0; e < num_experts_; ++e) {
      node_of_expert_[to_size(e)] = group.node_of_rank[to_size(shared_.rank_of_expert[to_size(e)])];
    }
    for (std::size_t c = 0; c < shared_.classes.size(); ++c) {
      node_tables_[c].build(shared_.classes[c].weight, shared_.classes[c].members, node_of_expert_, group.num_nodes);
    }
  }

  // Routes the tokens of one rank (sampled or replayed), applies the capacity policy and adds the kept copies to
  // the group's rows of this rank. `unit` is the rank's global index (group * ep + rank).
  void sample_rank(LayerTraffic& traffic, EpGroupTraffic& group, int group_idx, int rank_idx) {
    const TrafficOptions& o = shared_.options;
    const std::int64_t num_tokens = o.tokens_per_rank;
    const auto num_slots = to_size(num_tokens) * to_size(num_topk_);
    choice_.resize(num_slots);
    kept_.resize(num_slots);
    if (shared_.want_scores) score_.resize(num_slots);
    const std::int64_t unit = std::int64_t{group_idx} * o.ep + rank_idx;
    const std::uint64_t stream =
        hash_combine(static_cast<std::uint64_t>(group_idx), static_cast<std::uint64_t>(rank_idx));
    Rng rng(token_seed_, stream);
    // Scores, and the picks past a token's top-k (reroute), draw from streams of their own, so turning scores on
    // or changing the policy never changes the top-k choices: every policy acts on the same draw.
    Rng score_rng(token_seed_, hash_combine(stream, kScoreStream));
    Rng continuation_rng(token_seed_, hash_combine(stream, kContinuationStream));
    rng_ = &rng;
    score_rng_ = &score_rng;
    continuation_rng_ = &continuation_rng;

    if (shared_.replay != nullptr) {
      copy_replayed(unit);
    } else {
      for (std::int64_t t = 0; t < num_tokens; ++t) {
        const std::size_t first = to_size(t) * to_size(num_topk_);
        begin_token();
        // Validation guarantees that every token can complete its top-k.
        draw_picks(num_topk_, choice_.data() + first, shared_.want_scores ? score_.data() + first : nullptr);
        if (shared_.options.capacity.policy == CapacityPolicy::kReroute) place_token(first);  // needs the stream
      }
    }
    if (o.record_picks) record(traffic.picks, unit);
    // Dropless keeps every choice: the copies are the choices.
    const bool is_dropless = shared_.capacity == kUnlimited;
    if (!is_dropless && shared_.options.capacity.policy != CapacityPolicy::kReroute) apply_capacity();
    fold(group, group_idx, rank_idx, is_dropless ? choice_ : kept_);
    if (is_dropless) {
      for (std::size_t e = 0; e < to_size(num_experts_); ++e) routed_per_expert_[e] = tokens_per_expert_[e];
    }
    std::fill(fill_.begin(), fill_.end(), 0);
    full_.clear();
  }

  void set_token_seed(std::uint64_t seed) { token_seed_ = seed; }
  const std::vector<std::int64_t>& tokens_per_expert() const { return tokens_per_expert_; }
  const std::vector<std::int64_t>& tokens_per_group_expert() const { return tokens_per_group_expert_; }
  const std::vector<std::int64_t>& routed_per_expert() const { return routed_per_expert_; }
  const std::vector<std::int64_t>& dropped_per_expert() const { return dropped_per_expert_; }
  const std::vector<std::int64_t>& rerouted_per_expert() const { return rerouted_per_expert_; }
  std::int64_t padded_slots() const { return padded_slots_; }
  std::int64_t tokens_all_dropped() const { return tokens_all_dropped_; }

 private:
  static constexpr std::uint64_t kScoreStream = 0x73636f7265732d31ULL;         // "scores-1"
  static constexpr std::uint64_t kContinuationStream = 0x636f6e74696e7565ULL;  // "continue"

  // Starts a token: a fresh stamp, and for hot routing its hot count (one uniform, skipped when k P is an integer).
  void begin_token() {
    token_ = TokenState{};
    token_.stamp = next_stamp();
    token_.num_first = num_topk_;
    if (shared_.is_hot) {
      token_.num_first =
          shared_.min_hot_picks + (shared_.extra_hot_odds > 0.0 && rng_->uniform() < shared_.extra_hot_odds ? 1 : 0);
    }
    if (shared_.num_groups > 0) choose_groups();
  }

  // The token's next expert in its ranked list (with its score when scores are on), or -1 when no eligible expert
  // is left (only a list continued past the top-k can run out).
  int next_pick(double* score) {
    std::int32_t expert = -1;
    float value = 0.0F;
    if (draw_picks(1, &expert, &value) == 0) return -1;
    *score = value;
    return expert;
  }

  // Draws up to `count` more experts of the current token's ranked list into out[0, count) (their scores into
  // scores[], when scores are on) and returns how many it drew: fewer only when no eligible expert is left, which
  // only a list continued past its top-k can meet. The state lives in locals while the picks are drawn: the
  // compiler cannot prove that the stores into the marks leave the members alone, and would reload them after
  // every store.
  int draw_picks(int count, std::int32_t* out, float* scores) {
    if (shared_.num_groups > 0) return draw_grouped_picks(count, out, scores);
    TokenState& t = token_;
    const int target = t.num_picks + count;
    const std::uint32_t stamp = t.stamp;
    std::uint32_t* const expert_mark = expert_mark_.data();
    std::uint32_t* const rank_mark = rank_mark_.data();
    std::uint32_t* const node_mark = node_mark_.data();
    int* const touched_ranks = touched_ranks_.data();
    int* const touched_nodes = touched_nodes_.data();
    const int* const rank_of_expert = shared_.rank_of_expert.data();
    const int* const node_of_expert = node_of_expert_.data();
    const bool track_units = track_units_;
    const bool want_scores = shared_.want_scores;
    const int node_limit = node_limit_;
    const int device_limit = device_limit_;
    Rng& rng = *rng_;
    // The hot state in scalars, written back on the way out.
    int num_picks = t.num_picks;
    int num_nodes = t.num_nodes_touched;
    int num_ranks = t.num_ranks_touched;
    int drawn = 0;
    auto save = [&] {
      t.num_picks = num_picks;
      t.num_nodes_touched = num_nodes;
      t.num_ranks_touched = num_ranks;
    };
    while (num_picks < target) {
      if (shared_.is_hot && t.class_idx == 0 && num_picks == t.num_first) {  // from hot to cold
        t.class_idx = 1;
        t.is_exact = false;
        t.picked_mass = 0.0;
        t.loaded = Stage::kNone;
      }
      const Stage stage = num_nodes < node_limit && num_ranks < device_limit ? Stage::kFree
                          : num_ranks < device_limit                         ? Stage::kNodeLimit
                                                                             : Stage::kDeviceLimit;
      if (stage != t.loaded) {
        save();
        load_stage(t, stage);
      }
      const PickClass& pick_class = shared_.classes[to_size(t.class_idx)];
      const AliasColumn* const alias = pick_class.alias.data();
      const auto num_members = static_cast<int>(pick_class.members.size());
      const double* const weight = pick_class.weight.data();
      // This class and stage last until the target, the class switch, or a pick that reaches a limit.
      const int stop = shared_.is_hot && t.class_idx == 0 ? std::min(target, t.num_first) : target;
      const bool at_node_limit = stage == Stage::kNodeLimit;
      const int num_slots = at_node_limit ? num_nodes : num_ranks;
      const bool is_small = at_node_limit && num_slots <= 4;
      bool is_exact = t.is_exact;
      while (num_picks < stop) {
        int e = -1;
        if (!is_exact) {
          if (stage == Stage::kFree) {
            for (int attempt = 0; attempt <= kMaxRedraws; ++attempt) {
              const int proposal = draw_alias(alias, num_members, rng);
              if (expert_mark[proposal] != stamp) {
                e = proposal;
                break;
              }
            }
          } else {
            e = propose_at_limit(t, num_slots, is_small);
          }
        }
        if (e < 0) {
          is_exact = true;
          t.is_exact = true;
          e = draw_by_scan(stamp, stage, t.class_idx, num_slots);
          if (e < 0) {
            save();
            return drawn;
          }
        }
        expert_mark[e] = stamp;
        ++num_picks;
        out[drawn] = e;
        if (want_scores) {
          t.last_score = next_score(*score_rng_, log_remaining(t.total - t.picked_mass), t.last_score);
          scores[drawn] = static_cast<float>(t.last_score);
          t.picked_mass += weight[e];
        }
        ++drawn;
        if (track_units) {
          // Branch-free: whether a pick opens a new rank or node is a coin flip the predictor cannot learn. The
          // slot is written always and kept only if the unit is new (it is otherwise the next free one).
          const int rank = rank_of_expert[e];
          const int is_new_rank = rank_mark[rank] != stamp ? 1 : 0;
          rank_mark[rank] = stamp;
          touched_ranks[num_ranks] = rank;
          num_ranks += is_new_rank;
          const int node = node_of_expert[e];
          const int is_new_node = node_mark[node] != stamp ? 1 : 0;
          node_mark[node] = stamp;
          touched_nodes[num_nodes] = node;
          num_nodes += is_new_node;
          // A pick that brings the token to a limit ends the stage.
          if (stage != Stage::kDeviceLimit && num_ranks >= device_limit) break;
          if (stage == Stage::kFree && num_nodes >= node_limit) break;
        }
      }
    }
    save();
    return drawn;
  }

  // Loads the candidates of a stage: the class's whole mass when free, the touched units' masses and alias tables
  // into the slots at a limit.
  void load_stage(TokenState& t, Stage stage) {
    t.loaded = stage;
    const auto c = to_size(t.class_idx);
    if (stage == Stage::kFree) {
      t.total = shared_.class_mass[c];
      return;
    }
    const bool at_node_limit = stage == Stage::kNodeLimit;
    const UnitTables& tables = at_node_limit ? node_tables_[c] : shared_.classes[c].by_rank;
    const int* units = at_node_limit ? touched_nodes_.data() : touched_ranks_.data();
    const int num_units = at_node_limit ? t.num_nodes_touched : t.num_ranks_touched;
    double* cumulative = cumulative_mass_.data();
    cumulative[0] = 0.0;
    for (int i = 0; i < num_units; ++i) {
      const auto u = to_size(units[i]);
      cumulative[i + 1] = cumulative[i] + tables.mass[u];
      slot_alias_[to_size(i)] = tables.alias.data() + tables.begin[u];
      slot_count_[to_size(i)] = tables.begin[u + 1] - tables.begin[u];
    }
    t.total = cumulative[num_units];
    // Up to 4 slots the slot of a draw is counted without branches against `bound`; the padding never counts.
    for (int i = 1; i < 4; ++i) t.bound[i] = num_units > i ? cumulative[i] : kNever;
  }

  // At a limit: a touched unit by its class mass (its slot is the number of cumulative masses at or below u), then
  // an expert of it from the unit's alias table, redrawn while already picked. -1 when kMaxRedraws proposals all
  // failed.
  int propose_at_limit(const TokenState& t, int num_slots, bool is_small) {
    const double* cumulative = cumulative_mass_.data();
    for (int attempt = 0; attempt <= kMaxRedraws; ++attempt) {
      const double u = rng_->uniform() * t.total;
      int slot = 0;
      if (is_small) {
        slot = (u >= t.bound[1] ? 1 : 0) + (u >= t.bound[2] ? 1 : 0) + (u >= t.bound[3] ? 1 : 0);
      } else {
        for (int i = 1; i < num_slots; ++i) slot += u >= cumulative[i] ? 1 : 0;
      }
      slot = std::min(slot, num_slots - 1);           // u == total by rounding
      if (slot_count_[to_size(slot)] == 0) continue;  // a unit without members of the class, reached only by rounding
      const int proposal = draw_alias(slot_alias_[to_size(slot)], slot_count_[to_size(slot)], *rng_);
      if (expert_mark_[to_size(proposal)] != t.stamp) return proposal;
    }
    return -1;
  }

  // Group-limited routing: every group's two best experts (top-down scores), the group_limit groups with the
  // highest sum of the two, in descending order of that sum (ties: lower group).
  void choose_groups() {
    const auto num_groups = to_size(shared_.num_groups);
    for (std::size_t g = 0; g < num_groups; ++g) {
      group_generated_[g] = 0;
      group_used_[g] = 0;
      group_generated_mass_[g] = 0.0;
      generate_in_group(static_cast<int>(g));
      if (shared_.group_size > 1) generate_in_group(static_cast<int>(g));
    }
    auto group_score = [&](std::size_t g) {
      const std::size_t first = g * to_size(shared_.group_size);
      return group_score_[first] + (shared_.group_size > 1 ? group_score_[first + 1] : 0.0);
    };
    for (std::size_t g = 0; g < num_groups; ++g) group_rank_[g] = static_cast<int>(g);
    std::partial_sort(group_rank_.begin(), group_rank_.begin() + shared_.options.routing.group_limit, group_rank_.end(),
                      [&](int a, int b) {
                        const double sa = group_score(to_size(a));
                        const double sb = group_score(to_size(b));
                        return sa > sb || (sa == sb && a < b);
                      });
  }

  // Draws the next-best expert of group g (by its class-0 weight among the group's experts not drawn yet) and its
  // score below the group's previous one. Returns false when the group has no expert left.
  bool generate_in_group(int g) {
    const auto gi = to_size(g);
    const int count = group_generated_[gi];
    if (count == shared_.group_size) return false;
    const UnitTables& tables = shared_.by_group;
    const int begin = tables.begin[gi];
    const std::size_t first = gi * to_size(shared_.group_size);
    int e = -1;
    for (int attempt = 0; attempt <= kMaxRedraws && e < 0; ++attempt) {
      const int proposal = draw_alias(tables.alias.data() + begin, shared_.group_size, *rng_);
      if (expert_mark_[to_size(proposal)] != token_.stamp) e = proposal;
    }
    const std::vector<double>& weight = shared_.classes[0].weight;
    if (e < 0) {  // exact inverse CDF over the group's experts not drawn yet (nor full, when rerouting)
      double total = 0.0;
      for (int i = begin; i < begin + shared_.group_size; ++i) {
        const int x = tables.order[to_size(i)];
        if (expert_mark_[to_size(x)] != token_.stamp) total += weight[to_size(x)];
      }
      double u = rng_->uniform() * total;
      for (int i = begin; i < begin + shared_.group_size; ++i) {
        const int x = tables.order[to_size(i)];
        if (expert_mark_[to_size(x)] == token_.stamp) continue;
        e = x;  // the last eligible one if u runs past the end by rounding, or if the mass is zero
        u -= weight[to_size(x)];
        if (u < 0.0) break;
      }
      if (e < 0) return false;  // only full experts are left (reroute)
    }
    const double bound = count == 0 ? kNever : group_score_[first + to_size(count) - 1];
    group_score_[first + to_size(count)] =
        next_score(*rng_, log_remaining(tables.mass[gi] - group_generated_mass_[gi]), bound);
    group_expert_[first + to_size(count)] = e;
    group_generated_mass_[gi] += weight[to_size(e)];
    ++group_generated_[gi];
    expert_mark_[to_size(e)] = token_.stamp;
    return true;
  }

  int draw_grouped_picks(int count, std::int32_t* out, float* scores) {
    int drawn = 0;
    for (double score = 0.0; drawn < count; ++drawn) {
      const int e = next_grouped_pick(&score);
      if (e < 0) break;
      out[drawn] = e;
      if (shared_.want_scores) scores[drawn] = static_cast<float>(score);
    }
    return drawn;
  }

  // The best not yet picked expert over the chosen groups: their ranked lists merged.
  int next_grouped_pick(double* score) {
    int best = -1;
    double best_score = -kNever;
    for (int i = 0; i < shared_.options.routing.group_limit; ++i) {
      const int g = group_rank_[to_size(i)];
      const auto gi = to_size(g);
      if (group_used_[gi] == group_generated_[gi] && !generate_in_group(g)) continue;
      const double s = group_score_[gi * to_size(shared_.group_size) + to_size(group_used_[gi])];
      if (best < 0 || s > best_score) {
        best = g;
        best_score = s;
      }
    }
    if (best < 0) return -1;
    const auto gi = to_size(best);
    *score = best_score;
    return group_expert_[gi * to_size(shared_.group_size) + to_size(group_used_[gi]++)];
  }

  // Replay: the rank's tokens are the layer's rows (unit T + t) mod N, in order.
  void copy_replayed(std::int64_t unit) {
    const RecordedLayer& layer = *shared_.replay;
    const auto k = to_size(num_topk_);
    const std::int64_t num_tokens = shared_.options.tokens_per_rank;
    for (std::int64_t t = 0; t < num_tokens; ++t) {
      const auto row = to_size((unit * num_tokens + t) % layer.num_tokens);
      std::copy_n(layer.experts.begin() + static_cast<std::ptrdiff_t>(row * k), k,
                  choice_.begin() + static_cast<std::ptrdiff_t>(to_size(t) * k));
      if (shared_.want_scores) {
        std::copy_n(layer.scores.begin() + static_cast<std::ptrdiff_t>(row * k), k,
                    score_.begin() + static_cast<std::ptrdiff_t>(to_size(t) * k));
      }
    }
  }

  void record(RecordedLayer& picks, std::int64_t unit) const {
    const std::size_t offset = to_size(unit * shared_.options.tokens_per_rank) * to_size(num_topk_);
    std::copy(choice_.begin(), choice_.end(), picks.experts.begin() + static_cast<std::ptrdiff_t>(offset));
    if (!picks.scores.empty()) {
      std::copy(score_.begin(), score_.end(), picks.scores.begin() + static_cast<std::ptrdiff_t>(offset));
    }
  }

  // reroute, while the token's list can still be continued: its choices in order, each kept if its expert has room;
  // then each overflowing one moves to the token's next-best expert with room, or is dropped when none is left.
  // The full experts are marked as already picked, so the continued list skips them: by the Plackett-Luce
  // property, the first expert with room in the continued list is a draw among the experts with room (within the
  // token's limits), so nothing is lost by never drawing the full ones, and each reroute costs one pick.
  void place_token(std::size_t first) {
    const std::int64_t capacity = shared_.capacity;
    bool has_overflow = false;
    for (int i = 0; i < num_topk_; ++i) {
      const auto e = to_size(choice_[first + to_size(i)]);
      ++routed_per_expert_[e];
      if (fill_[e] < capacity) {
        kept_[first + to_size(i)] = static_cast<std::int32_t>(e);
        if (++fill_[e] == capacity) full_.push_back(static_cast<int>(e));
      } else {
        kept_[first + to_size(i)] = kOverflow;
        has_overflow = true;
      }
    }
    if (!has_overflow) return;
    for (const int e : full_) expert_mark_[to_size(e)] = token_.stamp;
    Rng* const choices_rng = rng_;
    rng_ = continuation_rng_;
    for (int i = 0; i < num_topk_; ++i) {
      if (kept_[first + to_size(i)] != kOverflow) continue;
      double score = 0.0;
      int next = -1;
      do {  // never a full expert, except one a group drew before the marking (group-limited routing)
        next = next_pick(&score);
      } while (next >= 0 && fill_[to_size(next)] >= capacity);
      if (next >= 0) {
        if (++fill_[to_size(next)] == capacity) full_.push_back(next);
        ++rerouted_per_expert_[to_size(next)];
      } else {
        ++dropped_per_expert_[to_size(choice_[first + to_size(i)])];
      }
      kept_[first + to_size(i)] = next;
    }
    rng_ = choices_rng;
  }

  // Every policy but reroute, on the rank's choices: which copies are kept (kept_[i] = the expert, or -1).
  void apply_capacity() {
    const std::int64_t capacity = shared_.capacity;
    const std::size_t num_slots = choice_.size();
    const std::int32_t* const choice = choice_.data();
    std::int32_t* const kept = kept_.data();
    std::int64_t* const fill = fill_.data();
    std::int64_t* const routed = routed_per_expert_.data();
    if (shared_.options.capacity.policy == CapacityPolicy::kDropScore) {
      for (std::size_t i = 0; i < num_slots; ++i) {
        ++routed[choice[i]];
        ++fill[choice[i]];
        kept[i] = choice[i];
      }
      drop_lowest_scores();
      return;
    }
    // drop-position and padded: an expert keeps its first C copies in token order.
    std::int64_t* const dropped = dropped_per_expert_.data();
    for (std::size_t i = 0; i < num_slots; ++i) {
      const std::int32_t e = choice[i];
      ++routed[e];
      const bool fits = fill[e] < capacity;
      fill[e] += fits ? 1 : 0;
      dropped[e] += fits ? 0 : 1;
      kept[i] = fits ? e : -1;
    }
  }

  // drop-score: the copies of each overflowing expert, ordered by score (descending; ties: earlier token first);
  // those past the first C are dropped. fill_ holds each expert's copy count on entry. The copies are bucketed by
  // expert once (a counting sort of the slots), so the cost is linear in the rank's copies.
  void drop_lowest_scores() {
    const std::int64_t capacity = shared_.capacity;
    const auto num_experts = to_size(num_experts_);
    bucket_begin_.assign(num_experts + 1, 0);
    for (std::size_t e = 0; e < num_experts; ++e) bucket_begin_[e + 1] = bucket_begin_[e] + to_size(fill_[e]);
    by_score_.resize(choice_.size());
    std::vector<std::size_t>& next = bucket_next_;
    next.assign(bucket_begin_.begin(), bucket_begin_.end() - 1);
    for (std::size_t i = 0; i < choice_.size(); ++i) by_score_[next[to_size(choice_[i])]++] = i;
    const auto higher = [&](std::size_t a, std::size_t b) {
      return score_[a] > score_[b] || (score_[a] == score_[b] && a < b);
    };
    for (std::size_t e = 0; e < num_experts; ++e) {
      if (fill_[e] <= capacity) continue;
      const auto first = by_score_.begin() + static_cast<std::ptrdiff_t>(bucket_begin_[e]);
      const auto last = by_score_.begin() + static_cast<std::ptrdiff_t>(bucket_begin_[e + 1]);
      std::nth_element(first, first + capacity, last, higher);
      for (auto it = first + capacity; it != last; ++it) kept_[*it] = -1;
      dropped_per_expert_[e] += fill_[e] - capacity;
    }
  }

  // Adds the rank's kept copies to its rows: per destination rank and node, the tokens (one copy per rank or node)
  // and the copies (one per expert); with replicas, each expert's copies go to its replicas in turn.
  void fold(EpGroupTraffic& group, int group_idx, int rank_idx, const std::vector<std::int32_t>& copies) {
    const auto ep = to_size(shared_.options.ep);
    const auto num_nodes = to_size(group.num_nodes);
    std::int64_t* const tokens_to_rank = group.tokens_to_rank.data() + to_size(rank_idx) * ep;
    std::int64_t* const tokens_to_node = group.tokens_to_node.data() + to_size(rank_idx) * num_nodes;
    std::int64_t* const copies_to_rank = group.copies_to_rank.data() + to_size(rank_idx) * ep;
    std::int64_t* const copies_to_node = group.copies_to_node.data() + to_size(rank_idx) * num_nodes;
    const int* const rank_of_expert = shared_.rank_of_expert.data();
    const int* const node_of_rank = group.node_of_rank.data();
    const ExpertReplicas* const replicas = shared_.options.replicas;
    std::uint32_t* const rank_mark = rank_mark_.data();
    std::uint32_t* const node_mark = node_mark_.data();
    std::int64_t* const expert_count = expert_count_.data();
    const std::int32_t* kept = copies.data();
    const int k = num_topk_;
    const std::int64_t num_tokens = shared_.options.tokens_per_rank;
    for (std::int64_t t = 0; t < num_tokens; ++t, kept += k) {
      const std::uint32_t stamp = next_stamp();
      int num_kept = 0;
      for (int i = 0; i < k; ++i) {
        const int e = kept[i];
        if (e < 0) continue;
        ++num_kept;
        // With replicas, the rank's copies for e take the replicas in turn (expert_count[e] copies so far).
        const int rank = replicas == nullptr ? rank_of_expert[e] : replicas->rank_for(e, expert_count[e]);
        ++expert_count[e];
        if (replicas != nullptr) ++copies_to_rank[rank];
        // Branch-free: whether a copy opens a new rank or node is a coin flip the predictor cannot learn.
        tokens_to_rank[rank] += rank_mark[rank] != stamp ? 1 : 0;
        rank_mark[rank] = stamp;
        const int node = node_of_rank[rank];
        tokens_to_node[node] += node_mark[node] != stamp ? 1 : 0;
        node_mark[node] = stamp;
      }
      tokens_all_dropped_ += num_kept == 0 && k > 0 ? 1 : 0;
    }
    const bool is_padded = shared_.options.capacity.policy == CapacityPolicy::kPadded;
    std::int64_t* const group_count = tokens_per_group_expert_.data() + to_size(group_idx) * to_size(num_experts_);
    for (int e = 0; e < num_experts_; ++e) {
      const std::int64_t count = expert_count[e];
      tokens_per_expert_[to_size(e)] += count;
      group_count[e] += count;
      expert_count[e] = 0;
      if (replicas != nullptr) continue;  // counted per copy above
      // padded: every (rank, expert) buffer travels full, its empty slots as padding.
      const std::int64_t slots = is_padded ? shared_.capacity : count;
      padded_slots_ += slots - count;
      copies_to_rank[rank_of_expert[e]] += slots;
    }
    if (is_padded) {  // fixed per-expert buffers: nothing is deduplicated, every slot is a copy
      std::copy_n(copies_to_rank, ep, tokens_to_rank);
    }
    std::fill_n(copies_to_node, num_nodes, 0);
    for (std::size_t r = 0; r < ep; ++r) copies_to_node[node_of_rank[r]] += copies_to_rank[r];
    if (is_padded) std::copy_n(copies_to_node, num_nodes, tokens_to_node);
  }

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
  // afresh in a fixed order: exact whatever the skew. -1 when none is eligible. Kept out of line so that the hot
  // loop stays small.
  [[gnu::noinline]] int draw_by_scan(std::uint32_t stamp, Stage stage, int class_idx, int num_touched) {
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
    if (num_candidates == 0) return -1;
    // Only popularities that underflowed to zero (zipf with a huge exponent) can leave no mass: those experts are
    // then equally (un)likely.
    if (!(total > 0.0)) return candidates_[rng_->below(static_cast<std::uint64_t>(num_candidates))];
    double u = rng_->uniform() * total;
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

  static constexpr std::int32_t kOverflow = -2;  // reroute: a choice waiting for its next-best expert

  const SharedInputs& shared_;
  const int num_experts_;
  const int num_topk_;
  int node_limit_ = kNoLimit;    // for the current group; kNoLimit when it cannot bind
  int device_limit_ = kNoLimit;  // kNoLimit when it cannot bind
  bool track_units_ = true;      // a limit may bind: keep the touched ranks and nodes of each token
  std::uint64_t token_seed_ = 0;
  std::uint32_t stamp_ = 0;
  Rng* rng_ = nullptr;               // the current rank's picks
  Rng* score_rng_ = nullptr;         // and scores
  Rng* continuation_rng_ = nullptr;  // and picks past the top-k
  TokenState token_;
  // 32-bit marks cannot alias the 64-bit counters.
  std::vector<std::uint32_t> expert_mark_;
  std::vector<std::uint32_t> rank_mark_;
  std::vector<std::uint32_t> node_mark_;  // a group has at most ep nodes
  std::vector<std::int64_t> expert_count_;
  std::vector<std::int64_t> tokens_per_expert_;
  std::vector<std::int64_t> tokens_per_group_expert_;  // [group * E + expert]
  std::vector<std::int64_t> routed_per_expert_;
  std::vector<std::int64_t> dropped_per_expert_;
  std::vector<std::int64_t> rerouted_per_expert_;
  std::int64_t padded_slots_ = 0;
  std::int64_t tokens_all_dropped_ = 0;
  std::vector<int> node_of_expert_;      // in the current group
  std::vector<UnitTables> node_tables_;  // per class, in the current group
  std::vector<int> candidates_;
  // The current token's nodes and ranks in the order it touched them (a continued list may touch up to E).
  std::vector<int> touched_nodes_;
  std::vector<int> touched_ranks_;
  // At a limit: the class mass of the first t touched units at [t] ([0] = 0), each unit's alias table and count.
  std::vector<double> cumulative_mass_;
  std::vector<const AliasColumn*> slot_alias_;
  std::vector<int> slot_count_;
  // The current rank's tokens: choices (top-k, ranked), their scores, and what capacity kept.
  std::vector<std::int32_t> choice_;
  std::vector<float> score_;
  std::vector<std::int32_t> kept_;
  std::vector<std::int64_t> fill_;     // copies of the rank per expert so far
  std::vector<int> full_;              // reroute: experts the rank has filled
  std::vector<std::size_t> by_score_;  // drop-score: the rank's slots bucketed by expert
  std::vector<std::size_t> bucket_begin_;
  std::vector<std::size_t> bucket_next_;
  // Group-limited routing: per group, its experts drawn so far in descending score, how many the token used,
  // their mass, and the groups in the token's order.
  std::vector<int> group_expert_;
  std::vector<double> group_score_;
  std::vector<int> group_generated_;
  std::vector<int> group_used_;
  std::vector<double> group_generated_mass_;
  std::vector<int> group_rank_;
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

// Group-limited routing: G groups of E / G experts, of which g hold the token's top-k; the router's own selection,
// so neither the sequential limits nor the two-class hot routing combine with it.
void validate_groups(const TrafficOptions& o) {
  const RoutingSpec& r = o.routing;
  if (r.expert_groups == 0 && r.group_limit == 0) return;
  const std::string groups = std::to_string(r.expert_groups);
  if (r.expert_groups < 1 || o.num_experts % r.expert_groups != 0) {
    fail("expert_groups: must be >= 1 and divide num_experts " + std::to_string(o.num_experts) + ", got " + groups);
  }
  if (r.group_limit < 1 || r.group_limit > r.expert_groups) {
    fail("group_limit: must be in [1, expert_groups " + groups + "], got " + std::to_string(r.group_limit));
  }
  const int reachable = r.group_limit * (o.num_experts / r.expert_groups);
  if (reachable < o.num_topk) {
    fail("group_limit: " + std::to_string(r.group_limit) + " groups hold only " + std::to_string(reachable) +
         " experts, fewer than num_topk " + std::to_string(o.num_topk));
  }
  if (r.node_limit > 0 || r.device_limit > 0) {
    fail(
        "group_limit: cannot be combined with node_limit or device_limit (DeepSeek-V3 realises its node limit as "
        "the group limit: use groups that match the nodes instead)");
  }
  if (r.kind == RoutingSpec::Kind::kHot) fail("group_limit: cannot be combined with hot:H:P routing");
}

// What the capacity policy, a replayed file, replicas and biases need.
void validate_policy_and_sources(const TrafficOptions& o) {
  const CapacitySpec& c = o.capacity;
  if (!c.is_dropless()) {
    // Throws for a bad factor or minimum.
    (void)expert_capacity(o.tokens_per_rank, o.num_topk, o.num_experts, c.factor, c.min_capacity);
  }
  if (o.layer < 0) fail("layer: must be >= 0, got " + std::to_string(o.layer));
  if (o.step < 0) fail("step: must be >= 0, got " + std::to_string(o.step));
  if (o.batch < 0) fail("batch: must be >= 0, got " + std::to_string(o.batch));
  if (!o.expert_bias.empty()) {
    if (o.expert_bias.size() != to_size(o.num_experts)) {
      fail("expert_bias: expected " + std::to_string(o.num_experts) + " values (one per expert), got " +
           std::to_string(o.expert_bias.size()));
    }
    for (const double b : o.expert_bias) {
      if (!std::isfinite(b)) fail("expert_bias: every bias must be finite");
    }
  }
  if (o.replicas != nullptr) {
    const ExpertReplicas& r = *o.replicas;
    if (r.num_experts() != o.num_experts || r.begin.front() != 0 || to_size(r.begin.back()) != r.rank.size()) {
      fail("replicas: expected a layout of " + std::to_string(o.num_experts) + " experts");
    }
    for (int e = 0; e < o.num_experts; ++e) {
      if (r.num_replicas(e) < 1) fail("replicas: expert " + std::to_string(e) + " has no replica");
    }
    for (const int rank : r.rank) {
      if (rank < 0 || rank >= o.ep) fail("replicas: rank " + std::to_string(rank) + " outside the EP group");
    }
    if (c.policy == CapacityPolicy::kPadded) {
      fail("capacity policy padded: cannot be combined with replication (padded buffers are per expert)");
    }
  }
  if (o.replay == nullptr) return;
  const RecordedRouting& file = *o.replay;
  const RoutingSpec& r = o.routing;
  if (file.num_topk != o.num_topk) {
    fail(file.source + ": the file routes top-" + std::to_string(file.num_topk) + ", the model top-" +
         std::to_string(o.num_topk));
  }
  if (file.find(o.layer) == nullptr) {
    std::string layers;
    for (const RecordedLayer& layer : file.layers) layers += (layers.empty() ? "" : ", ") + std::to_string(layer.layer);
    fail(file.source + ": no rows for layer " + std::to_string(o.layer) + " (the file has layers " + layers + ")");
  }
  if (r.node_limit > 0 || r.device_limit > 0 || r.group_limit > 0 || r.drift > 0.0 || !o.expert_bias.empty()) {
    fail(file.source + ": a replayed routing is taken as recorded: no node, device or group limit, drift or bias");
  }
  if (c.policy == CapacityPolicy::kReroute) {
    fail(file.source +
         ": capacity policy reroute needs each token's ranked experts past its top-k, which a "
         "routing file does not hold");
  }
  if (c.policy == CapacityPolicy::kDropScore && !file.has_scores) {
    fail(file.source + ": capacity policy drop-score needs router scores, and the file has no s0.. columns");
  }
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
  validate_groups(o);
  validate_policy_and_sources(o);
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
  const int num_groups = num_gpus / ep;
  const auto num_experts = to_size(options.num_experts);
  const std::uint64_t seed = layer_seed(options.seed, options.layer);

  // The pick classes: the popularity, or hot and cold with weight 1 on their members; then drift and biases
  // scale every weight by exp(offset).
  SharedInputs shared{.options = options, .rank_of_expert = place_experts(options.placement, options.num_experts, ep)};
  if (options.routing.kind == RoutingSpec::Kind::kHot) {
    shared.is_hot = true;
    const double hot_picks = expected_hot_picks(options.num_topk, options.routing.hot_share);
    shared.min_hot_picks = static_cast<int>(std::floor(hot_picks));
    shared.extra_hot_odds = hot_picks - std::floor(hot_picks);
    shared.classes.resize(2);
    shared.classes[0].weight.assign(num_experts, 0.0);
    for (const int e : hot_experts(options.routing, options.num_experts, seed)) {
      shared.classes[0].weight[to_size(e)] = 1.0;
    }
    shared.classes[1].weight.assign(num_experts, 0.0);
    for (std::size_t e = 0; e < num_experts; ++e) shared.classes[1].weight[e] = 1.0 - shared.classes[0].weight[e];
  } else {
    shared.classes.resize(1);
    shared.classes[0].weight = expert_popularity(options.routing, options.num_experts, seed);
  }
  std::vector<double> offset = drift_offsets(options.routing, options.num_experts, seed, options.step);
  for (std::size_t e = 0; e < options.expert_bias.size(); ++e) offset[e] += options.expert_bias[e];
  const bool has_offsets = std::any_of(offset.begin(), offset.end(), [](double x) { return x != 0.0; });
  for (PickClass& c : shared.classes) {
    if (has_offsets) {
      // Relative to the largest offset, so the scaled weights cannot overflow.
      const double top = *std::max_element(offset.begin(), offset.end());
      for (std::size_t e = 0; e < num_experts; ++e) c.weight[e] *= std::exp(offset[e] - top);
    }
    for (std::size_t e = 0; e < num_experts; ++e) {
      // Popularity routing keeps zero-weight experts (zipf underflow) as members: they stay eligible, at weight 0.
      if (c.weight[e] > 0.0 || !shared.is_hot) c.members.push_back(static_cast<int>(e));
    }
    std::vector<double> member_weight(c.members.size());
    for (std::size_t i = 0; i < c.members.size(); ++i) member_weight[i] = c.weight[to_size(c.members[i])];
    c.alias.resize(c.members.size());
    build_alias(c.members.data(), member_weight.data(), static_cast<int>(c.members.size()), c.alias.data());
    c.by_rank.build(c.weight, c.members, shared.rank_of_expert, ep);
    double mass = 0.0;
    for (const double w : c.weight) mass += w;
    shared.class_mass.push_back(mass);
  }
  if (options.routing.group_limit > 0) {
    shared.num_groups = options.routing.expert_groups;
    shared.group_size = options.num_experts / shared.num_groups;
    std::vector<int> group_of_expert(num_experts);
    for (std::size_t e = 0; e < num_experts; ++e) group_of_expert[e] = static_cast<int>(e) / shared.group_size;
    shared.by_group.build(shared.classes[0].weight, shared.classes[0].members, group_of_expert, shared.num_groups);
  }
  validate_unit_limit(shared.rank_of_expert, ep, options.routing.device_limit, shared,
                      "device_limit: " + std::to_string(options.routing.device_limit) + " ranks",
                      "raise the device limit");
  if (!options.capacity.is_dropless()) {
    shared.capacity = expert_capacity(options.tokens_per_rank, options.num_topk, options.num_experts,
                                      options.capacity.factor, options.capacity.min_capacity);
  }
  if (options.replay != nullptr) shared.replay = options.replay->find(options.layer);
  // Scores cost a logarithm or two per pick: drawn only where a policy, the routing or a record uses them.
  shared.want_scores = options.routing.group_limit > 0 ||
                       (options.replay != nullptr ? options.replay->has_scores
                                                  : options.capacity.policy == CapacityPolicy::kDropScore ||
                                                        (options.record_picks && options.record_scores));

  shared.num_ep_groups = num_groups;
  LayerTraffic traffic;
  traffic.options = options;
  traffic.capacity = shared.capacity == kUnlimited ? 0 : shared.capacity;
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
  if (options.record_picks) {
    const std::size_t num_slots = to_size(num_gpus) * to_size(options.tokens_per_rank) * to_size(options.num_topk);
    traffic.picks.layer = options.layer;
    traffic.picks.num_tokens = std::int64_t{num_gpus} * options.tokens_per_rank;
    traffic.picks.experts.assign(num_slots, 0);
    if (shared.want_scores) traffic.picks.scores.assign(num_slots, 0.0F);
  }

  // Ranks are numbered across groups (unit = group * ep + rank) and cut into contiguous ranges, one per thread.
  const std::int64_t num_units = num_gpus;
  const std::int64_t num_picks = num_units * options.tokens_per_rank * options.num_topk;
  const std::int64_t wanted = num_threads > 0 ? num_threads : std::max(1u, std::thread::hardware_concurrency());
  const auto num_workers =
      static_cast<int>(std::max<std::int64_t>(1, std::min({wanted, num_picks / kMinPicksPerThread, num_units})));
  // Token streams per (seed, layer, step, batch, group, rank); layer 0 at step 0, batch 0 draws from the seed itself.
  std::uint64_t token_seed =
      options.step == 0 ? seed
                        : hash_combine(hash_combine(seed, kStepStream), static_cast<std::uint64_t>(options.step));
  if (options.batch > 0) {
    token_seed = hash_combine(hash_combine(token_seed, kBatchStream), static_cast<std::uint64_t>(options.batch));
  }

  std::vector<std::unique_ptr<RankSampler>> samplers(to_size(num_workers));
  std::vector<std::exception_ptr> errors(to_size(num_workers));
  auto run = [&](int worker) {
    try {
      // Each thread builds its own sampler, so the scratch that changes every token shares no cache line.
      auto sampler = std::make_unique<RankSampler>(shared);
      sampler->set_token_seed(token_seed);
      const std::int64_t begin = num_units * worker / num_workers;
      const std::int64_t end = num_units * (worker + 1) / num_workers;
      int current_group = -1;
      for (std::int64_t unit = begin; unit < end; ++unit) {
        const auto g = static_cast<int>(unit / ep);
        EpGroupTraffic& group = traffic.groups[to_size(g)];
        if (g != current_group) {
          sampler->set_group(group);
          current_group = g;
        }
        sampler->sample_rank(traffic, group, g, static_cast<int>(unit % ep));
      }
      samplers[to_size(worker)] = std::move(sampler);
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

  // Each thread's counts, summed in worker order (integers: the order cannot change the sums anyway).
  auto sum_over_workers = [&](auto per_sampler) {
    std::vector<std::int64_t> total(num_experts, 0);
    for (const auto& sampler : samplers) {
      const std::vector<std::int64_t>& counts = per_sampler(*sampler);
      for (std::size_t e = 0; e < num_experts; ++e) total[e] += counts[e];
    }
    return total;
  };
  traffic.tokens_per_expert =
      sum_over_workers([](const RankSampler& s) -> const auto& { return s.tokens_per_expert(); });
  traffic.routed_per_expert =
      sum_over_workers([](const RankSampler& s) -> const auto& { return s.routed_per_expert(); });
  traffic.dropped_per_expert =
      sum_over_workers([](const RankSampler& s) -> const auto& { return s.dropped_per_expert(); });
  traffic.rerouted_per_expert =
      sum_over_workers([](const RankSampler& s) -> const auto& { return s.rerouted_per_expert(); });
  traffic.tokens_per_group_expert.assign(to_size(num_groups) * num_experts, 0);
  for (const auto& sampler : samplers) {
    const std::vector<std::int64_t>& counts = sampler->tokens_per_group_expert();
    for (std::size_t i = 0; i < counts.size(); ++i) traffic.tokens_per_group_expert[i] += counts[i];
  }
  for (const auto& sampler : samplers) {
    traffic.padded_slots += sampler->padded_slots();
    traffic.tokens_all_dropped += sampler->tokens_all_dropped();
  }
  return traffic;
}

}  // namespace moesim::workloads
