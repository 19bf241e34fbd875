#include "sim/step/builder.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "../test_clusters.hpp"
#include "common/config.hpp"
#include "sim/step/layer_ops.hpp"
#include "topologies/cluster.hpp"

namespace moesim::sim::step {
namespace {

// A small MoE model in which every token picks every expert (top-k = experts), so each expert's load is exactly
// the tokens routed from each rank: the expert compute is known without sampling.
workloads::MoeModel tiny_model() {
  const char* yaml =
      "name: tiny\nhidden_size: 256\nnum_experts: 4\nnum_topk: 4\nmoe_intermediate_size: 512\nnum_layers: 4\n"
      "num_attention_heads: 4\nvocab_size: 1024\n";
  return workloads::parse_model(load_yaml_text(yaml, "tiny.yaml"), "tiny.yaml");
}

// The built-in profile, with the test clusters' GPU ("test-gpu") answering to the H100's numbers.
compute::CostProfile test_profile() {
  compute::CostProfile profile = compute::default_cost_profile();
  for (compute::DeviceProfile& device : profile.devices) {
    if (device.name == "H100-SXM") device.aliases.push_back("test-gpu");
  }
  return profile;
}

TimePs sum_time(const compute::DeviceProfile& device, const std::vector<LayerOp>& ops) {
  TimePs total = 0;
  for (const LayerOp& op : ops) total += compute::op_time(device, op.op);
  return total;
}

// One MoE layer of the tiny model, its kernels summed: every expert receives every one of the shape's tokens.
TimePs layer_forward(const compute::DeviceProfile& device, const workloads::MoeModel& m, const LayerShape& shape) {
  const std::vector<std::int64_t> loads(4, shape.tokens());
  return sum_time(device, attention_forward(m, shape)) + sum_time(device, router_forward(m, shape)) +
         sum_time(device, experts_forward(m, shape, loads)) + sum_time(device, combine_forward(m, shape));
}

TimePs layer_backward(const compute::DeviceProfile& device, const workloads::MoeModel& m, const LayerShape& shape) {
  const std::vector<std::int64_t> loads(4, shape.tokens());
  return sum_time(device, combine_backward(m, shape)) + sum_time(device, experts_backward(m, shape, loads)) +
         sum_time(device, router_backward(m, shape)) + sum_time(device, attention_backward(m, shape));
}

StepConfig config_for(const std::string& layout, int num_gpus) {
  StepConfig config;
  config.model = tiny_model();
  config.layout = workloads::parse_layout(layout, num_gpus);
  config.seq_len = 512;
  return config;
}

TEST(StepBuilder, OneGpuRunsEveryKernelOnceInOrder) {
  // One GPU, no parallelism: the step is every layer's forward then backward, back to back on the compute
  // stream, then the optimizer; the All-to-All is local (nothing on the network). Expectation: the sum of the
  // kernels' roofline times, computed here from layer_ops directly.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(1, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  const compute::DeviceProfile& device = profile.device("test-gpu");
  const StepConfig config = config_for("dp=1,mbs=1,gbs=2", 1);
  const StepResult result = run_training_step(cluster, profile, config);

  LayerShape shape;
  shape.sequences = 1;
  shape.seq_len = 512;
  const workloads::MoeModel& m = config.model;
  const TimePs per_microbatch = sum_time(device, embedding_forward(m, shape)) +
                                sum_time(device, head_forward(m, shape)) + sum_time(device, head_backward(m, shape)) +
                                sum_time(device, embedding_backward(m, shape)) +
                                4 * (layer_forward(device, m, shape) + layer_backward(device, m, shape));
  // The optimizer updates what the memory model counts: 4 layers (attention and its norms, router, 4 experts),
  // the embedding table and the untied head.
  const workloads::HeldParameters layer = workloads::layer_params_per_gpu(m, config.layout, 0);
  const auto params = static_cast<std::int64_t>(4 * (layer.dense + layer.expert) +
                                                2 * workloads::embedding_params_per_gpu(m, config.layout));
  EXPECT_EQ(layer.dense, m.num_attention_params() + m.num_router_params() + 2 * m.hidden_size);
  EXPECT_EQ(layer.expert, 4 * m.num_expert_params());
  const TimePs expected = 2 * per_microbatch + compute::op_time(device, optimizer_step(params).op);
  std::printf("  one GPU, 2 micro-batches: expected %.3f us, simulated %.3f us\n", expected * 1e-6,
              result.step_time * 1e-6);
  EXPECT_EQ(result.step_time, expected);
  EXPECT_EQ(result.execution.num_collectives_played + result.execution.num_collectives_memoized, 4 * 4 * 2);
  EXPECT_EQ(result.execution.network.num_flows, 0u);
}

TEST(StepBuilder, RecomputationRerunsTheForward) {
  // One GPU as above. Full recomputation runs every layer's forward again before its backward: 4 layers x 2
  // micro-batches of attention + router + experts + combine forward more. Selective adds the attention core's
  // forward (the op of kind attention) to each attention backward.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(1, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  const compute::DeviceProfile& device = profile.device("test-gpu");
  StepConfig config = config_for("dp=1,mbs=1,gbs=2", 1);
  const TimePs plain = run_training_step(cluster, profile, config).step_time;
  LayerShape shape;
  shape.seq_len = 512;
  const workloads::MoeModel& m = config.model;
  config.recompute = workloads::Recompute::kFull;
  EXPECT_EQ(run_training_step(cluster, profile, config).step_time, plain + 2 * 4 * layer_forward(device, m, shape));
  TimePs core = 0;
  for (const LayerOp& op : attention_forward(m, shape)) {
    if (op.op.kind == compute::OpKind::kAttention) core += compute::op_time(device, op.op);
  }
  ASSERT_GT(core, 0);
  config.recompute = workloads::Recompute::kSelective;
  EXPECT_EQ(run_training_step(cluster, profile, config).step_time, plain + 2 * 4 * core);
}

TEST(StepBuilder, InferenceRunsTheForwardsAlone) {
  // One GPU, 2 micro-batches. Prefill: every kernel of the forward, nothing else. Decode: the same with one new
  // token per sequence attending to 1,000 cached ones (kv_cache_len in the shape).
  const topologies::Cluster cluster(moesim::testing::crossbar_config(1, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  const compute::DeviceProfile& device = profile.device("test-gpu");
  StepConfig config = config_for("dp=1,mbs=1,gbs=2", 1);
  const workloads::MoeModel& m = config.model;
  auto forward = [&](const LayerShape& shape) {
    return sum_time(device, embedding_forward(m, shape)) + sum_time(device, head_forward(m, shape)) +
           4 * layer_forward(device, m, shape);
  };
  LayerShape prefill;
  prefill.seq_len = 512;
  config.mode = workloads::StepMode::kPrefill;
  EXPECT_EQ(run_training_step(cluster, profile, config).step_time, 2 * forward(prefill));
  LayerShape decode;
  decode.seq_len = 1;
  decode.kv_cache_len = 1000;
  config.mode = workloads::StepMode::kDecode;
  config.context_len = 1000;
  const StepResult r = run_training_step(cluster, profile, config);
  EXPECT_EQ(r.step_time, 2 * forward(decode));
  EXPECT_EQ(r.tokens, 2);  // one new token for each of the 2 sequences
}

TEST(StepBuilder, PipelineFollowsTheScheduleEvaluator) {
  // Two stages on two GPUs, 4 micro-batches, 1F1B. Each stage's forward and backward times are sums of kernel
  // times; the sends between stages are one transfer of T h x 2 bytes (1 us latency + bytes / 100 GB/s). The
  // schedule evaluator (workloads/schedule.hpp) with those costs and that p2p time gives the pipeline's
  // makespan; the optimizer of the last stage to finish follows. A backward's send leaves before its last kernels,
  // the weight gradients of the chunk's first layer's attention: that is its output lead.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(2, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  const compute::DeviceProfile& device = profile.device("test-gpu");
  const StepConfig config = config_for("dp=1,pp=2,mbs=1,gbs=4", 2);
  const StepResult result = run_training_step(cluster, profile, config);

  LayerShape shape;
  shape.seq_len = 512;
  const workloads::MoeModel& m = config.model;
  const TimePs forward = layer_forward(device, m, shape);
  const TimePs backward = layer_backward(device, m, shape);
  std::vector<workloads::StageCost> costs(2);
  costs[0] = {2 * forward + sum_time(device, embedding_forward(m, shape)),
              2 * backward + sum_time(device, embedding_backward(m, shape))};
  costs[1] = {2 * forward + sum_time(device, head_forward(m, shape)),
              2 * backward + sum_time(device, head_backward(m, shape))};
  TimePs attention_weight = 0;
  for (const LayerOp& op : attention_backward(m, shape)) {
    if (op.is_weight_gradient) attention_weight += compute::op_time(device, op.op);
  }
  costs[1].backward_output_lead_ps = attention_weight;
  const TimePs p2p = 1'000'000 + static_cast<TimePs>(512.0 * 256 * 2 / 100e9 * 1e12 + 0.5);
  const auto order = workloads::pipeline_order(workloads::PipelineSchedule::k1F1B, 2, 4, 1);
  const workloads::PipelineTimeline timeline = workloads::evaluate_pipeline(order, 4, 1, costs, p2p);
  // 1F1B's last backward is stage 0's, which also holds the embedding.
  const std::int64_t stage_params =
      2 * (m.num_attention_params() + m.num_router_params() + 4 * m.num_expert_params()) + m.num_embedding_params();
  const TimePs expected = timeline.makespan_ps + compute::op_time(device, optimizer_step(stage_params).op);
  std::printf("  two stages, 1F1B, 4 micro-batches: evaluator + optimizer %.3f us, simulated %.3f us\n",
              expected * 1e-6, result.step_time * 1e-6);
  EXPECT_NEAR(static_cast<double>(result.step_time), static_cast<double>(expected), 1e-4 * expected);
}

TEST(StepBuilder, SameInputsSameStep) {
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  StepConfig config = config_for("dp=2,pp=2,ep=2,mbs=1,gbs=4", 4);
  config.routing = workloads::parse_routing("zipf:1");
  const StepResult a = run_training_step(cluster, profile, config);
  const StepResult b = run_training_step(cluster, profile, config);
  EXPECT_EQ(a.step_time, b.step_time);
  EXPECT_EQ(a.execution.network.fingerprint, b.execution.network.fingerprint);
  EXPECT_GT(a.execution.network.num_flows, 0u);
  // Memoisation off plays every collective; on this small case nothing overlaps a cached one, so the times agree.
  config.executor.memoize = false;
  const StepResult played = run_training_step(cluster, profile, config);
  std::printf("  memoised %.3f us (%lld memoised), played %.3f us\n", a.step_time * 1e-6,
              static_cast<long long>(a.execution.num_collectives_memoized), played.step_time * 1e-6);
  EXPECT_NEAR(static_cast<double>(a.step_time), static_cast<double>(played.step_time), 0.02 * played.step_time);
}

// The duration of the first compute task named `name` (e.g. "fwd mb0 layer 0 experts"); -1 if there is none.
TimePs task_duration(const StepResult& result, const std::string& name) {
  for (const Task& task : result.graph.tasks()) {
    if (task.name == name && task.kind == TaskKind::kCompute) return task.duration;
  }
  return -1;
}

int count_category(const StepResult& result, const std::string& category) {
  int n = 0;
  for (const Task& task : result.graph.tasks()) n += task.category == category ? 1 : 0;
  return n;
}

TEST(StepBuilder, ExpertTensorParallelismGathersItsGroupsTokens) {
  // Four GPUs, one stage, every token picks all 4 experts (tiny_model), T = 512 tokens per GPU.
  // EP 4: each rank holds one expert and receives T copies from each of the 4 ranks: load 4T.
  // ETP 4 (EP 1): each rank holds all 4 experts at a quarter of the width; its ETP group's 4 EP groups (one GPU
  // each) route T copies to each expert, gathered: each rank runs 4 experts x 4T rows at width / 4. Same FLOPs, so
  // both cost what layer_ops says for those loads, and only the ETP layout has ETP all-gathers / reduce-scatters:
  // per MoE layer and micro-batch 2 forward and 2 backward.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  const compute::DeviceProfile& device = profile.device("test-gpu");
  const workloads::MoeModel m = tiny_model();
  LayerShape shape;
  shape.seq_len = 512;
  const StepResult ep = run_training_step(cluster, profile, config_for("dp=4,ep=4,mbs=1,gbs=4", 4));
  EXPECT_EQ(task_duration(ep, "fwd mb0 layer 0 experts"), sum_time(device, experts_forward(m, shape, {4 * 512})));
  EXPECT_EQ(count_category(ep, "etp"), 0);
  shape.etp = 4;
  const StepResult etp = run_training_step(cluster, profile, config_for("dp=4,ep=1,etp=4,mbs=1,gbs=4", 4));
  EXPECT_EQ(task_duration(etp, "fwd mb0 layer 0 experts"),
            sum_time(device, experts_forward(m, shape, {4 * 512, 4 * 512, 4 * 512, 4 * 512})));
  // The backward's input gradients are one task, its weight gradients another.
  const std::vector<LayerOp> backward = experts_backward(m, shape, {4 * 512, 4 * 512, 4 * 512, 4 * 512});
  TimePs weight = 0;
  for (const LayerOp& op : backward) weight += op.is_weight_gradient ? compute::op_time(device, op.op) : 0;
  EXPECT_EQ(task_duration(etp, "bwd mb0 layer 0 experts"), sum_time(device, backward) - weight);
  EXPECT_EQ(task_duration(etp, "bwd mb0 layer 0 experts wgrad"), weight);
  EXPECT_EQ(count_category(etp, "etp"), 4 * 1 * 4);  // 4 layers x 1 micro-batch x 4 collectives
  EXPECT_LT(etp.mfu, 1.0);
}

// When task `name` (a collective or compute task) ran.
TaskTiming timing_of(const StepResult& result, const std::string& name) {
  for (std::size_t i = 0; i < result.graph.tasks().size(); ++i) {
    if (result.graph.tasks()[i].name == name) return result.execution.timings[i];
  }
  ADD_FAILURE() << "no task " << name;
  return {};
}

// Tasks on stream `stream` whose name contains `part`.
int count_named(const StepResult& result, int stream, const std::string& part) {
  int n = 0;
  for (const Task& task : result.graph.tasks()) {
    n += task.stream == stream && task.name.find(part) != std::string::npos ? 1 : 0;
  }
  return n;
}

TEST(StepBuilder, SequenceParallelismGathersAndScattersAroundTpBlocksAndWeightGradientsOverlap) {
  // TP 2 on two GPUs, one micro-batch of 512 tokens, hidden 256: with sequence parallelism each TP block (the
  // attention here; the MoE block has no shared experts) all-gathers its input and reduce-scatters its output,
  // forward and backward: 4 layers x 2 passes x 2 = 16 TP collectives, no all-reduce. Each moves half of the
  // T h x 2 bytes = 262,144-byte buffer to the peer: 1 us (two hops of 0.5 us) + 131,072 B / 100 GB/s.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(2, "100 GB/s", "0.5 us"));
  const StepResult r = run_training_step(cluster, test_profile(), config_for("dp=1,tp=2,mbs=1,gbs=1", 2));
  EXPECT_EQ(count_category(r, "tp"), 16);
  EXPECT_EQ(count_named(r, 1, "all-reduce"), 0);
  const TaskTiming gather = timing_of(r, "fwd mb0 layer 0 attention tp all-gather");
  const double expected = 1e6 + 131072.0 / 100e9 * 1e12;
  EXPECT_NEAR(static_cast<double>(gather.end - gather.start), expected, 0.01 * expected);
  // Backward: the weight gradients start when the input gradients end, while their reduce-scatter is in flight.
  const TaskTiming input = timing_of(r, "bwd mb0 layer 0 attention");
  const TaskTiming weight = timing_of(r, "bwd mb0 layer 0 attention wgrad");
  const TaskTiming scatter = timing_of(r, "bwd mb0 layer 0 attention tp reduce-scatter");
  EXPECT_EQ(weight.start, input.end);
  EXPECT_EQ(scatter.start, input.end);
  EXPECT_LT(weight.start, scatter.end);
}

TEST(StepBuilder, ZeroStagesPlaceTheirGradientAndParameterCollectives) {
  // DP 2 (EP 1, so the experts' data-parallel group is the same 2 GPUs), 2 micro-batches, 4 MoE layers. Gradient
  // rings per reduction point: each layer's dense (dp) and expert (edp) parameters, the embedding's and the
  // head's (dp): 4 x 2 + 2 = 10. ZeRO 0 and 1 reduce once per step; 2 and 3 once per micro-batch. The updated
  // parameters are all-gathered after the optimizer (dp and edp) with ZeRO 1 and 2; ZeRO 3 gathers each layer's
  // before each forward and backward instead: 4 layers x 2 passes x 2 micro-batches x 2 rings = 32.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(2, "100 GB/s", "0.5 us"));
  StepConfig config = config_for("dp=2,mbs=1,gbs=4", 2);
  const int dp_stream = 3;
  const int param_stream = 4;  // ZeRO-3's gathers, apart from the gradient reductions
  for (const int zero : {0, 1, 2, 3}) {
    config.zero_stage = zero;
    const StepResult r = run_training_step(cluster, test_profile(), config);
    SCOPED_TRACE("zero " + std::to_string(zero));
    EXPECT_EQ(count_named(r, dp_stream, "grads"), zero >= 2 ? 20 : 10);
    EXPECT_EQ(count_named(r, dp_stream, "params all-gather"), zero == 1 || zero == 2 ? 2 : 0);
    EXPECT_EQ(count_named(r, param_stream, "params dp"), zero == 3 ? 16 : 0);
    EXPECT_EQ(count_named(r, param_stream, "params edp"), zero == 3 ? 16 : 0);
  }
}

TEST(StepBuilder, ZeroThreeGathersAheadOfTheChainAndTheBreakdownAddsUp) {
  // Two stages of DP 2 on four GPUs, ZeRO 3. Stage 1's first forward gathers its first layer's parameters while
  // stage 0 still computes: the gather waits for nothing (the send feeds the chain, not the gather), so it starts
  // before stage 0's send of micro-batch 0 has arrived. Every stage's breakdown cuts the step time exactly.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  StepConfig config = config_for("dp=2,pp=2,mbs=1,gbs=4", 4);
  config.zero_stage = 3;
  const StepResult r = run_training_step(cluster, test_profile(), config);
  EXPECT_LT(timing_of(r, "fwd mb0 layer 2 params dp").start, timing_of(r, "fwd mb0 send").end);
  EXPECT_GE(timing_of(r, "fwd mb0 layer 2 attention").start, timing_of(r, "fwd mb0 send").end);
  for (const StageBreakdown& b : r.stages) {
    EXPECT_EQ(b.compute + b.exposed_layer_comm + b.exposed_pp_comm + b.exposed_dp_comm + b.idle, r.step_time);
  }
}

TEST(StepBuilder, RoutingSamplesGiveEachMicroBatchItsOwnTokens) {
  // Four GPUs, EP 4, 2 micro-batches, top-1 of 4 experts over a Zipf popularity. One sample: both micro-batches
  // dispatch the same traffic (one dispatch spec per layer). Two: one per layer and sample, micro-batch 0 keeping
  // the first sample's routing (the same as with one), and the slowest rank's expert load differs somewhere.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  StepConfig config = config_for("dp=4,ep=4,mbs=1,gbs=8", 4);
  config.model.num_topk = 1;
  config.routing = workloads::parse_routing("zipf:1");
  auto dispatch_specs = [](const StepResult& r) {
    int n = 0;
    for (const CollectiveSpec& spec : r.graph.collectives())
      n += spec.signature.find(" dispatch ") != std::string::npos;
    return n;
  };
  const StepResult one = run_training_step(cluster, test_profile(), config);
  config.routing_samples = 2;
  const StepResult two = run_training_step(cluster, test_profile(), config);
  EXPECT_EQ(dispatch_specs(one), 4);
  EXPECT_EQ(dispatch_specs(two), 8);
  bool differs = false;
  for (int layer = 0; layer < 4; ++layer) {
    const std::string l = " layer " + std::to_string(layer) + " experts";
    EXPECT_EQ(task_duration(one, "fwd mb0" + l), task_duration(two, "fwd mb0" + l));
    EXPECT_EQ(task_duration(one, "fwd mb0" + l), task_duration(one, "fwd mb1" + l));
    differs = differs || task_duration(two, "fwd mb0" + l) != task_duration(two, "fwd mb1" + l);
  }
  EXPECT_TRUE(differs);
  config.routing_samples = 0;
  EXPECT_THROW(run_training_step(cluster, test_profile(), config), std::invalid_argument);
}

TEST(StepBuilder, SmsGivenToCommunicationSlowComputeAndCapTraffic) {
  // Two stages as in PipelineFollowsTheScheduleEvaluator, with 2 of the H100's 132 SMs given to communication:
  // every kernel runs on 130 / 132 of the SMs (op_time's sm_fraction) and the pipeline send is capped at 2 x the
  // profile's comm_bandwidth_per_sm (2 x 25 GB/s, below the link's 100 GB/s).
  const topologies::Cluster cluster(moesim::testing::crossbar_config(2, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  const compute::DeviceProfile& device = profile.device("test-gpu");
  ASSERT_EQ(device.sm_count, 132);
  StepConfig config = config_for("dp=1,pp=2,mbs=1,gbs=1", 2);
  const StepResult full = run_training_step(cluster, profile, config);
  config.comm_sms = 2;
  const StepResult half = run_training_step(cluster, profile, config);
  const std::string name = "fwd mb0 layer 0 attention";
  TimePs expected = 0;
  LayerShape shape;
  shape.seq_len = 512;
  for (const LayerOp& op : attention_forward(config.model, shape))
    expected += compute::op_time(device, op.op, 130.0 / 132.0);
  EXPECT_EQ(task_duration(half, name), expected);
  EXPECT_GT(half.step_time, full.step_time);
  const double cap = 2 * device.comm_bandwidth_per_sm_bps;
  ASSERT_LT(cap, 100e9);
  const TaskTiming send = timing_of(half, "fwd mb0 send");
  const double send_expected = 1e6 + 512.0 * 256 * 2 / cap * 1e12;
  EXPECT_NEAR(static_cast<double>(send.end - send.start), send_expected, 0.01 * send_expected);
  config.comm_sms = 132;
  EXPECT_THROW(run_training_step(cluster, profile, config), std::invalid_argument);
}

TEST(StepBuilder, InvalidLayoutsAreRejected) {
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "100 GB/s", "0.5 us"));
  const compute::CostProfile profile = test_profile();
  StepConfig config = config_for("dp=2,pp=2,ep=4,mbs=1,gbs=4", 4);  // ep 4 > dp x tp = 2
  EXPECT_THROW(run_training_step(cluster, profile, config), std::invalid_argument);
  config = config_for("dp=4,mbs=1,gbs=4", 4);
  EXPECT_THROW(run_training_step(cluster, compute::default_cost_profile(), config), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim::step
