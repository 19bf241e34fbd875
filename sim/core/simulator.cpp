#include "sim/core/simulator.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim::sim {

void Simulator::schedule_at(TimePs at, Action action, int priority) {
  if (at < now_) {
    throw std::logic_error("event scheduled in the past: at " + std::to_string(at) + " ps, now " +
                           std::to_string(now_) + " ps");
  }
  queue_.push_back(Event{at, priority, next_seq_++, std::move(action)});
  std::push_heap(queue_.begin(), queue_.end(), later);
}

void Simulator::run() {
  while (!queue_.empty()) {
    std::pop_heap(queue_.begin(), queue_.end(), later);
    Event event = std::move(queue_.back());
    queue_.pop_back();
    now_ = event.time;
    ++num_events_;
    event.action();
  }
}

}  // namespace moesim::sim
