// Building the cluster graph, and routing over it.
//
// Construction. Vertices: GPUs ("n3.gpu2"), one NVSwitch crossbar per NVLink domain when domains hold more than one
// GPU ("nvl0"), NICs when there is a network ("n3.nic2"), then per plane its leaves, spines and cores ("p2.leaf0",
// without "p2." when there is one plane). Each physical link adds two directed links, forward then reverse, so that
// link 2k + 1 is the reverse of link 2k:
//   GPU <-> its domain's NVSwitch   kNvLink  nvlink spec
//   GPU <-> each NIC it uses        kPcie    pcie spec (a shared NIC has one PCIe link per GPU)
//   NIC <-> its leaf                kNic     nic spec (cluster_shape.hpp: plane, rail and leaf of a NIC)
//   leaf <-> spine, spine <-> core  kFabric  fabric.link spec
// Uplink k of the a-th leaf of a pod goes to spine (a * leaf.up + k) % spines_in_pod of that pod. Whenever the spine
// count divides leaf.up (every preset) this is "uplink k goes to spine k % spines"; otherwise it still spreads the
// links evenly, so that no spine gets more than spine.down of them. Uplink k of spine i of pod p goes to core
// (p * spine.up + k) % cores_per_group of core group i (cluster_shape.hpp), so each core joins the same spine
// position in every pod, as in a k-ary fat tree. Parallel links stay separate edges, so ECMP spreads over them.
//
// Routing tables. For a destination GPU t, one breadth-first search over in-links from t gives vertices their
// distance in hops to t under two rules: a GPU other than t is never expanded (GPUs do not forward), and a NIC
// forwards only between its host side and the fabric, so t's own NICs (distance 1) are entered only from switches and
// any other NIC only from its GPUs. Past t's NICs, distances are those of the switches; everything below a switch
// follows from them at route time in O(degree): a host-side NIC is one hop more than its nearest switch, a GPU one
// more than its nearest NIC. So a table holds, per switch, its distance and its candidate next hops toward other
// switches (bits over the switch's out-link list), and, per NVLink domain, the distance of its nearest GPU and the
// lowest-indexed GPU at that distance (the PXN proxy). None of that depends on t beyond the switches its NICs hang
// from, so one table serves every destination on the same leaves (all GPUs of one rail of one unit): a 16k-GPU
// cluster builds hundreds of tables, not 16k. The last switch hands the flow down to t's NICs, found from t's own
// links (the down link is the reverse, 2k + 1 for 2k, of the NIC's link up). The 1024-GPU crossbar needs no table.
//
// Routes. Same domain: GPU -> NVSwitch -> GPU. Otherwise the route starts at the source, or, where the source has
// no network path or fabric.pxn is set, at the proxy: the GPU of the source's domain nearest to t (the source on a
// tie, then the lowest index), reached over NVLink. From there each hop picks among the candidates by a hash of
// (source, destination, salt, hop index), so equal salts give equal routes and different salts spread.
//
// Concurrency. Each destination has an atomic pointer to its table, so routing never locks once it is set. A
// thread that finds none looks the table up by its switches under tables_mutex_; if it does not exist yet, the
// thread builds it without the lock and inserts it unless another thread did first (the copies are identical).
#include "topologies/cluster.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <limits>
#include <map>
#include <stdexcept>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/connected_components.hpp>

#include "common/rng.hpp"
#include "topologies/cluster_shape.hpp"

namespace moesim::topologies {
namespace {

constexpr std::uint32_t kNoLink = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint16_t kUnreachable = std::numeric_limits<std::uint16_t>::max();
constexpr int kInfinite = std::numeric_limits<int>::max();

struct EdgeProperties {
  std::uint32_t link_idx = 0;
};

using BoostGraph =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, boost::no_property, EdgeProperties>;

// What Cluster::Graph holds; a plain struct here so that the helpers below can take it.
struct GraphData {
  BoostGraph graph;
  std::uint32_t first_switch = 0;  // switches are the last vertices: [first_switch, num_vertices)
  // Out-links of vertex v, in link order: out_links[out_begin[v] .. out_begin[v + 1]). The route walk reads this
  // flat copy of the Boost adjacency, and a switch's candidate bits index it.
  std::vector<std::uint32_t> out_begin;
  std::vector<std::uint32_t> out_links;
  // Copies of Link::dst per out_links entry and of Vertex::kind, packed densely for the route walk's scans.
  std::vector<std::uint32_t> out_dst;
  std::vector<VertexKind> kind;
  std::vector<std::uint32_t> gpu_up;        // by GPU: its link to the NVSwitch, kNoLink without NVLink
  std::vector<std::uint32_t> gpu_down;      // by GPU: the NVSwitch's link to it
  std::vector<std::uint32_t> switch_words;  // by switch: first word of its candidate bits; one extra entry at the end
};

struct TableData {
  std::vector<std::uint32_t> attach;       // the key: switches that the destination's NICs hang from, sorted
  std::vector<std::uint16_t> switch_dist;  // by switch: hops to the destination, kUnreachable if none
  std::vector<std::uint64_t> next_bits;    // switch-to-switch next hops of every switch, at GraphData::switch_words
  std::vector<std::uint16_t> domain_dist;  // by NVLink domain: hops from its nearest GPU, kUnreachable if none
  std::vector<std::int32_t> domain_proxy;  // by NVLink domain: the lowest-indexed GPU at domain_dist
};

struct Layout {
  std::uint32_t first_nvswitch = 0;  // vertex id ranges: GPUs, then NVSwitches, NICs and switches
  std::uint32_t first_nic = 0;
  std::uint32_t first_switch = 0;
};

class Builder {
 public:
  Builder(const ClusterConfig& config, std::vector<Vertex>& vertices, std::vector<Link>& links)
      : config_(config), vertices_(vertices), links_(links) {}

  Layout build() {
    const int num_gpus = config_.num_nodes * config_.gpus_per_node;
    const int gpus = config_.gpus_per_node;
    for (int gpu_idx = 0; gpu_idx < num_gpus; ++gpu_idx) {
      add_vertex(VertexKind::kGpu, node_name(gpu_idx / gpus) + ".gpu" + std::to_string(gpu_idx % gpus), gpu_idx);
    }
    Layout layout;
    layout.first_nvswitch = static_cast<std::uint32_t>(vertices_.size());
    const int domain_gpus = config_.nvlink.domain_gpus;
    if (domain_gpus > 1) {
      for (int domain_idx = 0; domain_idx < num_gpus / domain_gpus; ++domain_idx) {
        add_vertex(VertexKind::kNvSwitch, "nvl" + std::to_string(domain_idx));
      }
      for (int gpu_idx = 0; gpu_idx < num_gpus; ++gpu_idx) {
        add_cable(static_cast<std::uint32_t>(gpu_idx), layout.first_nvswitch + gpu_idx / domain_gpus, LinkKind::kNvLink,
                  config_.nvlink);
      }
    }
    layout.first_nic = static_cast<std::uint32_t>(vertices_.size());
    layout.first_switch = layout.first_nic;
    if (config_.fabric.kind == FabricSpec::Kind::kNone) return layout;

    const int per_node = config_.nic.per_node;
    for (int node_idx = 0; node_idx < config_.num_nodes; ++node_idx) {
      for (int nic_idx = 0; nic_idx < per_node; ++nic_idx) {
        add_vertex(VertexKind::kNic, node_name(node_idx) + ".nic" + std::to_string(nic_idx));
      }
    }
    for (int gpu_idx = 0; gpu_idx < num_gpus; ++gpu_idx) {
      const NicRange nics = nics_of_gpu(config_, gpu_idx % gpus);
      for (int nic_idx = nics.first; nic_idx < nics.first + nics.count; ++nic_idx) {
        add_cable(static_cast<std::uint32_t>(gpu_idx), nic_vertex(layout, gpu_idx / gpus, nic_idx), LinkKind::kPcie,
                  config_.pcie);
      }
    }
    layout.first_switch = static_cast<std::uint32_t>(vertices_.size());
    build_fat_tree(layout);
    return layout;
  }

 private:
  void build_fat_tree(const Layout& layout) {
    const FabricSpec& fabric = config_.fabric;
    const FatTreeShape shape = fat_tree_shape(config_);
    const std::uint32_t per_plane = static_cast<std::uint32_t>(shape.leaves + shape.spines + shape.cores);
    for (int plane_idx = 0; plane_idx < fabric.planes; ++plane_idx) {
      const std::string prefix = fabric.planes > 1 ? "p" + std::to_string(plane_idx) + "." : "";
      for (int i = 0; i < shape.leaves; ++i) add_vertex(VertexKind::kSwitch, prefix + "leaf" + std::to_string(i));
      for (int i = 0; i < shape.spines; ++i) add_vertex(VertexKind::kSwitch, prefix + "spine" + std::to_string(i));
      for (int i = 0; i < shape.cores; ++i) add_vertex(VertexKind::kSwitch, prefix + "core" + std::to_string(i));
    }
    const auto leaf = [&](int plane_idx, int leaf_idx) {
      return layout.first_switch + plane_idx * per_plane + static_cast<std::uint32_t>(leaf_idx);
    };
    const auto spine = [&](int plane_idx, int spine_idx) { return leaf(plane_idx, shape.leaves + spine_idx); };
    const auto core = [&](int plane_idx, int core_idx) { return spine(plane_idx, shape.spines + core_idx); };

    for (int node_idx = 0; node_idx < config_.num_nodes; ++node_idx) {
      for (int nic_idx = 0; nic_idx < config_.nic.per_node; ++nic_idx) {
        const int plane_idx = nic_idx % fabric.planes;
        const int leaf_idx = leaf_of(config_, shape, node_idx, nic_idx / fabric.planes);
        add_cable(nic_vertex(layout, node_idx, nic_idx), leaf(plane_idx, leaf_idx), LinkKind::kNic, config_.nic);
      }
    }
    if (!fabric.spine) return;
    for (int plane_idx = 0; plane_idx < fabric.planes; ++plane_idx) {
      int first_spine = 0;
      for (int pod_idx = 0; pod_idx < shape.pods; ++pod_idx) {
        const int pod_leaves = shape.leaves_in_pod(pod_idx);
        const int pod_spines = ceil_div(static_cast<long long>(pod_leaves) * fabric.leaf.up, fabric.spine->down);
        for (int a = 0; a < pod_leaves; ++a) {
          for (int k = 0; k < fabric.leaf.up; ++k) {
            const int spine_idx = first_spine + (a * fabric.leaf.up + k) % pod_spines;
            add_cable(leaf(plane_idx, pod_idx * shape.leaves_per_pod + a), spine(plane_idx, spine_idx),
                      LinkKind::kFabric, fabric.link);
          }
        }
        for (int i = 0; fabric.core && i < pod_spines; ++i) {
          for (int k = 0; k < fabric.spine->up; ++k) {
            const int core_idx = i * shape.cores_per_group + (pod_idx * fabric.spine->up + k) % shape.cores_per_group;
            add_cable(spine(plane_idx, first_spine + i), core(plane_idx, core_idx), LinkKind::kFabric, fabric.link);
          }
        }
        first_spine += pod_spines;
      }
    }
  }

  std::string node_name(int node_idx) const { return "n" + std::to_string(node_idx); }

  std::uint32_t nic_vertex(const Layout& layout, int node_idx, int nic_idx) const {
    return layout.first_nic + static_cast<std::uint32_t>(node_idx * config_.nic.per_node + nic_idx);
  }

  void add_vertex(VertexKind kind, std::string name, int gpu_idx = -1) {
    vertices_.push_back(Vertex{kind, gpu_idx, std::move(name)});
  }

  void add_cable(std::uint32_t a, std::uint32_t b, LinkKind kind, const LinkSpec& spec) {
    for (const auto& [src, dst] : {std::pair{a, b}, std::pair{b, a}}) {
      Link link;
      link.src = src;
      link.dst = dst;
      link.kind = kind;
      link.bandwidth_bps = spec.bandwidth_bps;
      link.efficiency = spec.efficiency;
      link.capacity_bps = spec.bandwidth_bps * spec.efficiency;
      link.latency_ps = spec.latency_ps;
      link.overhead_ps = spec.overhead_ps;
      links_.push_back(link);
    }
  }

  const ClusterConfig& config_;
  std::vector<Vertex>& vertices_;
  std::vector<Link>& links_;
};

int to_int(std::uint16_t dist) {
  return dist == kUnreachable ? kInfinite : dist;
}

// Hops from NIC `nic` up through the fabric to the table's destination (never to a GPU on its host side).
int nic_up_dist(const GraphData& graph, const TableData& table, std::uint32_t nic) {
  int best = kInfinite;
  for (std::uint32_t i = graph.out_begin[nic]; i < graph.out_begin[nic + 1]; ++i) {
    const std::uint32_t next = graph.out_dst[i];
    if (graph.kind[next] == VertexKind::kSwitch) {
      best = std::min(best, to_int(table.switch_dist[next - graph.first_switch]));
    }
  }
  return best == kInfinite ? kInfinite : best + 1;
}

// Hops from GPU `gpu` through one of its NICs to the table's destination, for a GPU outside the destination's
// NVLink domain (whose NICs therefore are never the destination's).
int gpu_network_dist(const GraphData& graph, const TableData& table, std::uint32_t gpu) {
  int best = kInfinite;
  for (std::uint32_t i = graph.out_begin[gpu]; i < graph.out_begin[gpu + 1]; ++i) {
    const std::uint32_t next = graph.out_dst[i];
    if (graph.kind[next] == VertexKind::kNic) best = std::min(best, nic_up_dist(graph, table, next));
  }
  return best == kInfinite ? kInfinite : best + 1;
}

// Walks a route toward one destination GPU over its table, by the rules of the file comment.
class Router {
 public:
  Router(const std::vector<Vertex>& vertices, const std::vector<Link>& links, const GraphData& graph,
         const TableData& table, std::uint32_t dst)
      : vertices_(vertices), links_(links), graph_(graph), table_(table), dst_(dst) {}

  int gpu_dist(std::uint32_t gpu) const { return gpu_network_dist(graph_, table_, gpu); }

  // Appends the links from GPU `from` (at `dist` hops) to the destination; `hop` numbers the first of them for the
  // ECMP hash.
  void walk(std::uint32_t from, int dist, std::uint64_t key, int hop, std::vector<std::uint32_t>& path) const {
    std::uint32_t v = from;
    for (; dist > 0; --dist, ++hop) {
      const std::uint64_t hash = hash_combine(key, static_cast<std::uint64_t>(hop));
      const std::uint32_t link_idx = graph_.kind[v] == VertexKind::kSwitch && dist > 2
                                         ? switch_next(v, hash)
                                         : chosen([&](auto&& visit) { candidates(v, dist, visit); }, hash);
      path.push_back(link_idx);
      v = links_[link_idx].dst;
    }
    if (v != dst_) throw std::logic_error("routing: the walk toward " + vertices_[dst_].name + " ended elsewhere");
  }

 private:
  // Calls visit(link) for each out-link of `v` (at `dist` hops, not a switch above the last) one hop closer.
  template <typename Visit>
  void candidates(std::uint32_t v, int dist, Visit&& visit) const {
    const VertexKind kind = graph_.kind[v];
    if (kind == VertexKind::kSwitch) {
      // The last switch: its links down to the destination's NICs are the reverses of those NICs' links up to it.
      for (std::uint32_t i = graph_.out_begin[dst_]; i < graph_.out_begin[dst_ + 1]; ++i) {
        const std::uint32_t nic = graph_.out_dst[i];
        if (graph_.kind[nic] != VertexKind::kNic) continue;
        for (std::uint32_t j = graph_.out_begin[nic]; j < graph_.out_begin[nic + 1]; ++j) {
          if (graph_.out_dst[j] == v) visit(graph_.out_links[j] ^ 1u);
        }
      }
      return;
    }
    for (std::uint32_t i = graph_.out_begin[v]; i < graph_.out_begin[v + 1]; ++i) {
      const std::uint32_t link_idx = graph_.out_links[i];
      const std::uint32_t next = graph_.out_dst[i];
      const VertexKind next_kind = graph_.kind[next];
      bool closer = false;
      if (kind == VertexKind::kGpu) {
        closer = next_kind == VertexKind::kNic && nic_up_dist(graph_, table_, next) == dist - 1;
      } else if (dist == 1) {
        closer = next == dst_;  // the destination's NIC hands the flow to it
      } else {
        closer = next_kind == VertexKind::kSwitch && to_int(table_.switch_dist[next - graph_.first_switch]) == dist - 1;
      }
      if (closer) visit(link_idx);
    }
  }

  template <typename Enumerate>
  std::uint32_t chosen(Enumerate&& enumerate, std::uint64_t hash) const {
    int count = 0;
    enumerate([&](std::uint32_t) { ++count; });
    if (count == 0) throw std::logic_error("routing: no next hop toward " + vertices_[dst_].name);
    int remaining = pick(hash, count);
    std::uint32_t result = kNoLink;
    enumerate([&](std::uint32_t link_idx) {
      if (remaining-- == 0) result = link_idx;
    });
    return result;
  }

  // A switch above the last: its candidates are precomputed bits over its out-links.
  std::uint32_t switch_next(std::uint32_t v, std::uint64_t hash) const {
    const std::uint32_t first_word = graph_.switch_words[v - graph_.first_switch];
    const std::uint32_t last_word = graph_.switch_words[v - graph_.first_switch + 1];
    int count = 0;
    for (std::uint32_t w = first_word; w < last_word; ++w) count += std::popcount(table_.next_bits[w]);
    if (count == 0) throw std::logic_error("routing: " + vertices_[v].name + " has no next hop");
    int remaining = pick(hash, count);
    for (std::uint32_t w = first_word;; ++w) {
      std::uint64_t bits = table_.next_bits[w];
      const int in_word = std::popcount(bits);
      if (remaining >= in_word) {
        remaining -= in_word;
        continue;
      }
      for (; remaining > 0; --remaining) bits &= bits - 1;
      const std::uint32_t bit = (w - first_word) * 64 + static_cast<std::uint32_t>(std::countr_zero(bits));
      return graph_.out_links[graph_.out_begin[v] + bit];
    }
  }

  static int pick(std::uint64_t hash, int count) {
    // Lemire's multiply-shift on the high 32 bits: uniform enough for ECMP, and no 128-bit arithmetic.
    return static_cast<int>(((hash >> 32) * static_cast<std::uint64_t>(count)) >> 32);
  }

  const std::vector<Vertex>& vertices_;
  const std::vector<Link>& links_;
  const GraphData& graph_;
  const TableData& table_;
  std::uint32_t dst_;
};

}  // namespace

struct Cluster::Graph : GraphData {
  std::unique_ptr<std::atomic<const DestTable*>[]> published;        // by destination GPU; null until first needed
  std::map<std::vector<std::uint32_t>, const DestTable*> by_attach;  // under tables_mutex_
};

struct Cluster::DestTable : TableData {};

const char* link_kind_name(LinkKind kind) {
  switch (kind) {
    case LinkKind::kNvLink:
      return "nvlink";
    case LinkKind::kPcie:
      return "pcie";
    case LinkKind::kNic:
      return "nic";
    case LinkKind::kFabric:
      return "fabric";
  }
  return "?";
}

Cluster::Cluster(ClusterConfig config) : config_(std::move(config)), graph_(std::make_unique<Graph>()) {
  validate_cluster(config_);
  const Layout layout = Builder(config_, vertices_, links_).build();
  Graph& g = *graph_;
  g.first_switch = layout.first_switch;

  const std::size_t num_v = vertices_.size();
  g.graph = BoostGraph(num_v);
  g.out_begin.assign(num_v + 1, 0);
  for (std::uint32_t link_idx = 0; link_idx < links_.size(); ++link_idx) {
    const Link& link = links_[link_idx];
    boost::add_edge(link.src, link.dst, EdgeProperties{link_idx}, g.graph);
    ++g.out_begin[link.src + 1];
  }
  for (std::size_t v = 0; v < num_v; ++v) g.out_begin[v + 1] += g.out_begin[v];
  g.out_links.resize(links_.size());
  g.out_dst.resize(links_.size());
  std::vector<std::uint32_t> fill(g.out_begin.begin(), g.out_begin.end() - 1);
  for (std::uint32_t link_idx = 0; link_idx < links_.size(); ++link_idx) {
    const std::uint32_t at = fill[links_[link_idx].src]++;
    g.out_links[at] = link_idx;
    g.out_dst[at] = links_[link_idx].dst;
  }
  g.kind.reserve(num_v);
  for (const Vertex& vertex : vertices_) g.kind.push_back(vertex.kind);

  const auto gpu_count = static_cast<std::size_t>(num_gpus());
  g.gpu_up.assign(gpu_count, kNoLink);
  g.gpu_down.assign(gpu_count, kNoLink);
  for (std::uint32_t link_idx = 0; link_idx < links_.size(); ++link_idx) {
    const Link& link = links_[link_idx];
    if (link.kind != LinkKind::kNvLink) continue;
    if (link.src < gpu_count) g.gpu_up[link.src] = link_idx;
    if (link.dst < gpu_count) g.gpu_down[link.dst] = link_idx;
  }
  g.switch_words.assign(num_v - g.first_switch + 1, 0);
  for (std::uint32_t v = g.first_switch; v < num_v; ++v) {
    const std::uint32_t degree = g.out_begin[v + 1] - g.out_begin[v];
    g.switch_words[v - g.first_switch + 1] = g.switch_words[v - g.first_switch] + (degree + 63) / 64;
  }

  // Every GPU must reach every other one; with the checks validate_cluster makes, only a cluster without a network
  // that spans several NVLink domains fails here, but the check is cheap and catches whatever they miss.
  boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS> undirected(num_v);
  for (std::size_t link_idx = 0; link_idx < links_.size(); link_idx += 2) {
    boost::add_edge(links_[link_idx].src, links_[link_idx].dst, undirected);
  }
  std::vector<int> component(num_v);
  if (boost::connected_components(undirected, component.data()) > 1) {
    std::uint32_t apart = 0;
    while (component[apart] == component[0]) ++apart;
    std::string message = config_.source + ": fabric: the cluster is not connected: " + vertices_[apart].name +
                          " cannot reach " + vertices_[0].name;
    if (config_.fabric.kind == FabricSpec::Kind::kNone) {
      message += " (fabric.kind is none, so all GPUs must be in one NVLink domain, but there are " +
                 std::to_string(num_gpus() / config_.nvlink.domain_gpus) + ")";
    }
    throw std::invalid_argument(message);
  }

  g.published = std::make_unique<std::atomic<const DestTable*>[]>(gpu_count);
}

Cluster::~Cluster() = default;

std::string Cluster::link_name(std::uint32_t link_idx) const {
  const Link& link = links_[link_idx];
  return vertices_[link.src].name + " -> " + vertices_[link.dst].name;
}

const Cluster::DestTable& Cluster::table_for(int dst_gpu) const {
  std::atomic<const DestTable*>& slot = graph_->published[static_cast<std::size_t>(dst_gpu)];
  if (const DestTable* table = slot.load(std::memory_order_acquire)) return *table;

  const Graph& g = *graph_;
  const auto dst = static_cast<std::uint32_t>(dst_gpu);
  std::vector<std::uint32_t> attach;
  for (std::uint32_t i = g.out_begin[dst]; i < g.out_begin[dst + 1]; ++i) {
    const std::uint32_t nic = g.out_dst[i];
    if (g.kind[nic] != VertexKind::kNic) continue;
    for (std::uint32_t j = g.out_begin[nic]; j < g.out_begin[nic + 1]; ++j) {
      const std::uint32_t next = g.out_dst[j];
      if (g.kind[next] == VertexKind::kSwitch) attach.push_back(next);
    }
  }
  std::sort(attach.begin(), attach.end());
  attach.erase(std::unique(attach.begin(), attach.end()), attach.end());
  {
    std::lock_guard<std::mutex> lock(tables_mutex_);
    if (auto found = graph_->by_attach.find(attach); found != graph_->by_attach.end()) {
      slot.store(found->second, std::memory_order_release);
      return *found->second;
    }
  }

  const std::size_t num_v = vertices_.size();
  std::vector<std::uint16_t> dist(num_v, kUnreachable);
  std::vector<std::uint32_t> queue;
  dist[dst] = 0;
  queue.push_back(dst);
  for (std::size_t head = 0; head < queue.size(); ++head) {
    const std::uint32_t v = queue[head];
    const VertexKind kind = g.kind[v];
    // Only the destination, its NICs and switches have predecessors whose distance the table needs: an NVSwitch's
    // in-neighbours are GPUs, which never forward, and a NIC below a switch has only its GPUs, whose distance
    // follows from the switches at route time.
    if (kind == VertexKind::kNvSwitch || (kind == VertexKind::kGpu && v != dst)) continue;
    if (dist[v] + 1 >= kUnreachable) throw std::logic_error(config_.source + ": routing: path too long");
    for (auto [e, end] = boost::in_edges(v, g.graph); e != end; ++e) {
      const auto u = static_cast<std::uint32_t>(boost::source(*e, g.graph));
      if (dist[u] != kUnreachable) continue;
      // The destination is entered from its NICs (and NVSwitch); a NIC of the destination only from a switch; a
      // switch from switches (its NICs are host side: their distance is derived).
      const VertexKind from = g.kind[u];
      const bool allowed = kind == VertexKind::kGpu ? from != VertexKind::kGpu : from == VertexKind::kSwitch;
      if (!allowed) continue;
      dist[u] = static_cast<std::uint16_t>(dist[v] + 1);
      queue.push_back(u);
    }
  }

  auto table = std::make_unique<DestTable>();
  table->attach = attach;
  table->switch_dist.assign(dist.begin() + g.first_switch, dist.end());
  table->next_bits.assign(g.switch_words.back(), 0);
  for (std::uint32_t v = g.first_switch; v < num_v; ++v) {
    if (dist[v] == kUnreachable) continue;
    const std::uint32_t first_word = g.switch_words[v - g.first_switch];
    for (std::uint32_t i = g.out_begin[v]; i < g.out_begin[v + 1]; ++i) {
      const std::uint32_t u = g.out_dst[i];
      if (g.kind[u] == VertexKind::kSwitch && dist[u] + 1 == dist[v]) {
        const std::uint32_t bit = i - g.out_begin[v];
        table->next_bits[first_word + bit / 64] |= std::uint64_t{1} << (bit % 64);
      }
    }
  }
  const int domain_gpus = config_.nvlink.domain_gpus;
  const std::size_t num_domains = static_cast<std::size_t>(num_gpus() / domain_gpus);
  table->domain_dist.assign(num_domains, kUnreachable);
  table->domain_proxy.assign(num_domains, -1);
  for (int gpu_idx = 0; gpu_idx < num_gpus(); ++gpu_idx) {
    const int d = gpu_network_dist(g, *table, static_cast<std::uint32_t>(gpu_idx));
    const auto domain_idx = static_cast<std::size_t>(domain_of(gpu_idx));
    if (d < to_int(table->domain_dist[domain_idx])) {
      table->domain_dist[domain_idx] = static_cast<std::uint16_t>(d);
      table->domain_proxy[domain_idx] = gpu_idx;
    }
  }

  std::lock_guard<std::mutex> lock(tables_mutex_);
  auto [found, inserted] = graph_->by_attach.emplace(std::move(attach), table.get());
  if (inserted) tables_.push_back(std::move(table));
  slot.store(found->second, std::memory_order_release);
  return *found->second;
}

void Cluster::route(int src_gpu, int dst_gpu, std::uint64_t salt, std::vector<std::uint32_t>& path) const {
  if (src_gpu < 0 || dst_gpu < 0 || src_gpu >= num_gpus() || dst_gpu >= num_gpus()) {
    throw std::out_of_range("Cluster::route: GPU " + std::to_string(src_gpu) + " -> " + std::to_string(dst_gpu) +
                            " outside [0, " + std::to_string(num_gpus()) + ")");
  }
  if (src_gpu == dst_gpu) return;
  const Graph& g = *graph_;
  const auto src = static_cast<std::size_t>(src_gpu);
  const auto dst = static_cast<std::size_t>(dst_gpu);
  if (domain_of(src_gpu) == domain_of(dst_gpu)) {
    // One crossbar per domain: a single path, nothing for ECMP to choose.
    path.push_back(g.gpu_up[src]);
    path.push_back(g.gpu_down[dst]);
    return;
  }

  const DestTable& table = table_for(dst_gpu);
  const Router router(vertices_, links_, g, table, static_cast<std::uint32_t>(dst_gpu));
  const std::uint64_t key = hash_combine(hash_combine(static_cast<std::uint64_t>(src_gpu), dst), salt);
  const int src_dist = router.gpu_dist(static_cast<std::uint32_t>(src_gpu));
  if (!config_.fabric.pxn && src_dist != kInfinite) {
    router.walk(static_cast<std::uint32_t>(src_gpu), src_dist, key, 0, path);
    return;
  }
  const auto domain_idx = static_cast<std::size_t>(domain_of(src_gpu));
  const int proxy_dist = to_int(table.domain_dist[domain_idx]);
  if (proxy_dist == kInfinite) {
    throw std::logic_error(config_.source + ": no route from " + vertices_[src].name + " to " + vertices_[dst].name);
  }
  const int proxy = src_dist == proxy_dist ? src_gpu : table.domain_proxy[domain_idx];
  int hop = 0;
  if (proxy != src_gpu) {
    path.push_back(g.gpu_up[src]);
    path.push_back(g.gpu_down[static_cast<std::size_t>(proxy)]);
    hop = 2;
  }
  router.walk(static_cast<std::uint32_t>(proxy), proxy_dist, key, hop, path);
}

TimePs Cluster::path_latency(const std::uint32_t* path, std::size_t num_hops) const {
  TimePs latency = 0;
  TimePs overhead = 0;
  for (std::size_t i = 0; i < num_hops; ++i) {
    const Link& link = links_[path[i]];
    latency += link.latency_ps;
    overhead = std::max(overhead, link.overhead_ps);
  }
  return latency + overhead;
}

}  // namespace moesim::topologies
