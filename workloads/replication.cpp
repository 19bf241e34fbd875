// Expert replication and packing (see replication.hpp for the algorithm and its tie-breaks).
//
// Both greedy steps run on ordered structures: a heap of experts by load per replica, a set of the ranks that
// still have a free slot by load. A plan costs O((E + X) log E + R log ep) for X extra and R total replicas;
// E = 256 experts on 64 ranks with one extra slot each takes about 0.1 ms, and on 256 ranks with every extra slot
// allowed (65,280 extra replicas) about 10 ms, in an optimised build.
//
// The replicas of one expert share a sort key (load / replicas, expert id), so they are packed one after another.
// Placing them one at a time on "the least-loaded rank with a free slot and without this expert" is then the same
// as giving them the num_replicas least-loaded ranks of the free set, taken out of it together.
//
// Why the repair step exists: an expert with n replicas can find fewer than n ranks with a free slot. A search
// over many small cases in exact rational arithmetic found no input that does this, but rank loads here are sums
// of rounded quotients, and a tie that exact arithmetic breaks towards the lower rank can go the other way by one
// ulp: E = 9, ep = 3, 4 extra slots per rank and loads {2, 3, 3, 1, 1, 1, 1, 2, 2} leave expert 6 one rank short.
// The swap always succeeds: free slots only ever sit on ranks that already hold the expert (the greedy used every
// other free rank), there is at least one (free slots = replicas still to place), and a full rank B holds more
// experts than a rank A with a free slot, so B holds some expert that A lacks.
#include "workloads/replication.hpp"

#include <algorithm>
#include <cmath>
#include <queue>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/units.hpp"

namespace moesim::workloads {
namespace {

void check_loads(const std::vector<double>& expert_load) {
  for (std::size_t e = 0; e < expert_load.size(); ++e) {
    const double load = expert_load[e];
    if (!std::isfinite(load) || load < 0.0) {
      throw std::invalid_argument("expert_load[" + std::to_string(e) + "]: must be finite and >= 0, got " +
                                  format_number(load));
    }
  }
}

// Per-replica loads are compared as computed quotients: IEEE division is correctly rounded, so two experts
// whose exact ratios are equal (2 / 2 and 1 / 1, 1 / 3 and 2 / 6) compare equal and the id tie-break applies.
struct ExpertKey {
  double load_per_replica;
  int expert_idx;
};

// Heavier per replica first, then lower id.
bool expert_before(const ExpertKey& a, const ExpertKey& b) {
  if (a.load_per_replica != b.load_per_replica) return a.load_per_replica > b.load_per_replica;
  return a.expert_idx < b.expert_idx;
}

struct RankKey {
  double load;
  int rank_idx;
  // Lighter rank first, then lower rank.
  bool operator<(const RankKey& other) const {
    if (load != other.load) return load < other.load;
    return rank_idx < other.rank_idx;
  }
};

// Step 1: how many replicas each expert gets.
std::vector<int> count_replicas(const std::vector<double>& expert_load, int ep, int num_extra) {
  const int num_experts = static_cast<int>(expert_load.size());
  std::vector<int> num_replicas(num_experts, 1);
  // priority_queue pops its largest element under the comparator, so it is given "comes after".
  auto after = [](const ExpertKey& a, const ExpertKey& b) { return expert_before(b, a); };
  std::priority_queue<ExpertKey, std::vector<ExpertKey>, decltype(after)> heap(after);
  // An expert with ep replicas already has one on every rank; another would break "no rank holds two", so it
  // leaves the heap. The bound on extra slots in plan_replication keeps the heap from running dry.
  if (ep > 1) {
    for (int e = 0; e < num_experts; ++e) heap.push({expert_load[e], e});
  }
  for (int i = 0; i < num_extra; ++i) {
    const int e = heap.top().expert_idx;
    heap.pop();
    ++num_replicas[e];
    if (num_replicas[e] < ep) heap.push({expert_load[e] / num_replicas[e], e});
  }
  return num_replicas;
}

// Step 2: the experts each rank holds, from the experts in packing order.
class Packer {
 public:
  Packer(std::vector<double> load_per_replica, int ep, int slots_per_rank)
      : load_per_replica_(std::move(load_per_replica)),
        slots_per_rank_(slots_per_rank),
        load_(ep, 0.0),
        experts_on_rank_(ep),
        is_holder_(ep, 0) {
    for (int r = 0; r < ep; ++r) free_ranks_.insert({0.0, r});
  }

  void place(int expert_idx, int num_replicas) {
    holders_.clear();
    while (static_cast<int>(holders_.size()) < num_replicas && !free_ranks_.empty()) {
      const int r = free_ranks_.begin()->rank_idx;
      free_ranks_.erase(free_ranks_.begin());
      holders_.push_back(r);
    }
    for (const int r : holders_) {
      add(r, expert_idx);
      is_holder_[r] = 1;
    }
    while (static_cast<int>(holders_.size()) < num_replicas) {
      const int b = swap_into_full_rank(expert_idx);
      holders_.push_back(b);
    }
    for (const int r : holders_) is_holder_[r] = 0;
  }

  std::vector<std::vector<int>> take() { return std::move(experts_on_rank_); }

 private:
  // Puts a replica of expert_idx on rank r, which must not be in free_ranks_ (taken out, or full).
  void add(int r, int expert_idx) {
    load_[r] += load_per_replica_[expert_idx];
    experts_on_rank_[r].push_back(expert_idx);
    if (static_cast<int>(experts_on_rank_[r].size()) < slots_per_rank_) free_ranks_.insert({load_[r], r});
  }

  bool holds(int r, int expert_idx) const {
    const auto& experts = experts_on_rank_[r];
    return std::find(experts.begin(), experts.end(), expert_idx) != experts.end();
  }

  // The repair described at the top of the file; returns the rank B that received expert_idx.
  int swap_into_full_rank(int expert_idx) {
    if (free_ranks_.empty()) throw std::logic_error("plan_replication: no free slot left for a swap");
    const int a = free_ranks_.begin()->rank_idx;
    int b = -1;
    for (int r = 0; r < static_cast<int>(load_.size()); ++r) {
      if (!is_holder_[r] && (b < 0 || load_[r] < load_[b])) b = r;
    }
    int moved = -1;
    if (b >= 0) {
      for (const int e : experts_on_rank_[b]) {
        if (holds(a, e)) continue;
        // The lightest replica (ties: lower expert id) disturbs the loads least.
        if (moved < 0 || load_per_replica_[e] < load_per_replica_[moved] ||
            (load_per_replica_[e] == load_per_replica_[moved] && e < moved)) {
          moved = e;
        }
      }
    }
    if (moved < 0) throw std::logic_error("plan_replication: no replica to swap");

    free_ranks_.erase({load_[a], a});
    add(a, moved);
    auto& on_b = experts_on_rank_[b];
    on_b.erase(std::find(on_b.begin(), on_b.end(), moved));
    load_[b] -= load_per_replica_[moved];
    add(b, expert_idx);
    is_holder_[b] = 1;
    return b;
  }

  std::vector<double> load_per_replica_;
  int slots_per_rank_;
  std::vector<double> load_;
  std::vector<std::vector<int>> experts_on_rank_;
  std::set<RankKey> free_ranks_;  // ranks with a free slot, lightest first
  std::vector<char> is_holder_;   // ranks that hold the expert being placed
  std::vector<int> holders_;
};

std::vector<std::vector<int>> pack(const std::vector<ExpertKey>& order, const std::vector<int>& num_replicas, int ep,
                                   int slots_per_rank) {
  std::vector<double> load_per_replica(order.size());
  for (const ExpertKey& key : order) load_per_replica[key.expert_idx] = key.load_per_replica;
  Packer packer(std::move(load_per_replica), ep, slots_per_rank);
  for (const ExpertKey& key : order) packer.place(key.expert_idx, num_replicas[key.expert_idx]);
  return packer.take();
}

}  // namespace

ExpertReplicas single_replicas(const std::vector<int>& rank_of_expert) {
  ExpertReplicas out;
  out.begin.resize(rank_of_expert.size() + 1);
  for (std::size_t e = 0; e < out.begin.size(); ++e) out.begin[e] = static_cast<int>(e);
  for (std::size_t e = 0; e < rank_of_expert.size(); ++e) {
    if (rank_of_expert[e] < 0) {
      throw std::invalid_argument("rank_of_expert[" + std::to_string(e) + "]: must be >= 0, got " +
                                  std::to_string(rank_of_expert[e]));
    }
  }
  out.rank = rank_of_expert;
  return out;
}

ExpertReplicas plan_replication(const std::vector<double>& expert_load, int ep, int extra_slots_per_rank) {
  const int num_experts = static_cast<int>(expert_load.size());
  if (num_experts < 1) throw std::invalid_argument("expert_load: expected at least one expert, got none");
  if (ep < 1) throw std::invalid_argument("ep: must be >= 1, got " + std::to_string(ep));
  if (num_experts % ep != 0) {
    throw std::invalid_argument("ep: must divide the number of experts (" + std::to_string(num_experts) + "), got " +
                                std::to_string(ep));
  }
  const int max_extra = num_experts - num_experts / ep;
  if (extra_slots_per_rank < 0 || extra_slots_per_rank > max_extra) {
    throw std::invalid_argument("extra_slots_per_rank: must be in [0, " + std::to_string(max_extra) +
                                "] (a rank holds at most one replica of each of the " + std::to_string(num_experts) +
                                " experts), got " + std::to_string(extra_slots_per_rank));
  }
  check_loads(expert_load);

  const int slots_per_rank = num_experts / ep + extra_slots_per_rank;
  const std::vector<int> num_replicas = count_replicas(expert_load, ep, ep * extra_slots_per_rank);

  std::vector<ExpertKey> order(num_experts);
  for (int e = 0; e < num_experts; ++e) order[e] = {expert_load[e] / num_replicas[e], e};
  std::sort(order.begin(), order.end(), expert_before);

  ExpertReplicas out;
  out.begin.resize(num_experts + 1, 0);
  for (int e = 0; e < num_experts; ++e) out.begin[e + 1] = out.begin[e] + num_replicas[e];
  out.rank.resize(out.begin[num_experts]);

  const std::vector<std::vector<int>> experts_on_rank = pack(order, num_replicas, ep, slots_per_rank);
  // Walking the ranks in order lists each expert's ranks in ascending order, which makes a plan easy to read and
  // compare; which replica is which does not matter.
  std::vector<int> next = out.begin;
  for (int r = 0; r < ep; ++r) {
    for (const int e : experts_on_rank[r]) out.rank[next[e]++] = r;
  }
  return out;
}

std::vector<double> rank_loads(const ExpertReplicas& replicas, const std::vector<double>& expert_load, int ep) {
  if (ep < 1) throw std::invalid_argument("ep: must be >= 1, got " + std::to_string(ep));
  if (replicas.begin.empty() || replicas.begin.front() != 0 ||
      replicas.begin.back() != static_cast<int>(replicas.rank.size())) {
    throw std::invalid_argument("replicas: expected begin to run from 0 to the number of replicas (" +
                                std::to_string(replicas.rank.size()) + ")");
  }
  const int num_experts = replicas.num_experts();
  if (static_cast<int>(expert_load.size()) != num_experts) {
    throw std::invalid_argument("expert_load: expected " + std::to_string(num_experts) + " entries, got " +
                                std::to_string(expert_load.size()));
  }
  std::vector<double> out(ep, 0.0);
  for (int e = 0; e < num_experts; ++e) {
    const int n = replicas.num_replicas(e);
    if (n < 1) {
      throw std::invalid_argument("replicas: expert " + std::to_string(e) + " must have at least one replica, got " +
                                  std::to_string(n));
    }
    for (int i = replicas.begin[e]; i < replicas.begin[e + 1]; ++i) {
      const int r = replicas.rank[i];
      if (r < 0 || r >= ep) {
        throw std::invalid_argument("replicas: rank of expert " + std::to_string(e) + " must be in [0, " +
                                    std::to_string(ep) + "), got " + std::to_string(r));
      }
      out[r] += expert_load[e] / n;
    }
  }
  return out;
}

}  // namespace moesim::workloads
