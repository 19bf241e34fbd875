#include "sim/core/simulator.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace moesim::sim {
namespace {

TEST(Simulator, RunsEventsInTimeThenPriorityThenInsertionOrder) {
  // Scheduled out of order on purpose: the run must visit them by time, then by priority (lower first),
  // then by the order in which they were scheduled.
  Simulator sim;
  std::vector<std::string> log;
  sim.schedule_at(20, [&] { log.push_back("t20"); });
  sim.schedule_at(
      10, [&] { log.push_back("t10-late"); }, 5);
  sim.schedule_at(10, [&] { log.push_back("t10-first"); });
  sim.schedule_at(10, [&] { log.push_back("t10-second"); });
  sim.schedule_at(
      10, [&] { log.push_back("t10-early"); }, -5);
  sim.run();
  EXPECT_EQ(log, (std::vector<std::string>{"t10-early", "t10-first", "t10-second", "t10-late", "t20"}));
  EXPECT_EQ(sim.now(), 20);
  EXPECT_EQ(sim.num_events(), 5u);
}

TEST(Simulator, ActionsScheduleMoreEventsAndTheClockFollows) {
  Simulator sim;
  std::vector<TimePs> seen;
  std::function<void()> tick = [&] {
    seen.push_back(sim.now());
    if (seen.size() < 4) sim.schedule_in(7, tick);
  };
  sim.schedule_at(3, tick);
  sim.run();
  EXPECT_EQ(seen, (std::vector<TimePs>{3, 10, 17, 24}));
}

TEST(Simulator, SchedulingInThePastIsALogicError) {
  Simulator sim;
  bool threw = false;
  sim.schedule_at(100, [&] {
    try {
      sim.schedule_at(99, [] {});
    } catch (const std::logic_error&) {
      threw = true;
    }
  });
  sim.run();
  EXPECT_TRUE(threw);
}

TEST(Simulator, SameScheduleGivesTheSameTrajectory) {
  // Determinism: two independent simulators fed the same events produce the same (time, id) trajectory.
  auto trajectory = [] {
    Simulator sim;
    std::vector<std::pair<TimePs, int>> out;
    for (int i = 0; i < 100; ++i) {
      sim.schedule_at((i * 37) % 11, [&sim, &out, i] { out.emplace_back(sim.now(), i); }, i % 3);
    }
    sim.run();
    return out;
  };
  EXPECT_EQ(trajectory(), trajectory());
}

}  // namespace
}  // namespace moesim::sim
