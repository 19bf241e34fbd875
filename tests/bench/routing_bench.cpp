// Times the routing sampler alone (workloads/traffic.hpp): 2,048 ranks x 4,096 tokens, top-8 of 256 experts on
// 8-GPU nodes, for each distribution given on the command line. Not a test: BENCHMARKS.md records its output.
//   build/tests/bench/routing_bench [--ep N] [--node-limit M] [--device-limit M] [--policy P --factor F] ROUTING...
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "workloads/capacity.hpp"
#include "workloads/traffic.hpp"

int main(int argc, char** argv) {
  using namespace moesim::workloads;
  TrafficOptions options;
  options.ep = 64;
  options.tokens_per_rank = 4096;
  options.num_experts = 256;
  options.num_topk = 8;
  int node_limit = 4;
  int device_limit = 0;
  int num_gpus = 2048;
  std::vector<std::string> routings;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : "0"); };
    if (arg == "--ep") {
      options.ep = std::atoi(next().c_str());
    } else if (arg == "--gpus") {
      num_gpus = std::atoi(next().c_str());
    } else if (arg == "--node-limit") {
      node_limit = std::atoi(next().c_str());
    } else if (arg == "--device-limit") {
      device_limit = std::atoi(next().c_str());
    } else if (arg == "--policy") {
      options.capacity.policy = parse_capacity_policy(next());
    } else if (arg == "--factor") {
      options.capacity.factor = std::atof(next().c_str());
    } else {
      routings.push_back(arg);
    }
  }
  if (routings.empty()) routings = {"uniform", "zipf:1", "zipf:2", "dirichlet:1", "lognormal:1", "hot:16:0.5"};
  std::vector<int> node_of_gpu(static_cast<std::size_t>(num_gpus));
  for (int g = 0; g < num_gpus; ++g) node_of_gpu[static_cast<std::size_t>(g)] = g / 8;
  for (const std::string& routing : routings) {
    options.routing = parse_routing(routing);
    options.routing.node_limit = node_limit;
    options.routing.device_limit = device_limit;
    const auto start = std::chrono::steady_clock::now();
    const LayerTraffic traffic = build_layer_traffic(node_of_gpu, options);
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    std::printf("%-14s %6.3f s  (%lld experts' copies)\n", routing.c_str(), wall.count(),
                static_cast<long long>(traffic.tokens_per_expert.size()));
  }
  return 0;
}
