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
// Cost: O(sum over flows of |L(f)|) for the bookkeeping plus O(log(links)) per pop and per re-key. The solver
// works on a closed component (every flow on its links and every link of its flows is included), which the
// network finds from the links a change touched.
//
// A System provides: double capacity(link), span-like links_of(flow), span-like flows_on(link), and the
// solver writes rates[flow].
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "sim/core/indexed_heap.hpp"

namespace moesim::sim::network {

class MaxMinSolver {
 public:
  template <class System>
  void solve(const System& system, const std::vector<std::uint32_t>& flows, const std::vector<std::uint32_t>& links,
             std::vector<double>& rates);

 private:
  std::vector<double> remaining_;         // by link id
  std::vector<std::uint32_t> unfixed_;    // by link id
  std::vector<std::uint32_t> fixed_at_;   // by flow id: the pass that fixed it
  std::uint32_t pass_ = 0;
  IndexedMinHeap heap_;
};

template <class System>
void MaxMinSolver::solve(const System& system, const std::vector<std::uint32_t>& flows,
                         const std::vector<std::uint32_t>& links, std::vector<double>& rates) {
  if (flows.empty()) return;
  ++pass_;
  std::uint32_t max_link = 0;
  for (std::uint32_t l : links) max_link = std::max(max_link, l);
  if (remaining_.size() <= max_link) {
    remaining_.resize(max_link + 1);
    unfixed_.resize(max_link + 1);
  }
  std::uint32_t max_flow = 0;
  for (std::uint32_t f : flows) max_flow = std::max(max_flow, f);
  if (fixed_at_.size() <= max_flow) fixed_at_.resize(max_flow + 1, 0);
  if (rates.size() <= max_flow) rates.resize(max_flow + 1, 0.0);

  heap_.clear();
  heap_.reserve_ids(max_link + 1);
  for (std::uint32_t l : links) {
    remaining_[l] = system.capacity(l);
    unfixed_[l] = static_cast<std::uint32_t>(system.flows_on(l).size());
    if (unfixed_[l] > 0) heap_.set(l, remaining_[l] / unfixed_[l]);
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
      heap_.set(top, share);  // stale: its flows were fixed elsewhere since it was keyed
      continue;
    }
    heap_.pop();
    for (std::uint32_t f : system.flows_on(top)) {
      if (fixed_at_[f] == pass_) continue;
      fixed_at_[f] = pass_;
      rates[f] = share;
      for (std::uint32_t m : system.links_of(f)) {
        remaining_[m] -= share;
        --unfixed_[m];
      }
    }
  }
}

}  // namespace moesim::sim::network
