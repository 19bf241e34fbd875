#include "sim/core/indexed_heap.hpp"

#include <algorithm>
#include <vector>

#include <gtest/gtest.h>

#include "common/rng.hpp"

namespace moesim::sim {
namespace {

TEST(IndexedMinHeap, PopsInKeyOrderAfterArbitraryUpdatesAndRemovals) {
  // Against a brute-force model: after random inserts, key changes and removals, pops come out sorted by
  // (key, id) and contain exactly the ids still present.
  IndexedMinHeap heap;
  std::vector<double> model(200, -1.0);
  Rng rng(7);
  for (int step = 0; step < 5000; ++step) {
    const auto id = static_cast<std::uint32_t>(rng.below(200));
    if (rng.below(5) == 0) {
      heap.remove(id);
      model[id] = -1.0;
    } else {
      const double key = static_cast<double>(rng.below(50));
      heap.set(id, key);
      model[id] = key;
    }
  }
  std::vector<std::pair<double, std::uint32_t>> expected;
  for (std::uint32_t id = 0; id < model.size(); ++id) {
    if (model[id] >= 0.0) expected.emplace_back(model[id], id);
  }
  std::sort(expected.begin(), expected.end());
  std::vector<std::pair<double, std::uint32_t>> popped;
  while (!heap.empty()) {
    const double key = heap.top_key();
    popped.emplace_back(key, heap.pop());
  }
  EXPECT_EQ(popped, expected);
}

}  // namespace
}  // namespace moesim::sim
