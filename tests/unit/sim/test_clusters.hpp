// Small clusters for tests, written in the cluster schema so that tests exercise the same parser users do.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "topologies/cluster.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::testing {

// `num_gpus` GPUs on one crossbar (an NVLink domain of one node): GPU -> switch -> GPU, each port `bandwidth`
// per direction with per-hop `latency` and no per-message overhead.
inline topologies::ClusterConfig crossbar_config(int num_gpus, const std::string& bandwidth,
                                                 const std::string& latency) {
  const std::string n = std::to_string(num_gpus);
  const std::string yaml =
      "name: crossbar\n"
      "nodes: 1\n"
      "gpus_per_node: " +
      n +
      "\n"
      "gpu: {name: test-gpu, bf16_tflops: 100, fp8_tflops: 0, hbm_bandwidth: 1 TB/s, "
      "hbm_capacity: 16 GiB}\n"
      "nvlink: {domain_gpus: " +
      n + ", bandwidth: " + bandwidth + ", latency: " + latency +
      ", overhead: 0 us, efficiency: 1.0}\n"
      "pcie: {bandwidth: 64 GB/s, latency: 0 us}\n"
      "nic: {per_node: 1, bandwidth: 100 Gb/s, latency: 0 us, overhead: 0 us}\n"
      "fabric: {kind: none}\n";
  return topologies::parse_cluster(YAML::Load(yaml), "crossbar.yaml", std::nullopt);
}

}  // namespace moesim::testing
