// The arithmetic of a cluster's shape: which NICs a GPU uses, and how many leaves, spines and cores a fat-tree
// plane has and where a NIC attaches.
//
// Internal to topologies/: the consistency checks (cluster_config.cpp) and the graph builder (cluster.cpp) must
// agree on these numbers, so they live in one place. Every plane of a cluster has the same shape.
//
// GPU l of a node uses NIC l * per_node / gpus_per_node when NICs are shared (per_node <= gpus_per_node), and
// NICs [l * k, (l + 1) * k) with k = per_node / gpus_per_node when each GPU has several.
//
// Per plane, NIC i of a node belongs to plane i % planes and is that plane's rail i / planes; a node has
// rails_per_plane = nic.per_node / planes NICs in each plane.
//   rail-optimised: nodes form scalable units of leaf.down nodes; NIC rail j of every node of unit u attaches to
//     leaf u * rails_per_plane + j, so a leaf holds one rail of one unit.
//   otherwise: the plane's NICs fill leaves in node-major order, leaf.down at a time.
// Leaves form pods of pod_leaves (all leaves in one pod without a core tier); each pod has
// ceil(leaves_in_pod * leaf.up / spine.down) spines of its own. Cores come in groups, one per spine position, as in
// a k-ary fat tree: group i joins spine i of every pod, with ceil(pods * spine.up / core.down) cores per group.
#pragma once

#include "topologies/cluster_config.hpp"

namespace moesim::topologies {

struct NicRange {
  int first = 0;
  int count = 0;
};

inline NicRange nics_of_gpu(const ClusterConfig& config, int local_idx) {
  const int per_node = config.nic.per_node;
  const int gpus = config.gpus_per_node;
  if (per_node <= gpus) return {static_cast<int>(static_cast<long long>(local_idx) * per_node / gpus), 1};
  const int k = per_node / gpus;
  return {local_idx * k, k};
}

struct FatTreeShape {
  int rails_per_plane = 0;
  int leaves = 0;  // per plane
  int leaves_per_pod = 0;
  int pods = 0;
  int spines = 0;  // per plane, all pods together (0 without a spine tier)
  int max_pod_spines = 0;
  int cores_per_group = 0;  // cores per spine position
  int cores = 0;            // per plane: max_pod_spines * cores_per_group (0 without a core tier)

  int leaves_in_pod(int pod_idx) const {
    const int rest = leaves - pod_idx * leaves_per_pod;
    return rest < leaves_per_pod ? rest : leaves_per_pod;
  }
};

inline int ceil_div(long long a, long long b) {
  return static_cast<int>((a + b - 1) / b);
}

// Expects the single-key ranges to hold already (counts >= 1, planes dividing nic.per_node).
inline FatTreeShape fat_tree_shape(const ClusterConfig& config) {
  const FabricSpec& fabric = config.fabric;
  FatTreeShape shape;
  shape.rails_per_plane = config.nic.per_node / fabric.planes;
  const long long nodes = config.num_nodes;
  if (fabric.rail_optimized) {
    shape.leaves = ceil_div(nodes, fabric.leaf.down) * shape.rails_per_plane;
  } else {
    shape.leaves = ceil_div(nodes * shape.rails_per_plane, fabric.leaf.down);
  }
  shape.leaves_per_pod = fabric.core && fabric.pod_leaves > 0 ? fabric.pod_leaves : shape.leaves;
  shape.pods = ceil_div(shape.leaves, shape.leaves_per_pod);
  if (fabric.spine) {
    for (int pod_idx = 0; pod_idx < shape.pods; ++pod_idx) {
      const int pod_spines =
          ceil_div(static_cast<long long>(shape.leaves_in_pod(pod_idx)) * fabric.leaf.up, fabric.spine->down);
      shape.spines += pod_spines;
      if (pod_spines > shape.max_pod_spines) shape.max_pod_spines = pod_spines;
    }
  }
  if (fabric.spine && fabric.core) {
    shape.cores_per_group = ceil_div(static_cast<long long>(shape.pods) * fabric.spine->up, fabric.core->down);
    shape.cores = shape.max_pod_spines * shape.cores_per_group;
  }
  return shape;
}

// The leaf (index within its plane) that rail `rail_idx` of node `node_idx` attaches to.
inline int leaf_of(const ClusterConfig& config, const FatTreeShape& shape, int node_idx, int rail_idx) {
  if (config.fabric.rail_optimized) return (node_idx / config.fabric.leaf.down) * shape.rails_per_plane + rail_idx;
  return static_cast<int>((static_cast<long long>(node_idx) * shape.rails_per_plane + rail_idx) /
                          config.fabric.leaf.down);
}

}  // namespace moesim::topologies
