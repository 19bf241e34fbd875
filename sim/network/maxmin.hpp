// Max-min fair sharing of link capacity among flows (progressive filling).
//
// Theory of operation. Each flow f crosses a set of links L(f); link l has capacity c_l and carries the flows
// F(l). A rate vector r is max-min fair if it is feasible (sum over F(l) of r_f <= c_l for every l) and no
// flow's rate can grow without shrinking the rate of a flow that is no faster. Progressive filling computes it:
// every link offers its unfixed flows the share s_l = (remaining capacity) / (number of unfixed flows). The
// link with the smallest share is a bottleneck: all its unfixed flows get exactly s_l, which is subtracted from
// every link they cross; repeat until every flow is fixed. Invariant: fixing flows at the smallest share never
// lowers another link's share (s_l <= c_m / n_m implies (c_m - s_l) / (n_m - 1) >= c_m / n_m), so shares only
// grow. The heap therefore keeps possibly stale keys that are lower bounds of the true shares and re-keys a
// link only when it reaches the top: if its true share still equals its key it is the true minimum; otherwise
// it sifts down to its new key. Links that are never bottlenecks are never touched again.
//
// Incremental solves. Only the flows in `flows` are solved; every other flow on the given links keeps the rate
// the system reports for it (system.rate(f)) and just uses up that much capacity. This is exact whenever the
// kept flows' rates are still max-min rates of the new system, which the network guarantees as follows.
// When flows leave, let s be the smallest rate among them. Progressive filling below level s does not change:
// a departed flow's links were never bottlenecks before its own level, and removing it only raises their
// shares. So every flow slower than s keeps its rate, and only flows at s or faster that are connected to the
// departed flows through other such flows need solving (network.cpp). An arriving flow can change anything,
// so arrivals re-solve the whole connected component.
//
// Cost: O(sum over solved flows of |L(f)| + sum over links of |F(l)|) for the bookkeeping, plus O(log(links))
// per pop and per re-key.
//
// The solver works on a SharingProblem in dense local indices (links and flows numbered from 0 in the order the
// caller found them), so that its inner loops touch small contiguous arrays however large the network is. The
// network builds the problem while it searches the component (network.cpp); solve_system() builds it from any
// System that provides double capacity(link), span-like links_of(flow), span-like flows_on(link) and
// double rate(flow) for the flows it does not ask to solve.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "sim/core/indexed_heap.hpp"

namespace moesim::sim::network {

struct SharingProblem {
  std::vector<double> remaining;          // by local link: capacity left after the flows not being solved
  std::vector<std::uint32_t> link_begin;  // CSR, local link -> local flows being solved on it
  std::vector<std::uint32_t> link_flows;
  std::vector<std::uint32_t> flow_begin;  // CSR, local flow -> its local links
  std::vector<std::uint32_t> flow_links;

  std::size_t num_links() const { return remaining.size(); }
  std::size_t num_flows() const { return flow_begin.empty() ? 0 : flow_begin.size() - 1; }
};

class MaxMinSolver {
 public:
  // Writes the max-min fair rate of local flow i to rates[i].
  void solve(const SharingProblem& problem, std::vector<double>& rates);

  // Solves `flows` (global ids) of `system` over `links` (which must hold every link of those flows); writes
  // rates[f] by global id. Flows of `system` not listed keep system.rate(f).
  template <class System>
  void solve_system(const System& system, const std::vector<std::uint32_t>& flows,
                    const std::vector<std::uint32_t>& links, std::vector<double>& rates);

 private:
  std::vector<double> remaining_;
  std::vector<std::uint32_t> unfixed_;
  std::vector<char> is_fixed_;
  IndexedMinHeap heap_;
  SharingProblem scratch_;
};

inline void MaxMinSolver::solve(const SharingProblem& problem, std::vector<double>& rates) {
  const std::size_t num_links = problem.num_links();
  const std::size_t num_flows = problem.num_flows();
  rates.assign(num_flows, 0.0);
  if (num_flows == 0) return;
  remaining_.assign(problem.remaining.begin(), problem.remaining.end());
  unfixed_.resize(num_links);
  is_fixed_.assign(num_flows, 0);
  heap_.clear();
  heap_.reserve_ids(num_links);
  for (std::uint32_t l = 0; l < num_links; ++l) {
    unfixed_[l] = problem.link_begin[l + 1] - problem.link_begin[l];
    if (unfixed_[l] > 0) heap_.set(l, std::max(0.0, remaining_[l]) / unfixed_[l]);
  }
  // Relative slack under which a re-keyed share counts as unchanged: remaining capacity is a running
  // difference, so the true share can drift by rounding.
  constexpr double kRekeyTolerance = 1e-12;
  while (!heap_.empty()) {
    const std::uint32_t top = heap_.top();
    if (unfixed_[top] == 0) {
      heap_.pop();
      continue;
    }
    const double share = std::max(0.0, remaining_[top]) / unfixed_[top];
    if (share > heap_.top_key() * (1.0 + kRekeyTolerance)) {
      heap_.set(top, share);  // stale: some of its flows were fixed elsewhere since it was keyed
      continue;
    }
    heap_.pop();
    for (std::uint32_t k = problem.link_begin[top]; k < problem.link_begin[top + 1]; ++k) {
      const std::uint32_t f = problem.link_flows[k];
      if (is_fixed_[f]) continue;
      is_fixed_[f] = 1;
      rates[f] = share;
      for (std::uint32_t j = problem.flow_begin[f]; j < problem.flow_begin[f + 1]; ++j) {
        const std::uint32_t m = problem.flow_links[j];
        remaining_[m] -= share;
        --unfixed_[m];
      }
    }
  }
}

template <class System>
void MaxMinSolver::solve_system(const System& system, const std::vector<std::uint32_t>& flows,
                                const std::vector<std::uint32_t>& links, std::vector<double>& rates) {
  SharingProblem& p = scratch_;
  std::uint32_t max_link = 0, max_flow = 0;
  for (std::uint32_t l : links) max_link = std::max(max_link, l);
  for (std::uint32_t f : flows) max_flow = std::max(max_flow, f);
  constexpr std::uint32_t kNone = 0xffffffffu;
  std::vector<std::uint32_t> local_link(max_link + 1, kNone), local_flow(max_flow + 1, kNone);
  for (std::uint32_t i = 0; i < links.size(); ++i) local_link[links[i]] = i;
  for (std::uint32_t i = 0; i < flows.size(); ++i) local_flow[flows[i]] = i;
  auto solving = [&](std::uint32_t f) { return f <= max_flow && local_flow[f] != kNone; };

  p.remaining.assign(links.size(), 0.0);
  p.link_begin.assign(links.size() + 1, 0);
  for (std::uint32_t i = 0; i < links.size(); ++i) {
    double remaining = system.capacity(links[i]);
    for (std::uint32_t f : system.flows_on(links[i])) {
      if (solving(f)) {
        ++p.link_begin[i + 1];
      } else {
        remaining -= system.rate(f);
      }
    }
    p.remaining[i] = remaining;
  }
  for (std::size_t i = 0; i < links.size(); ++i) p.link_begin[i + 1] += p.link_begin[i];
  p.link_flows.resize(p.link_begin.back());
  p.flow_begin.assign(1, 0);
  p.flow_links.clear();
  std::vector<std::uint32_t> fill(p.link_begin.begin(), p.link_begin.end() - 1);
  for (std::uint32_t i = 0; i < flows.size(); ++i) {
    for (std::uint32_t m : system.links_of(flows[i])) {
      p.flow_links.push_back(local_link[m]);
      p.link_flows[fill[local_link[m]]++] = i;
    }
    p.flow_begin.push_back(static_cast<std::uint32_t>(p.flow_links.size()));
  }
  std::vector<double> local_rates;
  solve(p, local_rates);
  if (rates.size() <= max_flow) rates.resize(max_flow + 1, 0.0);
  for (std::uint32_t i = 0; i < flows.size(); ++i) rates[flows[i]] = local_rates[i];
}

}  // namespace moesim::sim::network
