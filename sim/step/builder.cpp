#include "sim/step/builder.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "sim/a2a.hpp"
#include "sim/collectives/ring.hpp"
#include "sim/step/bound.hpp"
#include "sim/step/layer_ops.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::step {
namespace {

constexpr int kCompute = 0;
constexpr int kLayerComm = 1;
constexpr int kPipeComm = 2;
constexpr int kDpComm = 3;
constexpr int kParamComm = 4;         // ZeRO-3's parameter all-gathers, beside the gradient reductions
constexpr int kSharedTpComm = 5;      // the shared experts' TP collectives, beside the All-to-All they overlap
constexpr double kGradBytes = 2.0;    // BF16 activation gradients on the wire
constexpr double kActBytes = 2.0;     // BF16 activations
constexpr double kReduceBytes = 4.0;  // FP32 gradient reduction (Megatron's default main-grad precision)
constexpr double kParamBytes = 2.0;   // BF16 parameters gathered after the optimizer (ZeRO >= 1)

using workloads::ParallelGroup;

std::size_t to_size(std::int64_t i) {
  return static_cast<std::size_t>(i);
}

// The kernels' summed roofline times, on `sm_fraction` of the SMs (the rest reserved for communication).
TimePs total_time(const compute::DeviceProfile& device, const std::vector<LayerOp>& ops, double sm_fraction = 1.0) {
  TimePs total = 0;
  for (const LayerOp& op : ops) total += compute::op_time(device, op.op, sm_fraction);
  return total;
}

// The weight-gradient part of a backward's kernels (layer_ops marks them), timed as total_time does.
TimePs weight_time(const compute::DeviceProfile& device, const std::vector<LayerOp>& ops, double sm_fraction) {
  TimePs total = 0;
  for (const LayerOp& op : ops) {
    if (op.is_weight_gradient) total += compute::op_time(device, op.op, sm_fraction);
  }
  return total;
}

// The routing of one MoE layer on one stage, and what it costs that stage.
struct MoeLayerCost {
  TimePs experts_forward = 0;          // the slowest EP rank's grouped GEMMs
  TimePs experts_backward = 0;         // input and weight gradients
  TimePs experts_backward_weight = 0;  // the weight-gradient part of experts_backward
  int dispatch = -1;                   // collective specs: token copies, dispatch direction
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

// What each block's kernels cost: the same in every layer and micro-batch (one shape), so timed once. A
// backward's time is its input and weight gradients together; its *_weight field is the weight-gradient part.
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
  TimePs attention_backward_weight = 0;
  TimePs ffn_backward_weight = 0;
  TimePs shared_backward_weight = 0;
};

// Cuts [0, makespan) of one stage's lane by what ran there, in priority order: compute; else TP, EP and expert-TP
// communication; else pipeline sends; else DP communication (gradients, parameters); else idle. Every instant
// counts once, so the parts add up to the makespan.
StageBreakdown partition_lane(const TaskGraph& graph, const ExecutionResult& run, int lane) {
  auto part_of = [](int stream) {
    switch (stream) {
      case kCompute:
        return 0;
      case kLayerComm:
      case kSharedTpComm:
        return 1;
      case kPipeComm:
        return 2;
      default:  // kDpComm, kParamComm
        return 3;
    }
  };
  struct Edge {
    TimePs at;
    int part;
    int delta;
  };
  std::vector<Edge> edges;
  for (std::size_t i = 0; i < graph.tasks().size(); ++i) {
    const Task& task = graph.tasks()[i];
    const TaskTiming& t = run.timings[i];
    if (task.lane != lane || t.end <= t.start) continue;
    edges.push_back({t.start, part_of(task.stream), +1});
    edges.push_back({t.end, part_of(task.stream), -1});
  }
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) { return a.at < b.at; });
  std::array<int, 4> running{};
  std::array<TimePs, 5> time{};  // the four parts, then idle
  TimePs now = 0;
  auto close = [&](TimePs until) {
    int part = 4;
    for (int p = 0; p < 4 && part == 4; ++p) part = running[static_cast<std::size_t>(p)] > 0 ? p : 4;
    time[static_cast<std::size_t>(part)] += until - now;
    now = until;
  };
  for (const Edge& e : edges) {
    close(e.at);
    running[static_cast<std::size_t>(e.part)] += e.delta;
  }
  close(std::max(now, run.makespan));
  StageBreakdown b;
  b.stage = lane;
  b.compute = time[0];
  b.exposed_layer_comm = time[1];
  b.exposed_pp_comm = time[2];
  b.exposed_dp_comm = time[3];
  b.idle = time[4];
  return b;
}

class StepBuilder {
 public:
  StepBuilder(const topologies::Cluster& cluster, const compute::CostProfile& profile, const StepConfig& config)
      : cluster_(cluster),
        config_(config),
        model_(config.model),
        layout_(config.layout),
        device_(profile.device(cluster.config().gpu.name, "cluster gpu.name")),
        executor_options_(config.executor) {
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
    if (config.comm_sms > 0) {
      // Communication kernels hold comm_sms SMs for the whole step (as DeepSeek-V3 reserves 20 of the H800's 132
      // for its All-to-All): compute runs on the rest, and each GPU's traffic is capped at what those SMs drive.
      if (config.comm_sms >= device_.sm_count) {
        throw std::invalid_argument("comm_sms: must leave compute at least one of the " +
                                    std::to_string(device_.sm_count) + " SMs of " + device_.name + ", got " +
                                    std::to_string(config.comm_sms));
      }
      executor_options_.comm_bandwidth_limit_bps = compute::comm_bandwidth_limit(device_, config.comm_sms);
      sm_fraction_ = static_cast<double>(device_.sm_count - config.comm_sms) / device_.sm_count;
    }
    if (config.routing_samples < 1) {
      throw std::invalid_argument("routing_samples: must be >= 1, got " + std::to_string(config.routing_samples));
    }
    time_blocks();
  }

  void time_blocks() {
    BlockTimes& t = times_;
    const double f = sm_fraction_;
    auto time = [&](const std::vector<LayerOp>& ops) { return total_time(device_, ops, f); };
    t.attention_forward = time(attention_forward(model_, shape_));
    const std::vector<LayerOp> attention_bwd = attention_backward(model_, shape_);
    t.attention_backward = time(attention_bwd);
    t.attention_backward_weight = weight_time(device_, attention_bwd, f);
    if (config_.recompute == workloads::Recompute::kSelective) {
      // Selective recomputation (Korthikanti et al.): the attention core's forward runs again in its backward.
      for (const LayerOp& op : attention_forward(model_, shape_)) {
        if (op.op.kind == compute::OpKind::kAttention) t.attention_backward += compute::op_time(device_, op.op, f);
      }
    }
    if (model_.num_dense_layers() > 0) {
      t.ffn_forward = time(dense_ffn_forward(model_, shape_));
      const std::vector<LayerOp> ffn_bwd = dense_ffn_backward(model_, shape_);
      t.ffn_backward = time(ffn_bwd);
      t.ffn_backward_weight = weight_time(device_, ffn_bwd, f);
    }
    if (model_.num_moe_layers() > 0) {
      t.router_forward = time(router_forward(model_, shape_));
      t.router_backward = time(router_backward(model_, shape_));
      const std::vector<LayerOp> shared = shared_experts_forward(model_, shape_);
      t.has_shared = !shared.empty();
      t.shared_forward = time(shared);
      const std::vector<LayerOp> shared_bwd = shared_experts_backward(model_, shape_);
      t.shared_backward = time(shared_bwd);
      t.shared_backward_weight = weight_time(device_, shared_bwd, f);
      t.combine_forward = time(combine_forward(model_, shape_));
      t.combine_backward = time(combine_backward(model_, shape_));
    }
    t.embedding_forward = time(embedding_forward(model_, shape_));
    t.embedding_backward = time(embedding_backward(model_, shape_));
    t.head_forward = time(head_forward(model_, shape_));
    t.head_backward = time(head_backward(model_, shape_));
  }

  // The lower bound (see step_lower_bound and bound.hpp), pass by pass (one micro-batch through one chunk). A pass's
  // compute stream runs its tasks in order, and while one of its EP All-to-Alls is in flight only compute off the
  // micro-batch's chain can run (shared experts; in a backward, weight gradients): everything else waits for it or
  // came before it. So with C its compute, N the part on the chain and A the All-to-Alls' bounds, it lasts at least
  // max(C, N + A). The experts cost the larger of the mean load's time (the assumption of step_lower_bound) and the
  // sampled group's slowest rank's (an exact bound: the step's slowest rank is at least as slow); where the chain
  // needs only their input gradients, the mean load's. Layers whose routing is not sampled (the stride) count their
  // experts at the mean load and no All-to-All. A backward's output (the input gradients) is ready once its compute
  // other than weight gradients is done, and no sooner than N + A: the evaluator lets it leave that early. Each
  // stage takes its cheapest pass over chunks and routing samples (the evaluator takes one cost per stage), and
  // inference runs the forwards alone.
  TimePs lower_bound(int all_to_all_stride, GroupRoutingCache& routing_cache) {
    const int p = layout_.pp;
    const int v = layout_.vpp;
    const double f = sm_fraction_;
    const bool is_training = config_.mode == workloads::StepMode::kTrain;
    const bool is_full = config_.recompute == workloads::Recompute::kFull;
    // The mean load: an ETP group's expert shard sees the copies of its etp EP groups (see moe_cost).
    const std::int64_t local_tokens =
        shape_.tokens() / layout_.tp * model_.num_topk * layout_.ep * layout_.etp / model_.num_experts;
    const std::vector<std::int64_t> loads(static_cast<std::size_t>(model_.num_experts / layout_.ep), local_tokens);
    const TimePs mean_experts_forward = total_time(device_, experts_forward(model_, shape_, loads), f);
    const std::vector<LayerOp> experts_bwd = experts_backward(model_, shape_, loads);
    const TimePs mean_experts_backward = total_time(device_, experts_bwd, f);
    const TimePs mean_experts_input_grad = mean_experts_backward - weight_time(device_, experts_bwd, f);
    const TimePs router_backward_weight = weight_time(device_, router_backward(model_, shape_), f);
    const TimePs head_backward_weight = weight_time(device_, head_backward(model_, shape_), f);
    const TimePs embedding_backward_weight = weight_time(device_, embedding_backward(model_, shape_), f);
    if (all_to_all_stride < 0) {
      throw std::invalid_argument("all_to_all_stride: must be >= 0, got " + std::to_string(all_to_all_stride));
    }
    auto is_sampled = [&](int layer) {
      return all_to_all_stride > 0 && moe_index_[static_cast<std::size_t>(layer)] % all_to_all_stride == 0;
    };
    // The step uses samples m mod routing_samples of its micro-batches m: no more than there are micro-batches.
    const int num_samples = all_to_all_stride > 0 ? std::min(config_.routing_samples, num_microbatches_) : 1;
    RouteCache routes(cluster_);
    std::vector<std::vector<int>> first_ep_group(static_cast<std::size_t>(p));  // per stage, when needed

    constexpr TimePs kUnset = std::numeric_limits<TimePs>::max();
    std::vector<workloads::StageCost> costs(static_cast<std::size_t>(p), {kUnset, kUnset, 0});
    std::vector<TimePs> earliest_output(static_cast<std::size_t>(p), kUnset);  // of a backward, from its start
    for (int vs = 0; vs < p * v; ++vs) {
      const int s = vs % p;
      const int first = virtual_first_layer_[static_cast<std::size_t>(vs)];
      const int last = first + virtual_num_layers_[static_cast<std::size_t>(vs)];
      for (int sample = 0; sample < num_samples; ++sample) {
        // Forward: compute, its chain, the All-to-Alls. Backward: compute, its compute but weight gradients, its
        // chain, the All-to-Alls.
        TimePs forward = 0, forward_chain = 0, forward_a2a = 0;
        TimePs backward = 0, backward_unweighted = 0, backward_chain = 0, backward_a2a = 0;
        auto add_backward = [&](TimePs total, TimePs weight, bool is_on_chain) {
          backward += total;
          backward_unweighted += total - weight;
          if (is_on_chain) backward_chain += total - weight;
        };
        if (vs == 0) {
          forward += times_.embedding_forward;
          forward_chain += times_.embedding_forward;
          add_backward(times_.embedding_backward, embedding_backward_weight, true);
        }
        if (vs == p * v - 1) {
          forward += times_.head_forward;
          forward_chain += times_.head_forward;
          add_backward(times_.head_backward, head_backward_weight, true);
        }
        for (int layer = first; layer < last; ++layer) {
          TimePs layer_forward = times_.attention_forward;
          add_backward(times_.attention_backward, times_.attention_backward_weight, true);
          if (!model_.is_moe_layer(layer)) {
            layer_forward += times_.ffn_forward;
            add_backward(times_.ffn_backward, times_.ffn_backward_weight, true);
          } else {
            MoeLayerBound moe{mean_experts_forward, mean_experts_backward, 0, 0};
            if (is_sampled(layer)) {
              const MoeLayerBound sampled = moe_bound(s, layer, sample, first_ep_group, routing_cache, routes);
              // The mean load holds by the assumption, the sampled slowest rank exactly: the larger of the two.
              moe = {std::max(moe.experts_forward, sampled.experts_forward),
                     std::max(moe.experts_backward, sampled.experts_backward), sampled.a2a_forward,
                     sampled.a2a_backward};
            }
            layer_forward +=
                times_.router_forward + times_.shared_forward + moe.experts_forward + times_.combine_forward;
            add_backward(times_.router_backward, router_backward_weight, true);
            add_backward(times_.shared_backward, times_.shared_backward_weight, false);
            backward += moe.experts_backward;
            backward_unweighted += mean_experts_input_grad;
            backward_chain += mean_experts_input_grad;
            add_backward(times_.combine_backward, 0, true);
            forward_chain -= times_.shared_forward;
            forward_a2a += moe.a2a_forward;
            backward_a2a += moe.a2a_backward;
            if (is_full) {
              backward_chain -= times_.shared_forward;
              backward_a2a += moe.a2a_forward;
            }
          }
          forward += layer_forward;
          forward_chain += layer_forward;
          if (is_full) {  // the layer's forward again, its communication too, before its backward
            backward += layer_forward;
            backward_unweighted += layer_forward;
            backward_chain += layer_forward;
          }
        }
        workloads::StageCost& cost = costs[static_cast<std::size_t>(s)];
        cost.forward_ps = std::min(cost.forward_ps, std::max(forward, forward_chain + forward_a2a));
        const TimePs pass = std::max(backward, backward_chain + backward_a2a);
        cost.backward_ps = std::min(cost.backward_ps, pass);
        TimePs& output = earliest_output[static_cast<std::size_t>(s)];
        output = std::min(output, std::max(backward_unweighted, backward_chain + backward_a2a));
      }
    }
    for (int s = 0; s < p; ++s) {
      workloads::StageCost& cost = costs[static_cast<std::size_t>(s)];
      // Every pass's output leaves at least earliest_output after it starts.
      cost.backward_output_lead_ps =
          cost.backward_ps - std::min(cost.backward_ps, earliest_output[static_cast<std::size_t>(s)]);
      if (!is_training) cost = {cost.forward_ps, 0, 0};
    }
    auto order = workloads::pipeline_order(config_.schedule, p, num_microbatches_, v);
    if (!is_training) {
      // The forwards alone, in the schedule's order; the (free) backwards after all of them change nothing.
      for (std::vector<workloads::PipelineOp>& ops : order) {
        std::stable_partition(ops.begin(), ops.end(), [](const workloads::PipelineOp& op) { return op.is_forward; });
      }
    }
    return workloads::evaluate_pipeline(order, num_microbatches_, v, costs, 0).makespan_ps;
  }

  // What the lower bound takes from one MoE layer's sampled routing.
  struct MoeLayerBound {
    TimePs experts_forward = 0;   // the group's slowest rank
    TimePs experts_backward = 0;  // the same, input and weight gradients
    TimePs a2a_forward = 0;       // dispatch and combine
    TimePs a2a_backward = 0;      // their gradients (the combine's goes out in the dispatch's pattern)
  };

  // MoE layer `layer` (on stage s, routing sample `sample`) from the routing of its stage's first EP group (as
  // moe_cost orders them). Each group's tokens draw from streams of their own, so that group routes exactly as in
  // the step, and its traffic alone puts no more on any link (nor its ranks more on any expert) than the whole
  // stage's: the bounds stay bounds, for 1 / (groups in the stage) of the step's sampling.
  MoeLayerBound moe_bound(int s, int layer, int sample, std::vector<std::vector<int>>& first_ep_group,
                          GroupRoutingCache& routing_cache, RouteCache& routes) {
    std::vector<int>& gpu_of = first_ep_group[static_cast<std::size_t>(s)];
    if (gpu_of.empty()) gpu_of = stage_groups(s, ParallelGroup::kEp).front();
    const std::shared_ptr<const GroupRoutingCache::GroupRouting> routing =
        routing_cache.group_routing(nodes_of(gpu_of), traffic_options(layer, sample));

    MoeLayerBound bound;
    const std::vector<int> rank_of_expert = workloads::place_experts(config_.placement, model_.num_experts, layout_.ep);
    for (int r = 0; r < layout_.ep; ++r) {
      std::vector<std::int64_t> local;
      for (std::size_t e = 0; e < rank_of_expert.size(); ++e) {
        if (rank_of_expert[e] == r) local.push_back(routing->tokens_per_expert[e]);
      }
      bound.experts_forward =
          std::max(bound.experts_forward, total_time(device_, experts_forward(model_, shape_, local), sm_fraction_));
      bound.experts_backward =
          std::max(bound.experts_backward, total_time(device_, experts_backward(model_, shape_, local), sm_fraction_));
    }
    collectives::TransferGraph dispatch;
    collectives::build_all_to_all(dispatch, layer_demand(routing->traffic, true, &gpu_of), config_.a2a_algorithm);
    const double limit = executor_options_.comm_bandwidth_limit_bps;
    const TransferGraphBound out = transfer_graph_bound(cluster_, dispatch, limit, routes);
    const TransferGraphBound back = transfer_graph_bound(cluster_, dispatch.reversed(), limit, routes);
    const double grad_bytes = static_cast<double>(model_.hidden_size) * kGradBytes;
    bound.a2a_forward = out.time_ps(model_.dispatch_bytes_per_token()) + back.time_ps(model_.combine_bytes_per_token());
    bound.a2a_backward = out.time_ps(grad_bytes) + back.time_ps(grad_bytes);
    return bound;
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
    result_.execution = execute(cluster_, result_.graph, executor_options_);
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

  // The scale-up unit (node) of each GPU, as the traffic builder takes them.
  std::vector<int> nodes_of(const std::vector<int>& gpus) const {
    std::vector<int> nodes(gpus.size());
    for (std::size_t i = 0; i < gpus.size(); ++i) nodes[i] = cluster_.scale_up_unit_of(gpus[i]);
    return nodes;
  }

  // How MoE layer `layer` routes its micro-batches of routing sample `sample` (the step and its bound alike).
  workloads::TrafficOptions traffic_options(int layer, int sample) const {
    workloads::TrafficOptions options;
    options.ep = layout_.ep;
    options.tokens_per_rank = shape_.tokens() / layout_.tp;  // each TP rank dispatches its share of the tokens
    options.num_experts = model_.num_experts;
    options.num_topk = model_.num_topk;
    options.routing = config_.routing;
    options.seed = config_.seed;
    options.placement = config_.placement;
    options.layer = moe_index_[static_cast<std::size_t>(layer)];
    options.batch = sample;
    return options;
  }

  // The routing of MoE layer `layer` (a model layer index) on stage s for routing sample `sample`: sampled once,
  // costed once.
  const MoeLayerCost& moe_cost(int s, int layer, int sample) {
    const auto it = moe_costs_.find({layer, sample});
    if (it != moe_costs_.end()) return it->second;
    // The stage's EP groups, one after another: the traffic builder forms groups of ep consecutive GPUs.
    std::vector<int> gpu_of;
    for (const auto& group : stage_groups(s, ParallelGroup::kEp))
      gpu_of.insert(gpu_of.end(), group.begin(), group.end());
    const workloads::LayerTraffic traffic =
        workloads::build_layer_traffic(nodes_of(gpu_of), traffic_options(layer, sample));

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
        const TimePs forward = total_time(device_, experts_forward(model_, shape_, local), sm_fraction_);
        const std::vector<LayerOp> backward = experts_backward(model_, shape_, local);
        const TimePs backward_time = total_time(device_, backward, sm_fraction_);
        cost.experts_forward = std::max(cost.experts_forward, forward);
        if (backward_time > cost.experts_backward) {  // the slowest rank's, with its own weight-gradient part
          cost.experts_backward = backward_time;
          cost.experts_backward_weight = weight_time(device_, backward, sm_fraction_);
        }
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
    const std::string name = "a2a layer " + std::to_string(layer) + " sample " + std::to_string(sample);
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
    return moe_costs_.emplace(std::make_pair(layer, sample), cost).first->second;
  }

  // The micro-batch's dependency chain. A compute task on the chain waits for the communication the chain issued
  // last (if any); a communication on the chain waits for the task named as its predecessor. tail_ is the chain's
  // last task. Tasks off the chain (shared experts, weight gradients) only follow their stream's order and the
  // dependencies added for them, so they overlap the chain's communication.
  TaskId on_chain(TaskId task) {
    if (pending_comm_ != kNoTask) result_.graph.add_dependency(pending_comm_, task);
    pending_comm_ = kNoTask;
    if (chain_head_ == kNoTask) chain_head_ = task;
    return tail_ = task;
  }
  TaskId comm_on_chain(TaskId before, TaskId comm) {
    if (before != kNoTask) result_.graph.add_dependency(before, comm);
    pending_comm_ = comm;
    if (chain_head_ == kNoTask) chain_head_ = comm;
    return tail_ = comm;
  }

  // A sequence-parallel TP collective over every TP group of stage s: the micro-batch's T x hidden activations
  // (or their gradients, also BF16), gathered from or scattered to T / tp per rank.
  int tp_spec(int s, collectives::RingCollective ring) {
    return ring_spec(s, ParallelGroup::kTp, ring,
                     static_cast<double>(shape_.tokens()) * model_.hidden_size * kActBytes);
  }

  // A TP-split block's (attention, dense FFN) forward. With tp > 1, sequence parallelism (which Megatron-Core
  // requires for MoE with TP): the block's input is all-gathered over the TP group (each rank held T / tp tokens)
  // and its output reduce-scattered back, both rings over every TP group of the stage on the layer's stream.
  TaskId tp_block_forward(int s, const std::string& name, const std::string& category, TimePs duration) {
    if (layout_.tp > 1)
      comm_on_chain(tail_, collective(s, kLayerComm, name + " tp all-gather", "tp",
                                      tp_spec(s, collectives::RingCollective::kAllGather)));
    const TaskId block = on_chain(compute(s, name, category, duration));
    if (layout_.tp > 1)
      comm_on_chain(block, collective(s, kLayerComm, name + " tp reduce-scatter", "tp",
                                      tp_spec(s, collectives::RingCollective::kReduceScatter)));
    return block;
  }

  // Its backward: the output gradient all-gathered (the backward of the reduce-scatter), the input gradients
  // (dgrad GEMMs and the rest), their reduce-scatter (the backward of the all-gather) and, off the chain, the
  // weight gradients, which run while that reduce-scatter is in flight. Returns the block's last compute task.
  TaskId tp_block_backward(int s, const std::string& name, const std::string& category, TimePs total, TimePs weight) {
    if (layout_.tp > 1)
      comm_on_chain(tail_, collective(s, kLayerComm, name + " tp all-gather", "tp",
                                      tp_spec(s, collectives::RingCollective::kAllGather)));
    const TaskId input = on_chain(compute(s, name, category, total - weight));
    if (layout_.tp > 1)
      comm_on_chain(input, collective(s, kLayerComm, name + " tp reduce-scatter", "tp",
                                      tp_spec(s, collectives::RingCollective::kReduceScatter)));
    if (weight == 0) return input;
    return compute(s, name + " wgrad", category, weight);
  }

  // One forward or backward of a micro-batch's chunk on stage s: its layers' tasks, then the send onward.
  void add_pipeline_op(int s, const workloads::PipelineOp& op) {
    const int p = layout_.pp;
    const int virtual_stage = op.chunk_idx * p + s;
    const int first = virtual_first_layer_[static_cast<std::size_t>(virtual_stage)];
    const int count = virtual_num_layers_[static_cast<std::size_t>(virtual_stage)];
    const std::string tag =
        std::string(op.is_forward ? "fwd" : "bwd") + " mb" + std::to_string(op.microbatch_idx) + " ";
    const bool is_first_virtual = virtual_stage == 0;
    const bool is_last_virtual = virtual_stage == p * layout_.vpp - 1;
    const int sample = op.microbatch_idx % config_.routing_samples;
    pending_comm_ = kNoTask;
    tail_ = kNoTask;
    chain_head_ = kNoTask;

    std::vector<int> layers(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) layers[static_cast<std::size_t>(i)] = first + i;
    if (!op.is_forward) std::reverse(layers.begin(), layers.end());

    if (op.is_forward && is_first_virtual) {
      on_chain(compute(s, tag + "embedding", "embedding", times_.embedding_forward));
    }
    if (!op.is_forward && is_last_virtual) {
      last_head_backward_ = on_chain(compute(s, tag + "head", "head", times_.head_backward));
      if (config_.zero_stage >= 2) reduce_microbatch_gradients(s, tag + "head ", head_params(), last_head_backward_);
    }
    TaskId previous_layer_first = kNoTask;
    for (const int layer : layers) {
      const std::string name = tag + "layer " + std::to_string(layer) + " ";
      const bool is_moe = model_.is_moe_layer(layer);
      // ZeRO-3: the layer's parameters are gathered before each of its forwards and backwards, at most one layer
      // ahead: once the previous layer's first task has run (FSDP's and DeepSpeed's prefetch of the next module).
      const TaskId gathered = zero3_gather(s, layer, name, previous_layer_first);
      previous_layer_first = static_cast<TaskId>(result_.graph.size());  // the layer's first task comes next
      auto after_gather = [&](TaskId task) {
        if (gathered != kNoTask) result_.graph.add_dependency(gathered, task);
        return task;
      };
      // The layer's forward: attention, then the MoE block or the dense FFN. `category` overrides the compute
      // tasks' own categories (recomputation); empty keeps them.
      auto emit_forward = [&](const std::string& prefix, const std::string& category) {
        const std::size_t before = result_.graph.size();
        tp_block_forward(s, prefix + "attention", category.empty() ? "attention" : category, times_.attention_forward);
        after_gather(static_cast<TaskId>(before));
        if (is_moe) {
          add_moe_forward(s, layer, sample, prefix, category);
        } else {
          tp_block_forward(s, prefix + "ffn", category.empty() ? "ffn" : category, times_.ffn_forward);
        }
      };
      if (op.is_forward) {
        emit_forward(name, "");
      } else {
        // Full recomputation: the layer's forward runs again (its communication too) right before its backward,
        // as Megatron's per-layer checkpointing does.
        if (config_.recompute == workloads::Recompute::kFull) emit_forward(name + "recompute ", "recompute");
        const std::size_t before = result_.graph.size();
        if (is_moe) {
          add_moe_backward(s, layer, sample, name);
        } else {
          tp_block_backward(s, name + "ffn", "ffn", times_.ffn_backward, times_.ffn_backward_weight);
        }
        after_gather(static_cast<TaskId>(before));
        const TaskId last = tp_block_backward(s, name + "attention", "attention", times_.attention_backward,
                                              times_.attention_backward_weight);
        // The layer's gradients are complete once its last compute task has run (the stream runs in order).
        last_backward_[{s, layer}] = last;
        if (config_.zero_stage >= 2) reduce_microbatch_gradients(s, name, layer_params(layer), last);
      }
    }
    if (op.is_forward && is_last_virtual) {
      on_chain(compute(s, tag + "head", "head", times_.head_forward));
    }
    if (!op.is_forward && is_first_virtual) {
      last_embedding_backward_ = on_chain(compute(s, tag + "embedding", "embedding", times_.embedding_backward));
      if (config_.zero_stage >= 2) {
        reduce_microbatch_gradients(s, tag + "embedding ", embedding_params(), last_embedding_backward_);
      }
    }
    // The send onward (activations forward, gradients backward), after the chunk's last task.
    const int next_virtual = op.is_forward ? virtual_stage + 1 : virtual_stage - 1;
    if (next_virtual >= 0 && next_virtual < p * layout_.vpp) {
      const double bytes = static_cast<double>(shape_.tokens()) * model_.hidden_size *
                           (op.is_forward ? kActBytes : kGradBytes) / layout_.tp;
      const TaskId send = collective(s, kPipeComm, tag + "send", "pp", send_spec(s, next_virtual % p, bytes));
      result_.graph.add_dependency(tail_, send);
      send_task_[{op.is_forward, op.microbatch_idx, op.chunk_idx, s}] = send;
    }
    // The op's input arrives for its chain, not for the ZeRO-3 gathers beside it (they may run ahead).
    first_task_[{op.is_forward, op.microbatch_idx, op.chunk_idx, s}] = chain_head_;
  }

  // The MoE block between its first and last compute task, forward and backward alike. After `start` (the
  // router's forward, or the combine's backward), the All-to-All to the experts; beside it, the shared experts
  // (they need only the block's input; split by tp, they all-gather it first and reduce-scatter their output
  // after, on a stream of their own so that neither waits for the All-to-All), their weight gradients after them;
  // then the experts between the ETP all-gather and reduce-scatter, and the All-to-All back, the experts' weight
  // gradients beside it.
  struct MoePass {
    std::string name;    // "fwd mb0 layer 3 "
    std::string suffix;  // "" forward, " grad" backward
    const char* to_experts = "";
    int to_experts_spec = -1;
    const char* from_experts = "";
    int from_experts_spec = -1;
    int etp_gather = -1;  // -1: no expert TP
    int etp_scatter = -1;
    std::string shared_category;
    TimePs shared_input = 0;
    TimePs shared_weight = 0;
    std::string experts_category;
    TimePs experts_input = 0;
    TimePs experts_weight = 0;
  };
  // The shared experts' output (or input gradient) joins the block's in `task` (the residual add).
  void after_shared_scatter(TaskId task) {
    if (shared_scatter_ != kNoTask) result_.graph.add_dependency(shared_scatter_, task);
    shared_scatter_ = kNoTask;
  }

  void add_moe_middle(int s, TaskId start, const MoePass& pass) {
    const std::string& name = pass.name;
    const bool shared_tp = times_.has_shared && layout_.tp > 1;
    TaskId shared_gather = kNoTask;
    if (shared_tp) {
      shared_gather = collective(s, kSharedTpComm, name + "shared tp all-gather", "tp",
                                 tp_spec(s, collectives::RingCollective::kAllGather));
      result_.graph.add_dependency(start, shared_gather);
    }
    comm_on_chain(start, collective(s, kLayerComm, name + pass.to_experts, "ep", pass.to_experts_spec));
    if (times_.has_shared) {
      const TaskId shared = compute(s, name + "shared experts", pass.shared_category, pass.shared_input);
      if (shared_tp) {
        result_.graph.add_dependency(shared_gather, shared);
        const TaskId scatter = collective(s, kSharedTpComm, name + "shared tp reduce-scatter", "tp",
                                          tp_spec(s, collectives::RingCollective::kReduceScatter));
        result_.graph.add_dependency(shared, scatter);
        shared_scatter_ = scatter;  // the block's residual add waits for it
      }
      if (pass.shared_weight > 0) compute(s, name + "shared experts wgrad", pass.shared_category, pass.shared_weight);
    }
    if (pass.etp_gather >= 0) {
      comm_on_chain(tail_, collective(s, kLayerComm, name + "etp all-gather" + pass.suffix, "etp", pass.etp_gather));
    }
    const TaskId experts = on_chain(compute(s, name + "experts", pass.experts_category, pass.experts_input));
    if (pass.etp_scatter >= 0) {
      comm_on_chain(experts,
                    collective(s, kLayerComm, name + "etp reduce-scatter" + pass.suffix, "etp", pass.etp_scatter));
    }
    comm_on_chain(tail_, collective(s, kLayerComm, name + pass.from_experts, "ep", pass.from_experts_spec));
    if (pass.experts_weight > 0) compute(s, name + "experts wgrad", pass.experts_category, pass.experts_weight);
  }

  // `category` overrides the compute tasks' categories (e.g. "recompute"); empty keeps their own.
  void add_moe_forward(int s, int layer, int sample, const std::string& name, const std::string& category) {
    const MoeLayerCost& cost = moe_cost(s, layer, sample);
    auto as = [&](const char* own) { return category.empty() ? std::string(own) : category; };
    const TaskId router = on_chain(compute(s, name + "router", as("router"), times_.router_forward));
    MoePass pass;
    pass.name = name;
    pass.to_experts = "dispatch";
    pass.to_experts_spec = cost.dispatch;
    pass.from_experts = "combine";
    pass.from_experts_spec = cost.combine;
    pass.etp_gather = cost.etp_gather;
    pass.etp_scatter = cost.etp_scatter;
    pass.shared_category = as("shared");
    pass.shared_input = times_.shared_forward;
    pass.experts_category = as("experts");
    pass.experts_input = cost.experts_forward;
    add_moe_middle(s, router, pass);
    after_shared_scatter(on_chain(compute(s, name + "combine", as("combine"), times_.combine_forward)));
  }

  // The chain in reverse: the combine's backward, the gradients dispatched back to the experts (the combine's
  // pattern reversed, which is the dispatch's), the experts' input gradients, their return, the router.
  void add_moe_backward(int s, int layer, int sample, const std::string& name) {
    const MoeLayerCost& cost = moe_cost(s, layer, sample);
    const TaskId unpermute = on_chain(compute(s, name + "combine", "combine", times_.combine_backward));
    MoePass pass;
    pass.name = name;
    pass.suffix = " grad";
    pass.to_experts = "combine grad";
    pass.to_experts_spec = cost.dispatch_grad;
    pass.from_experts = "dispatch grad";
    pass.from_experts_spec = cost.combine_grad;
    pass.etp_gather = cost.etp_gather_grad;
    pass.etp_scatter = cost.etp_scatter_grad;
    pass.shared_category = "shared";
    pass.shared_input = times_.shared_backward - times_.shared_backward_weight;
    pass.shared_weight = times_.shared_backward_weight;
    pass.experts_category = "experts";
    pass.experts_input = cost.experts_backward - cost.experts_backward_weight;
    pass.experts_weight = cost.experts_backward_weight;
    add_moe_middle(s, unpermute, pass);
    after_shared_scatter(on_chain(compute(s, name + "router", "router", times_.router_backward)));
  }

  // What one GPU holds, as the memory model counts it (workloads/memory.hpp): a layer's dense and expert
  // parameters, the embedding table on the first stage, the untied head on the last.
  using HeldParams = workloads::HeldParameters;
  HeldParams layer_params(int layer) const { return workloads::layer_params_per_gpu(model_, layout_, layer); }
  HeldParams embedding_params() const { return {workloads::embedding_params_per_gpu(model_, layout_), 0}; }
  HeldParams head_params() const {
    return {model_.tie_word_embeddings ? 0.0 : workloads::embedding_params_per_gpu(model_, layout_), 0};
  }

  // A ring over the stage's DP groups (dense parameters) and EDP groups (expert parameters) on the DP stream,
  // each after `after` (when given), `bytes_per_param` each; appends the tasks to `out`.
  void dp_rings(int s, const std::string& name, collectives::RingCollective ring, const HeldParams& params,
                double bytes_per_param, TaskId after, std::vector<TaskId>* out, int stream = kDpComm) {
    auto add = [&](ParallelGroup kind, double count, const char* group) {
      const int size = kind == ParallelGroup::kDp ? layout_.dp : layout_.edp();
      if (count <= 0 || size == 1) return;
      const TaskId t =
          collective(s, stream, name + " " + group, "dp", ring_spec(s, kind, ring, count * bytes_per_param));
      if (after != kNoTask) result_.graph.add_dependency(after, t);
      if (out != nullptr) out->push_back(t);
    };
    add(ParallelGroup::kDp, params.dense, "dp");
    add(ParallelGroup::kEdp, params.expert, "edp");
  }

  // ZeRO >= 2 keeps only its shard of the gradients, so each micro-batch's are reduce-scattered as soon as they
  // are complete (`last`), overlapping the rest of the backward.
  void reduce_microbatch_gradients(int s, const std::string& name, const HeldParams& params, TaskId last) {
    dp_rings(s, name + "grads", collectives::RingCollective::kReduceScatter, params, kReduceBytes, last,
             &zero_reductions_[s]);
  }

  // ZeRO-3 shards the parameters too: a layer's are all-gathered before each of its forwards (a recomputation
  // reuses its backward's) and backwards, on a stream of their own (as FSDP and DeepSpeed keep all-gathers apart
  // from the gradient reduce-scatters). Nothing but that stream's order holds a gather back, so it is prefetched
  // as early as the stream and `after` (kNoTask: nothing) allow. Returns the last gather (kNoTask when none).
  TaskId zero3_gather(int s, int layer, const std::string& name, TaskId after) {
    if (config_.zero_stage < 3 || config_.mode != workloads::StepMode::kTrain) return kNoTask;
    std::vector<TaskId> gathers;
    dp_rings(s, name + "params", collectives::RingCollective::kAllGather, layer_params(layer), kParamBytes, after,
             &gathers, kParamComm);
    return gathers.empty() ? kNoTask : gathers.back();  // one stream: the last finishes last
  }

  // The gradient reduction (ZeRO 0: all-reduce; 1: reduce-scatter; both once per step, each layer's after its
  // last backward; 2 and 3: already reduced per micro-batch), the optimizer on what this GPU updates, and the
  // all-gather of the updated parameters (ZeRO 1 and 2; ZeRO-3 gathers them where they are used).
  void add_gradient_reduction_and_optimizer(int s) {
    std::vector<TaskId> reductions = zero_reductions_[s];
    HeldParams held;
    const auto ring =
        config_.zero_stage >= 1 ? collectives::RingCollective::kReduceScatter : collectives::RingCollective::kAllReduce;
    auto reduce_once = [&](const std::string& name, const HeldParams& params, TaskId last) {
      held.dense += params.dense;
      held.expert += params.expert;
      if (config_.zero_stage <= 1) dp_rings(s, name + " grads", ring, params, kReduceBytes, last, &reductions);
    };
    if (s == layout_.pp - 1) reduce_once("head", head_params(), last_head_backward_);
    // In the order the layers finish their backward (the last layer first), so that the reductions of early
    // finishers overlap the remaining backward.
    for (auto it = last_backward_.rbegin(); it != last_backward_.rend(); ++it) {
      const auto [stage, layer] = it->first;
      if (stage == s) reduce_once("layer " + std::to_string(layer), layer_params(layer), it->second);
    }
    if (s == 0) reduce_once("embedding", embedding_params(), last_embedding_backward_);
    // The optimizer updates this GPU's shard (ZeRO >= 1) or all of its parameters.
    const auto shard = static_cast<std::int64_t>(
        config_.zero_stage >= 1 ? held.dense / layout_.dp + held.expert / layout_.edp() : held.dense + held.expert);
    const TaskId optimizer =
        compute(s, "optimizer", "optimizer", compute::op_time(device_, optimizer_step(shard).op, sm_fraction_));
    for (const TaskId t : reductions) result_.graph.add_dependency(t, optimizer);
    if (config_.zero_stage == 1 || config_.zero_stage == 2) {
      dp_rings(s, "params all-gather", collectives::RingCollective::kAllGather, held, kParamBytes, optimizer, nullptr);
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
      StageBreakdown b = partition_lane(result_.graph, run, s);
      result_.stages.push_back(b);
    }
  }

  const topologies::Cluster& cluster_;
  const StepConfig& config_;
  const workloads::MoeModel& model_;
  const workloads::ParallelLayout& layout_;
  const compute::DeviceProfile& device_;
  ExecutorOptions executor_options_;
  double sm_fraction_ = 1.0;  // of the SMs, what compute kernels get (the rest: config.comm_sms)
  LayerShape shape_;
  BlockTimes times_;
  int num_microbatches_ = 0;
  std::vector<int> virtual_first_layer_;
  std::vector<int> virtual_num_layers_;
  std::vector<int> moe_index_;
  StepResult result_;
  std::unordered_map<std::string, int> specs_;             // looked up only
  std::map<std::pair<int, int>, MoeLayerCost> moe_costs_;  // (layer, routing sample)
  std::map<OpKey, TaskId> first_task_;
  std::map<OpKey, TaskId> send_task_;
  std::map<std::pair<int, int>, TaskId> last_backward_;  // (stage, layer) -> its last backward task
  TaskId pending_comm_ = kNoTask;                        // the micro-batch chain's (see on_chain)
  TaskId tail_ = kNoTask;
  TaskId chain_head_ = kNoTask;                         // the first task of the current pipeline op's chain
  TaskId shared_scatter_ = kNoTask;                     // the current MoE block's shared-expert reduce-scatter
  TaskId last_head_backward_ = kNoTask;                 // the last micro-batch's, on the last stage
  TaskId last_embedding_backward_ = kNoTask;            // the last micro-batch's, on the first stage
  std::map<int, std::vector<TaskId>> zero_reductions_;  // by stage, ZeRO >= 2: the per-micro-batch reductions
};

}  // namespace

StepResult run_training_step(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                             const StepConfig& config) {
  StepBuilder builder(cluster, profile, config);
  return builder.build_and_run();
}

TimePs step_lower_bound(const topologies::Cluster& cluster, const compute::CostProfile& profile,
                        const StepConfig& config, const BoundOptions& options) {
  StepBuilder builder(cluster, profile, config);
  GroupRoutingCache own;
  return builder.lower_bound(options.all_to_all_stride,
                             options.routing_cache != nullptr ? *options.routing_cache : own);
}

}  // namespace moesim::sim::step
