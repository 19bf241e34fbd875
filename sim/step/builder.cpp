#include "sim/step/builder.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "sim/a2a.hpp"
#include "sim/collectives/ring.hpp"
#include "sim/step/layer_ops.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::step {
namespace {

constexpr int kCompute = 0;
constexpr int kLayerComm = 1;
constexpr int kPipeComm = 2;
constexpr int kDpComm = 3;
constexpr double kGradBytes = 2.0;    // BF16 activation gradients on the wire
constexpr double kActBytes = 2.0;     // BF16 activations
constexpr double kReduceBytes = 4.0;  // FP32 gradient reduction (Megatron's default main-grad precision)
constexpr double kParamBytes = 2.0;   // BF16 parameters gathered after the optimizer (ZeRO >= 1)

using workloads::ParallelGroup;

std::size_t to_size(std::int64_t i) {
  return static_cast<std::size_t>(i);
}

TimePs total_time(const compute::DeviceProfile& device, const std::vector<LayerOp>& ops) {
  TimePs total = 0;
  for (const LayerOp& op : ops) total += compute::op_time(device, op.op);
  return total;
}

// The routing of one MoE layer on one stage, and what it costs that stage.
struct MoeLayerCost {
  TimePs experts_forward = 0;  // the slowest EP rank's grouped GEMMs
  TimePs experts_backward = 0;
  int dispatch = -1;  // collective specs: token copies, dispatch direction
  int combine = -1;
  int dispatch_grad = -1;  // backward of the combine: the dispatch pattern, gradients on the wire
  int combine_grad = -1;   // backward of the dispatch
  // With expert-TP (etp > 1): the all-gather of the received copies over the ETP group before the experts and the
  // reduce-scatter of their outputs after; backward: all-gather of the output gradients, reduce-scatter of the
  // input gradients. -1 without.
  int etp_gather = -1;
  int etp_scatter = -1;
  int etp_gather_grad = -1;
  int etp_scatter_grad = -1;
};

// What each block's kernels cost: the same in every layer and micro-batch (one shape), so timed once.
struct BlockTimes {
  TimePs attention_forward = 0;
  TimePs attention_backward = 0;  // selective recomputation included
  TimePs ffn_forward = 0;         // dense layers
  TimePs ffn_backward = 0;
  TimePs router_forward = 0;  // MoE layers
  TimePs router_backward = 0;
  bool has_shared = false;
  TimePs shared_forward = 0;
  TimePs shared_backward = 0;
  TimePs combine_forward = 0;
  TimePs combine_backward = 0;
  TimePs embedding_forward = 0;
  TimePs embedding_backward = 0;
  TimePs head_forward = 0;
  TimePs head_backward = 0;
};

class StepBuilder {
 public:
  StepBuilder(const topologies::Cluster& cluster, const compute::CostProfile& profile, const StepConfig& config)
      : cluster_(cluster),
        config_(config),
        model_(config.model),
        layout_(config.layout),
        device_(profile.device(cluster.config().gpu.name, "cluster gpu.name")) {
    workloads::validate_layout(layout_, model_, cluster.num_gpus());
    if (config.seq_len < 1) throw std::invalid_argument("seq_len: must be >= 1");
    shape_.sequences = layout_.mbs;
    shape_.seq_len = config.seq_len;
    shape_.tp = layout_.tp;
    shape_.etp = layout_.etp;
    shape_.gemm_precision = config.gemm_precision;
    if (config.mode == workloads::StepMode::kDecode) {
      // One new token per sequence, attending to the context already cached.
      if (config.context_len < 1) throw std::invalid_argument("context: decode needs a context length >= 1");
      shape_.seq_len = 1;
      shape_.kv_cache_len = config.context_len;
    }
    num_microbatches_ = static_cast<int>(workloads::num_microbatches(layout_));
    // Layers of each virtual stage, in model order.
    const std::vector<int> counts = workloads::virtual_stage_layers(model_, layout_);
    int first = 0;
    for (const int count : counts) {
      virtual_first_layer_.push_back(first);
      virtual_num_layers_.push_back(count);
      first += count;
    }
    // MoE-layer index of each layer (the routing's `layer`), -1 for dense ones.
    int moe_idx = 0;
    for (int l = 0; l < model_.num_layers; ++l) moe_index_.push_back(model_.is_moe_layer(l) ? moe_idx++ : -1);
    time_blocks();
  }

  void time_blocks() {
    BlockTimes& t = times_;
    t.attention_forward = total_time(device_, attention_forward(model_, shape_));
    t.attention_backward = total_time(device_, attention_backward(model_, shape_));
    if (config_.recompute == workloads::Recompute::kSelective) {
      // Selective recomputation (Korthikanti et al.): the attention core's forward runs again in its backward.
      for (const LayerOp& op : attention_forward(model_, shape_)) {
        if (op.op.kind == compute::OpKind::kAttention) t.attention_backward += compute::op_time(device_, op.op);
      }
    }
    if (model_.num_dense_layers() > 0) {
      t.ffn_forward = total_time(device_, dense_ffn_forward(model_, shape_));
      t.ffn_backward = total_time(device_, dense_ffn_backward(model_, shape_));
    }
    if (model_.num_moe_layers() > 0) {
      t.router_forward = total_time(device_, router_forward(model_, shape_));
      t.router_backward = total_time(device_, router_backward(model_, shape_));
      const std::vector<LayerOp> shared = shared_experts_forward(model_, shape_);
      t.has_shared = !shared.empty();
      t.shared_forward = total_time(device_, shared);
      t.shared_backward = total_time(device_, shared_experts_backward(model_, shape_));
      t.combine_forward = total_time(device_, combine_forward(model_, shape_));
      t.combine_backward = total_time(device_, combine_backward(model_, shape_));
    }
    t.embedding_forward = total_time(device_, embedding_forward(model_, shape_));
    t.embedding_backward = total_time(device_, embedding_backward(model_, shape_));
    t.head_forward = total_time(device_, head_forward(model_, shape_));
    t.head_backward = total_time(device_, head_backward(model_, shape_));
  }

  // Compute alone, with every expert at the mean load (top-k x tokens x ep / experts copies from the group),
  // through the schedule evaluator with free communication, plus the optimizer: see step_lower_bound.
  TimePs lower_bound() {
    const int p = layout_.pp;
    const int v = layout_.vpp;
    // An ETP group's expert shard sees the copies of its etp EP groups (see moe_cost).
    const std::int64_t local_tokens =
        shape_.tokens() / layout_.tp * model_.num_topk * layout_.ep * layout_.etp / model_.num_experts;
    const std::vector<std::int64_t> loads(static_cast<std::size_t>(model_.num_experts / layout_.ep), local_tokens);
    const TimePs experts_forward_time = total_time(device_, experts_forward(model_, shape_, loads));
    const TimePs experts_backward_time = total_time(device_, experts_backward(model_, shape_, loads));
    std::vector<workloads::StageCost> costs(static_cast<std::size_t>(p));
    for (int vs = 0; vs < p * v; ++vs) {
      workloads::StageCost& cost = costs[static_cast<std::size_t>(vs % p)];
      const int first = virtual_first_layer_[static_cast<std::size_t>(vs)];
      for (int layer = first; layer < first + virtual_num_layers_[static_cast<std::size_t>(vs)]; ++layer) {
        const bool is_moe = model_.is_moe_layer(layer);
        cost.forward_ps += times_.attention_forward;
        cost.backward_ps += times_.attention_backward;
        const TimePs forward =
            is_moe ? times_.router_forward + times_.shared_forward + experts_forward_time + times_.combine_forward
                   : times_.ffn_forward;
        cost.forward_ps += forward;
        cost.backward_ps +=
            is_moe ? times_.router_backward + times_.shared_backward + experts_backward_time + times_.combine_backward
                   : times_.ffn_backward;
        if (config_.recompute == workloads::Recompute::kFull) {
          cost.backward_ps += times_.attention_forward + forward;
        }
      }
    }
    costs.front().forward_ps += times_.embedding_forward;
    costs.front().backward_ps += times_.embedding_backward;
    costs.back().forward_ps += times_.head_forward;
    costs.back().backward_ps += times_.head_backward;
    for (workloads::StageCost& cost : costs) {  // the evaluator takes one cost per chunk pass
      cost.forward_ps /= v;
      cost.backward_ps /= v;
    }
    const auto order = workloads::pipeline_order(config_.schedule, p, num_microbatches_, v);
    return workloads::evaluate_pipeline(order, num_microbatches_, v, costs, 0).makespan_ps;
  }

  StepResult build_and_run() {
    const int p = layout_.pp;
    const int v = layout_.vpp;
    const auto order = workloads::pipeline_order(config_.schedule, p, num_microbatches_, v);
    // Pass 1: every stage's tasks in its schedule order, remembering where each pipeline op starts and its send.
    // Inference runs the forwards alone, in the schedule's order, with no gradients and no optimizer.
    const bool is_training = config_.mode == workloads::StepMode::kTrain;
    for (int s = 0; s < p; ++s) {
      for (const workloads::PipelineOp& op : order[static_cast<std::size_t>(s)]) {
        if (op.is_forward || is_training) add_pipeline_op(s, op);
      }
      if (is_training) add_gradient_reduction_and_optimizer(s);
    }
    // Pass 2: a pipeline op on a stage waits for the send that feeds it.
    for (const auto& [key, first_task] : first_task_) {
      const auto [is_forward, m, c, s] = key;
      const int virtual_stage = c * p + s;
      const int feeding = is_forward ? virtual_stage - 1 : virtual_stage + 1;
      if (feeding < 0 || feeding >= p * v) continue;  // the first (last) virtual stage has no predecessor
      const auto it = send_task_.find({is_forward, m, feeding / p, feeding % p});
      if (it == send_task_.end()) throw std::logic_error("step: a pipeline op has no feeding send");
      result_.graph.add_dependency(it->second, first_task);
    }
    result_.execution = execute(cluster_, result_.graph, config_.executor);
    summarize();
    return std::move(result_);
  }

 private:
  using OpKey = std::tuple<bool, int, int, int>;  // forward?, micro-batch, chunk, stage

  // The GPUs of stage s, and its groups of a kind (each a list of global GPUs).
  std::vector<std::vector<int>> stage_groups(int s, ParallelGroup kind) const {
    std::vector<std::vector<int>> out;
    for (auto& group : workloads::all_groups(layout_, kind)) {
      if (workloads::rank_coords(layout_, group.front()).pp_idx == s) out.push_back(std::move(group));
    }
    return out;
  }

  TaskId compute(int s, const std::string& name, const std::string& category, TimePs duration) {
    return result_.graph.add_compute(s, kCompute, name, category, duration);
  }

  TaskId collective(int s, int stream, const std::string& name, const std::string& category, int spec) {
    return result_.graph.add_collective(s, stream, name, category, spec);
  }

  // A ring collective over every group of a kind in stage s, as one collective (they run at once).
  int ring_spec(int s, ParallelGroup kind, collectives::RingCollective ring, double bytes) {
    const std::string signature = "ring s" + std::to_string(s) + " " + workloads::parallel_group_name(kind) + " " +
                                  std::to_string(static_cast<int>(ring)) + " " + std::to_string(bytes);
    const auto it = specs_.find(signature);
    if (it != specs_.end()) return it->second;
    CollectiveSpec spec;
    spec.signature = signature;
    const collectives::TransferGraph::NodeIdx start = spec.graph.add_join();
    const collectives::TransferGraph::NodeIdx end = spec.graph.add_join();
    for (const auto& group : stage_groups(s, kind)) {
      const std::size_t first_node = spec.graph.size();
      const collectives::TransferGraph::NodeIdx last = collectives::build_ring(spec.graph, ring, group, bytes);
      spec.graph.add_edge(start, static_cast<collectives::TransferGraph::NodeIdx>(first_node));
      spec.graph.add_edge(last, end);
    }
    return specs_[signature] = result_.graph.add_collective_spec(std::move(spec));
  }

  // Every GPU of stage `from` sends `bytes` to its peer (same coordinates) in stage `to`.
  int send_spec(int from, int to, double bytes) {
    const std::string signature =
        "send " + std::to_string(from) + "->" + std::to_string(to) + " " + std::to_string(bytes);
    const auto it = specs_.find(signature);
    if (it != specs_.end()) return it->second;
    CollectiveSpec spec;
    spec.signature = signature;
    const int stride = layout_.dp * layout_.tp;  // pp is the outermost coordinate of a rank
    for (int r = 0; r < stride; ++r) collectives::build_send(spec.graph, from * stride + r, to * stride + r, bytes);
    return specs_[signature] = result_.graph.add_collective_spec(std::move(spec));
  }

  // The routing of MoE layer `layer` (a model layer index) on stage s: sampled once, costed once.
  const MoeLayerCost& moe_cost(int s, int layer) {
    const auto it = moe_costs_.find(layer);
    if (it != moe_costs_.end()) return it->second;
    // The stage's EP groups, one after another: the traffic builder forms groups of ep consecutive GPUs.
    std::vector<int> gpu_of;
    for (const auto& group : stage_groups(s, ParallelGroup::kEp))
      gpu_of.insert(gpu_of.end(), group.begin(), group.end());
    std::vector<int> node_of_gpu(gpu_of.size());
    for (std::size_t i = 0; i < gpu_of.size(); ++i) node_of_gpu[i] = cluster_.scale_up_unit_of(gpu_of[i]);
    workloads::TrafficOptions options;
    options.ep = layout_.ep;
    options.tokens_per_rank = shape_.tokens() / layout_.tp;  // each TP rank dispatches its share of the tokens
    options.num_experts = model_.num_experts;
    options.num_topk = model_.num_topk;
    options.routing = config_.routing;
    options.seed = config_.seed;
    options.placement = config_.placement;
    options.layer = moe_index_[static_cast<std::size_t>(layer)];
    const workloads::LayerTraffic traffic = workloads::build_layer_traffic(node_of_gpu, options);

    MoeLayerCost cost;
    // Expert compute. With expert-TP, the etp ranks that share an expert shard (the same ep_idx in the EP groups
    // of every etp_idx with one edp_idx) gather the copies each of them received (all-gather over the ETP group),
    // and each runs all of them through its 1/etp of the intermediate dimension; a reduce-scatter returns the
    // outputs. So an ETP group's load of expert e is the sum over its etp EP groups. Every ETP group's every rank
    // is costed; the slowest sets the time (the combine waits for all of them).
    const std::vector<int> rank_of_expert = workloads::place_experts(config_.placement, model_.num_experts, layout_.ep);
    const auto num_experts = to_size(model_.num_experts);
    std::map<int, std::vector<std::int64_t>> load_of_edp;  // edp_idx -> copies per expert, summed over etp
    for (std::size_t g = 0; g < traffic.groups.size(); ++g) {
      const int edp = workloads::rank_coords(layout_, gpu_of[g * to_size(layout_.ep)]).edp_idx;
      std::vector<std::int64_t>& load = load_of_edp[edp];
      load.resize(num_experts, 0);
      for (std::size_t e = 0; e < num_experts; ++e) load[e] += traffic.tokens_per_group_expert[g * num_experts + e];
    }
    std::int64_t max_gathered = 0;  // the most copies an ETP group holds after its all-gather
    for (const auto& [edp, load] : load_of_edp) {
      for (int r = 0; r < layout_.ep; ++r) {
        std::vector<std::int64_t> local;
        for (std::size_t e = 0; e < num_experts; ++e) {
          if (rank_of_expert[e] == r) local.push_back(load[e]);
        }
        std::int64_t copies = 0;
        for (const std::int64_t c : local) copies += c;
        max_gathered = std::max(max_gathered, copies);
        cost.experts_forward =
            std::max(cost.experts_forward, total_time(device_, experts_forward(model_, shape_, local)));
        cost.experts_backward =
            std::max(cost.experts_backward, total_time(device_, experts_backward(model_, shape_, local)));
      }
    }
    if (layout_.etp > 1) {
      // The gathered copies (dispatch precision) and the outputs reduce-scattered back (BF16), over every ETP group
      // of the stage at the size of the fullest one.
      const double copies = static_cast<double>(max_gathered);
      cost.etp_gather = ring_spec(s, ParallelGroup::kEtp, collectives::RingCollective::kAllGather,
                                  copies * model_.dispatch_bytes_per_token());
      cost.etp_scatter = ring_spec(s, ParallelGroup::kEtp, collectives::RingCollective::kReduceScatter,
                                   copies * model_.hidden_size * kActBytes);
      cost.etp_gather_grad = ring_spec(s, ParallelGroup::kEtp, collectives::RingCollective::kAllGather,
                                       copies * model_.hidden_size * kGradBytes);
      cost.etp_scatter_grad = ring_spec(s, ParallelGroup::kEtp, collectives::RingCollective::kReduceScatter,
                                        copies * model_.hidden_size * kGradBytes);
    }
    collectives::TransferGraph dispatch;
    for (const auto& group : traffic.groups) {
      collectives::build_all_to_all(dispatch, layer_demand(group, true, &gpu_of), config_.a2a_algorithm);
    }
    const collectives::TransferGraph combine = dispatch.reversed();
    const std::string name = "a2a layer " + std::to_string(layer);
    const double grad_bytes = static_cast<double>(model_.hidden_size) * kGradBytes;
    auto add = [&](const std::string& what, const collectives::TransferGraph& graph, double bytes) {
      CollectiveSpec spec;
      spec.signature = name + " " + what + " " + std::to_string(bytes);
      spec.graph = graph;
      spec.bytes_per_unit = bytes;
      return result_.graph.add_collective_spec(std::move(spec));
    };
    cost.dispatch = add("dispatch", dispatch, model_.dispatch_bytes_per_token());
    cost.combine = add("combine", combine, model_.combine_bytes_per_token());
    cost.dispatch_grad = add("dispatch-grad", dispatch, grad_bytes);
    cost.combine_grad = add("combine-grad", combine, grad_bytes);
    return moe_costs_.emplace(layer, cost).first->second;
  }

  // One forward or backward of a micro-batch's chunk on stage s: its layers' tasks, then the send onward.
  void add_pipeline_op(int s, const workloads::PipelineOp& op) {
    const int p = layout_.pp;
    const int virtual_stage = op.chunk_idx * p + s;
    const int first = virtual_first_layer_[static_cast<std::size_t>(virtual_stage)];
    const int count = virtual_num_layers_[static_cast<std::size_t>(virtual_stage)];
    const std::string tag =
        std::string(op.is_forward ? "fwd" : "bwd") + " mb" + std::to_string(op.microbatch_idx) + " ";
    const std::size_t first_task = result_.graph.size();
    const bool is_first_virtual = virtual_stage == 0;
    const bool is_last_virtual = virtual_stage == p * layout_.vpp - 1;
    const double tp_bytes = static_cast<double>(shape_.tokens()) * model_.hidden_size * kActBytes;
    auto chain = [&](TaskId task) {  // a compute task waits for the last communication of its micro-batch
      if (last_comm_ != kNoTask) result_.graph.add_dependency(last_comm_, task);
      last_comm_ = kNoTask;
      return task;
    };
    auto comm_after = [&](TaskId before, TaskId comm) {
      result_.graph.add_dependency(before, comm);
      last_comm_ = comm;
      return comm;
    };
    // With TP, a ring all-reduce of the block's output over every TP group of the stage; the next compute
    // waits for it.
    auto tp_reduce = [&](TaskId block, const std::string& name) {
      if (layout_.tp == 1) return;
      comm_after(block,
                 collective(s, kLayerComm, name + " tp", "tp",
                            ring_spec(s, ParallelGroup::kTp, collectives::RingCollective::kAllReduce, tp_bytes)));
    };
    last_comm_ = kNoTask;

    std::vector<int> layers(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) layers[static_cast<std::size_t>(i)] = first + i;
    if (!op.is_forward) std::reverse(layers.begin(), layers.end());

    if (op.is_forward && is_first_virtual) {
      chain(compute(s, tag + "embedding", "embedding", times_.embedding_forward));
    }
    if (!op.is_forward && is_last_virtual) {
      chain(compute(s, tag + "head", "head", times_.head_backward));
    }
    for (const int layer : layers) {
      const std::string name = tag + "layer " + std::to_string(layer) + " ";
      const bool is_moe = model_.is_moe_layer(layer);
      // The layer's forward: attention, then the MoE block or the dense FFN.
      auto emit_forward = [&](const std::string& prefix, const std::string& category) {
        const TaskId attention = chain(
            compute(s, prefix + "attention", category.empty() ? "attention" : category, times_.attention_forward));
        tp_reduce(attention, prefix + "attention");
        if (is_moe) {
          add_moe_forward(s, layer, prefix, chain, comm_after, category);
        } else {
          const TaskId ffn = chain(compute(s, prefix + "ffn", category.empty() ? "ffn" : category, times_.ffn_forward));
          tp_reduce(ffn, prefix + "ffn");
        }
      };
      if (op.is_forward) {
        emit_forward(name, "");
      } else {
        // Full recomputation: the layer's forward runs again (its communication too) right before its backward,
        // as Megatron's per-layer checkpointing does.
        if (config_.recompute == workloads::Recompute::kFull) emit_forward(name + "recompute ", "recompute");
        if (is_moe) {
          add_moe_backward(s, layer, name, chain, comm_after);
        } else {
          const TaskId ffn = chain(compute(s, name + "ffn", "ffn", times_.ffn_backward));
          tp_reduce(ffn, name + "ffn");
        }
        const TaskId attention = chain(compute(s, name + "attention", "attention", times_.attention_backward));
        tp_reduce(attention, name + "attention");
        last_backward_[{s, layer}] = last_task();
      }
    }
    if (op.is_forward && is_last_virtual) {
      chain(compute(s, tag + "head", "head", times_.head_forward));
    }
    if (!op.is_forward && is_first_virtual) {
      chain(compute(s, tag + "embedding", "embedding", times_.embedding_backward));
    }
    // The send onward (activations forward, gradients backward), after the chunk's last task.
    const int next_virtual = op.is_forward ? virtual_stage + 1 : virtual_stage - 1;
    if (next_virtual >= 0 && next_virtual < p * layout_.vpp) {
      const double bytes = static_cast<double>(shape_.tokens()) * model_.hidden_size *
                           (op.is_forward ? kActBytes : kGradBytes) / layout_.tp;
      const TaskId last = last_task();
      const TaskId send = collective(s, kPipeComm, tag + "send", "pp", send_spec(s, next_virtual % p, bytes));
      result_.graph.add_dependency(last, send);
      send_task_[{op.is_forward, op.microbatch_idx, op.chunk_idx, s}] = send;
    }
    first_task_[{op.is_forward, op.microbatch_idx, op.chunk_idx, s}] = static_cast<TaskId>(first_task);
  }

  // `category` overrides the compute tasks' categories (e.g. "recompute"); empty keeps their own.
  template <class Chain, class CommAfter>
  void add_moe_forward(int s, int layer, const std::string& name, Chain& chain, CommAfter& comm_after,
                       const std::string& category) {
    const MoeLayerCost& cost = moe_cost(s, layer);
    auto as = [&](const char* own) { return category.empty() ? std::string(own) : category; };
    const TaskId router = chain(compute(s, name + "router", as("router"), times_.router_forward));
    comm_after(router, collective(s, kLayerComm, name + "dispatch", "ep", cost.dispatch));
    // The shared experts need only the router's input: they run while the dispatch is in flight.
    if (times_.has_shared) compute(s, name + "shared experts", as("shared"), times_.shared_forward);
    if (cost.etp_gather >= 0) {
      comm_after(last_comm_, collective(s, kLayerComm, name + "etp all-gather", "etp", cost.etp_gather));
    }
    TaskId experts = chain(compute(s, name + "experts", as("experts"), cost.experts_forward));
    if (cost.etp_scatter >= 0) {
      experts = comm_after(experts, collective(s, kLayerComm, name + "etp reduce-scatter", "etp", cost.etp_scatter));
    }
    comm_after(experts, collective(s, kLayerComm, name + "combine", "ep", cost.combine));
    chain(compute(s, name + "combine", as("combine"), times_.combine_forward));
  }

  template <class Chain, class CommAfter>
  void add_moe_backward(int s, int layer, const std::string& name, Chain& chain, CommAfter& comm_after) {
    const MoeLayerCost& cost = moe_cost(s, layer);
    const TaskId unpermute = chain(compute(s, name + "combine", "combine", times_.combine_backward));
    comm_after(unpermute, collective(s, kLayerComm, name + "combine grad", "ep", cost.dispatch_grad));
    if (times_.has_shared) compute(s, name + "shared experts", "shared", times_.shared_backward);
    if (cost.etp_gather_grad >= 0) {
      comm_after(last_comm_, collective(s, kLayerComm, name + "etp all-gather grad", "etp", cost.etp_gather_grad));
    }
    TaskId experts = chain(compute(s, name + "experts", "experts", cost.experts_backward));
    if (cost.etp_scatter_grad >= 0) {
      experts =
          comm_after(experts, collective(s, kLayerComm, name + "etp reduce-scatter grad", "etp", cost.etp_scatter_grad));
    }
    comm_after(experts, collective(s, kLayerComm, name + "dispatch grad", "ep", cost.combine_grad));
    chain(compute(s, name + "router", "router", times_.router_backward));
  }

  TaskId last_task() const { return static_cast<TaskId>(result_.graph.size() - 1); }

  // After a layer's last backward on a stage: reduce its gradients over DP (dense) and expert-DP (experts) on
  // stream 3; then the optimizer and, with ZeRO >= 1, the parameter all-gather.
  void add_gradient_reduction_and_optimizer(int s) {
    std::vector<TaskId> reductions;
    std::int64_t dense_params = 0;
    std::int64_t expert_params = 0;
    // In the order the layers finish their backward (the last layer first), so that the reductions of early
    // finishers overlap the remaining backward.
    for (auto it = last_backward_.rbegin(); it != last_backward_.rend(); ++it) {
      const auto [stage, layer] = it->first;
      const TaskId last = it->second;
      if (stage != s) continue;
      const bool is_moe = model_.is_moe_layer(layer);
      const std::int64_t layer_dense =
          (model_.num_attention_params() +
           (is_moe ? model_.num_shared_expert_params() + model_.num_router_params() : model_.num_dense_ffn_params())) /
          layout_.tp;
      const std::int64_t layer_experts =
          is_moe ? model_.num_experts / layout_.ep * model_.num_expert_params() / layout_.etp : 0;
      dense_params += layer_dense;
      expert_params += layer_experts;
      const auto ring = config_.zero_stage >= 1 ? collectives::RingCollective::kReduceScatter
                                                : collectives::RingCollective::kAllReduce;
      const std::string name = "layer " + std::to_string(layer) + " grads";
      if (layout_.dp > 1) {
        const TaskId t =
            collective(s, kDpComm, name + " dp", "dp",
                       ring_spec(s, ParallelGroup::kDp, ring, static_cast<double>(layer_dense) * kReduceBytes));
        result_.graph.add_dependency(last, t);
        reductions.push_back(t);
      }
      if (is_moe && layout_.edp() > 1) {
        const TaskId t =
            collective(s, kDpComm, name + " edp", "dp",
                       ring_spec(s, ParallelGroup::kEdp, ring, static_cast<double>(layer_experts) * kReduceBytes));
        result_.graph.add_dependency(last, t);
        reductions.push_back(t);
      }
    }
    // The optimizer updates this GPU's shard (ZeRO >= 1) or all of its parameters.
    const std::int64_t shard = config_.zero_stage >= 1
                                   ? dense_params / layout_.dp + expert_params / std::max(1, layout_.edp())
                                   : dense_params + expert_params;
    const TaskId optimizer = compute(s, "optimizer", "optimizer", compute::op_time(device_, optimizer_step(shard).op));
    for (const TaskId t : reductions) result_.graph.add_dependency(t, optimizer);
    if (config_.zero_stage >= 1 && layout_.dp > 1) {
      const TaskId gather = collective(s, kDpComm, "params all-gather", "dp",
                                       ring_spec(s, ParallelGroup::kDp, collectives::RingCollective::kAllGather,
                                                 static_cast<double>(dense_params) * kParamBytes));
      result_.graph.add_dependency(optimizer, gather);
    }
  }

  void summarize() {
    const ExecutionResult& run = result_.execution;
    result_.step_time = run.makespan;
    result_.tokens = layout_.gbs * shape_.seq_len;
    const double seconds = static_cast<double>(run.makespan) * 1e-12;
    const int num_gpus = cluster_.num_gpus();
    if (seconds > 0) {
      result_.tokens_per_second_per_gpu = static_cast<double>(result_.tokens) / seconds / num_gpus;
      // Training counts forward and backward (3 x the forward); inference the forward alone, with the attention
      // term of the keys each token sees.
      const std::int64_t attended =
          config_.mode == workloads::StepMode::kDecode ? config_.context_len : config_.seq_len;
      const double per_token =
          model_flops_per_token(model_, attended) / (config_.mode == workloads::StepMode::kTrain ? 1.0 : 3.0);
      const double flops = per_token * static_cast<double>(result_.tokens);
      result_.model_tflops_per_gpu = flops / seconds / num_gpus / 1e12;
      result_.mfu = result_.model_tflops_per_gpu / device_.peak_tflops(config_.gemm_precision);
    }
    for (int s = 0; s < layout_.pp; ++s) {
      StageBreakdown b;
      b.stage = s;
      b.compute = stream_time(result_.graph, run, s, kCompute, kCompute).busy;
      b.exposed_layer_comm = stream_time(result_.graph, run, s, kLayerComm, kCompute).exposed;
      b.exposed_pp_comm = stream_time(result_.graph, run, s, kPipeComm, kCompute).exposed;
      b.exposed_dp_comm = stream_time(result_.graph, run, s, kDpComm, kCompute).exposed;
      b.idle =
          std::max<TimePs>(0, run.makespan - b.compute - b.exposed_layer_comm - b.exposed_pp_comm - b.exposed_dp_comm);
      result_.stages.push_back(b);
    }
  }

  const topologies::Cluster& cluster_;
  const StepConfig& config_;
  const workloads::MoeModel& model_;
  const workloads::ParallelLayout& layout_;
  const compute::DeviceProfile& device_;
  LayerShape shape_;
  BlockTimes times_;
  int num_microbatches_ = 0;
  std::vector<int> virtual_first_layer_;
  std::vector<int> virtual_num_layers_;
  std::vector<int> moe_index_;
  StepResult result_;
  std::unordered_map<std::string, int> specs_;  // looked up only
  std::map<int, MoeLayerCost> moe_costs_;
  std::map<OpKey, TaskId> first_task_;
  std::map<OpKey, TaskId> send_task_;
  std::map<std::pair<int, int>, TaskId> last_backward_;  // (stage, layer) -> its last backward task
  TaskId last_comm_ = kNoTask;
};

}  // namespace

StepResult run_training_step(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                             const StepConfig& config) {
  StepBuilder builder(cluster, profile, config);
  return builder.build_and_run();
}

TimePs step_lower_bound(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                        const StepConfig& config) {
  StepBuilder builder(cluster, profile, config);
  return builder.lower_bound();
}

}  // namespace moesim::sim::step
