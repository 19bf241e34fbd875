// Trajectory fingerprints (in the manner of OMNeT++'s fingerprint tests): each scenario's collectives must hash
// to the values pinned in fingerprints.csv. A mismatch means behaviour changed; if that was the intent, update
// the line and say why in the commit message.
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sim/a2a.hpp"
#include "sim/scenario.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim {
namespace {

struct Pin {
  std::string scenario;
  std::string collective;
  std::string fingerprint;
};

std::vector<Pin> read_pins() {
  std::ifstream in(std::string(MOESIM_SOURCE_DIR) + "/tests/scenario/fingerprints.csv");
  std::vector<Pin> pins;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream fields(line);
    Pin pin;
    std::getline(fields, pin.scenario, ',');
    std::getline(fields, pin.collective, ',');
    std::getline(fields, pin.fingerprint, ',');
    pins.push_back(pin);
  }
  return pins;
}

TEST(Fingerprint, ScenariosFollowTheirPinnedTrajectories) {
  const std::vector<Pin> pins = read_pins();
  ASSERT_GE(pins.size(), 8u);
  std::map<std::string, reports::A2aResult> results;
  for (const Pin& pin : pins) {
    if (results.count(pin.scenario) == 0) {
      const std::string path = std::string(MOESIM_SOURCE_DIR) + "/tests/scenario/data/" + pin.scenario;
      const ResolvedScenario scenario = resolve(load_scenario_file(ScenarioSpec{}, path));
      const topologies::Cluster cluster(scenario.cluster);
      results[pin.scenario] = run_a2a(cluster, scenario.a2a);
    }
    bool found = false;
    for (const auto& c : results[pin.scenario].collectives()) {
      if (c.name() != pin.collective) continue;
      found = true;
      EXPECT_EQ(c.fingerprint(), pin.fingerprint) << pin.scenario << " " << pin.collective;
    }
    EXPECT_TRUE(found) << pin.scenario << " has no collective " << pin.collective;
  }
}

}  // namespace
}  // namespace moesim::sim
