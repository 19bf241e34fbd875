// A GPU cluster: devices, directed links, and the routes between GPUs.
//
// Theory of operation. A cluster is a directed multigraph (a Boost.Graph adjacency_list) whose vertices are
// GPUs, NVSwitch fabrics (one crossbar vertex per NVLink domain), NICs and network switches, and whose edges are
// directed links: every physical cable or port is full duplex and appears as two links, 2k and 2k + 1, one per
// direction. Each link carries its raw bandwidth, its achievable efficiency (capacity = bandwidth x efficiency),
// a per-hop latency and the per-message overhead of its transport.
//
// Vertex ids: GPUs first (vertex id == GPU index), then one NVSwitch vertex per NVLink domain (when domains have
// more than one GPU), then the NICs (node-major), then the switches (plane by plane: leaves, spines, cores).
//
// GPU g lives on node g / gpus_per_node with local index g % gpus_per_node; NVLink domain d holds GPUs
// [d * domain_gpus, (d + 1) * domain_gpus). Inside a domain GPUs talk through the domain's NVSwitch vertex.
// Between domains, traffic leaves through a NIC (GPU -> NIC over PCIe, NIC -> leaf) and crosses a fat tree
// (leaf, spine, optional core), possibly split into planes (one plane per NIC index, as on DeepSeek's H800
// cluster). Routes are shortest paths in hops in which a GPU is never a transit vertex and a NIC only forwards
// between its host side and its fabric side. Where a GPU has no network path to the destination (multi-plane,
// different rails) or where PXN is enabled, the route first crosses NVLink to the proxy GPU of the source's
// domain that is closest to the destination (NCCL's PXN). Among equal-cost paths, ECMP picks one per hop by a
// hash of (source, destination, salt, hop): deterministic, and spread across flows.
//
// Cost: routing tables are built lazily by one reverse breadth-first search (O(V + E)) from a destination GPU,
// hold a few bytes per switch and per NVLink domain, and are shared by all destinations whose NICs sit on the same
// switches (one table per leaf, or per rail group, not one per GPU); a route is then O(hops) look-ups. Tables are
// cached for the cluster's lifetime and are safe to build from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/units.hpp"
#include "topologies/cluster_config.hpp"

namespace moesim::topologies {

enum class VertexKind : std::uint8_t { kGpu, kNvSwitch, kNic, kSwitch };
enum class LinkKind : std::uint8_t { kNvLink, kPcie, kNic, kFabric };
inline constexpr int kNumLinkKinds = 4;
const char* link_kind_name(LinkKind kind);  // "nvlink", "pcie", "nic", "fabric"

struct Vertex {
  VertexKind kind;
  std::int32_t gpu_idx = -1;  // for GPUs
  // "n3.gpu2", "n3.nic2", "nvl3" (domain 3's NVSwitch), "p2.leaf0", "p2.spine5", "p2.core1" ("p2." only when the
  // fabric has several planes)
  std::string name;
};

struct Link {
  std::uint32_t src = 0;  // vertex ids
  std::uint32_t dst = 0;
  LinkKind kind = LinkKind::kNvLink;
  double bandwidth_bps = 0.0;  // raw, bytes per second
  double efficiency = 1.0;     // achievable fraction of the raw bandwidth
  double capacity_bps = 0.0;   // bandwidth_bps * efficiency: what flows share
  TimePs latency_ps = 0;       // per hop
  TimePs overhead_ps = 0;      // per message, paid once by a flow (the largest over its path's link kinds)
};

class Cluster {
 public:
  // Builds and validates the graph; throws std::invalid_argument (naming config.source) if the description
  // is inconsistent (e.g. a disconnected graph).
  explicit Cluster(ClusterConfig config);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const ClusterConfig& config() const { return config_; }
  int num_gpus() const { return config_.num_nodes * config_.gpus_per_node; }
  int num_nodes() const { return config_.num_nodes; }
  int gpus_per_node() const { return config_.gpus_per_node; }
  int node_of(int gpu_idx) const { return gpu_idx / config_.gpus_per_node; }
  int local_idx(int gpu_idx) const { return gpu_idx % config_.gpus_per_node; }
  int domain_of(int gpu_idx) const { return gpu_idx / config_.nvlink.domain_gpus; }
  // The unit that MoE routing and the hierarchical algorithms treat as a "node": the GPUs that reach each other
  // without the network fabric. That is the NVLink domain when it spans several nodes (an NVL72 rack), else
  // the node.
  int scale_up_unit_of(int gpu_idx) const {
    return config_.nvlink.domain_gpus > config_.gpus_per_node ? domain_of(gpu_idx) : node_of(gpu_idx);
  }

  std::size_t num_vertices() const { return vertices_.size(); }
  const Vertex& vertex(std::uint32_t v) const { return vertices_[v]; }
  std::size_t num_links() const { return links_.size(); }
  const Link& link(std::uint32_t link_idx) const { return links_[link_idx]; }
  const std::vector<Link>& links() const { return links_; }
  // "n0.gpu1 -> nvl0"
  std::string link_name(std::uint32_t link_idx) const;
  std::uint32_t gpu_vertex(int gpu_idx) const { return static_cast<std::uint32_t>(gpu_idx); }  // GPUs come first

  // Appends to `path` the links of the route from src_gpu to dst_gpu (empty when src == dst). `salt`
  // selects among equal-cost paths (ECMP); the same arguments always give the same route. Throws
  // std::out_of_range for a GPU outside the cluster (and std::logic_error if there were no route, which the
  // constructor's checks rule out).
  void route(int src_gpu, int dst_gpu, std::uint64_t salt, std::vector<std::uint32_t>& path) const;

  // Sum over the path of per-hop latency plus the largest per-message overhead on it.
  TimePs path_latency(const std::uint32_t* path, std::size_t num_hops) const;

 private:
  struct Graph;      // the Boost.Graph, kept out of this header
  struct DestTable;  // next hops toward a destination; shared by destinations whose NICs sit on the same switches

  const DestTable& table_for(int dst_gpu) const;

  ClusterConfig config_;
  std::vector<Vertex> vertices_;
  std::vector<Link> links_;
  std::unique_ptr<Graph> graph_;
  mutable std::mutex tables_mutex_;
  mutable std::vector<std::unique_ptr<DestTable>> tables_;  // the distinct tables, built on first use
};

}  // namespace moesim::topologies
