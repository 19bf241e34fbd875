// The event core: a clock and a queue of timed actions.
//
// Theory of operation. Simulated time is an integer count of picoseconds. Events are ordered by
// (time, priority, insertion sequence): ties in time are broken first by priority (lower runs first), then by
// the order in which they were scheduled, so a run is a pure function of its inputs. run() pops the earliest
// event, advances the clock to it (time never goes backwards: scheduling in the past is a logic error) and
// invokes it; an action may schedule further events. There is no global state: each Simulator is independent,
// so many can run in one process (sweeps run them in parallel threads).
//
// Cost: O(log n) per schedule and per event (a binary heap).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/units.hpp"

namespace moesim::sim {

// Priorities for events that share a time stamp. Components that react to everything else that happened at an
// instant (the network's rate recomputation) run last, so that one recomputation covers all of it.
inline constexpr int kPriorityDefault = 0;
inline constexpr int kPriorityNetwork = 1000;

class Simulator {
 public:
  using Action = std::function<void()>;

  TimePs now() const { return now_; }
  std::uint64_t num_events() const { return num_events_; }
  bool empty() const { return queue_.empty(); }

  // Schedules `action` at absolute time `at` (>= now()).
  void schedule_at(TimePs at, Action action, int priority = kPriorityDefault);
  void schedule_in(TimePs delay, Action action, int priority = kPriorityDefault) {
    schedule_at(now_ + delay, std::move(action), priority);
  }

  // Runs events until the queue is empty.
  void run();

 private:
  struct Event {
    TimePs time;
    int priority;
    std::uint64_t seq;
    Action action;
  };
  // std heap functions build a max-heap: "later" compares as smaller.
  static bool later(const Event& a, const Event& b) {
    if (a.time != b.time) return a.time > b.time;
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.seq > b.seq;
  }

  std::vector<Event> queue_;
  TimePs now_ = 0;
  std::uint64_t next_seq_ = 0;
  std::uint64_t num_events_ = 0;
};

}  // namespace moesim::sim
