// Analytic validation of the training step: the memory model against a hand calculation for Mixtral-8x7B, the
// pipeline bubble of a simulated step against (p - 1) / (m + p - 1), the planner against a case whose best layout
// follows from an argument, and the executor's overlap of communication with compute. Each test works its
// expectation out in the comments, with the numbers, and prints it beside the simulated value.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../unit/sim/test_clusters.hpp"
#include "common/config.hpp"
#include "sim/plan.hpp"
#include "sim/step/builder.hpp"
#include "sim/step/executor.hpp"
#include "topologies/cluster.hpp"
#include "workloads/layout.hpp"
#include "workloads/memory.hpp"
#include "workloads/model.hpp"

namespace moesim::sim {
namespace {

constexpr TimePs kUs = 1'000'000;  // picoseconds per microsecond

void print(const std::string& what, double expected, double actual) {
  std::printf("%-50s Expectation: %18.4f / Actual result: %18.4f (ratio %.6f)\n", what.c_str(), expected, actual,
              expected != 0 ? actual / expected : 1.0);
}

// The built-in profile, with the test clusters' GPU ("test-gpu") answering to the H100's numbers.
compute::CostProfile test_profile() {
  compute::CostProfile profile = compute::default_cost_profile();
  for (compute::DeviceProfile& device : profile.devices) {
    if (device.name == "H100-SXM") device.aliases.push_back("test-gpu");
  }
  return profile;
}

workloads::MoeModel model_from_yaml(const std::string& yaml, const std::string& source) {
  return workloads::parse_model(load_yaml_text(yaml, source), source);
}

TEST(StepValidation, MixtralMemoryMatchesAHandCalculation) {
  // Mixtral-8x7B, from its config.json: h = 4096, L = 32 layers, E = 8 experts, top-k = 2, f = 14336 (SwiGLU, so
  // c = 6 bytes of intermediates per channel: gate and up 4f, down input 2f), a = 32 heads of d = 128, g = 8 KV
  // heads, v = 32000, untied head, no shared experts, BF16 dispatch and combine.
  // Layout dp=8,tp=2,pp=4,ep=8,etp=1,mbs=1,gbs=256 on 64 GPUs: edp = dp tp / (ep etp) = 8 x 2 / 8 = 2, 32 / 4 = 8
  // layers a stage, m = 256 / (1 x 8) = 32 micro-batches. s = 4096, b = 1, ZeRO-1, selective recomputation,
  // sequence parallelism (t_sp = t = 2), BF16 parameters, FP32 gradients, FP32 master weights and Adam moments.
  const workloads::MoeModel model = workloads::load_model("mixtral-8x7b");
  const workloads::ParallelLayout layout = workloads::parse_layout("dp=8,tp=2,pp=4,ep=8,etp=1,mbs=1,gbs=256", 64);
  workloads::MemoryOptions options;
  options.seq_length = 4096;
  options.zero_stage = 1;
  options.recompute = workloads::Recompute::kSelective;

  // Parameters per GPU (Megatron-Core's sharding, memory.hpp). One layer:
  //   attention  q: h a d / t = 4096 x 32 x 128 / 2 = 8,388,608; k and v: 2 h (g / t) d = 2 x 4096 x 4 x 128 =
  //              4,194,304; o: a d h / t = 8,388,608; together 20,971,520 (Mixtral's 41,943,040 / 2)
  //   norms      2 h = 8,192 (whole); router h E = 32,768 (whole: Megatron replicates the router over TP)
  //   dense      20,971,520 + 8,192 + 32,768 = 21,012,480
  //   experts    (E / ep) x 3 h f / etp = 1 x 3 x 4096 x 14336 = 176,160,768
  // Stage 0: 8 layers and the embedding, v_pad h / t with v_pad = 32000 (already a multiple of 128 t = 256):
  //   P_dense = 8 x 21,012,480 + 32000 x 4096 / 2 = 168,099,840 + 65,536,000 = 233,635,840
  //   P_expert = 8 x 176,160,768 = 1,409,286,144
  const double dense_layer = 4096.0 * 32 * 128 / 2 + 2.0 * 4096 * 4 * 128 + 32.0 * 128 * 4096 / 2 + 2 * 4096 + 4096 * 8;
  const double expert_layer = 8.0 / 8 * 3 * 4096 * 14336 / 1;
  const double table = 32000.0 * 4096 / 2;
  const double p_dense = 8 * dense_layer + table;
  const double p_expert = 8 * expert_layer;
  ASSERT_DOUBLE_EQ(p_dense, 233'635'840.0);
  ASSERT_DOUBLE_EQ(p_expert, 1'409'286'144.0);
  // Model states (ZeRO, Rajbhandari et al. 2020; Megatron's distributed optimizer: 6 + 12 / d bytes a parameter):
  //   parameters 2 x (P_dense + P_expert) = 2 x 1,642,921,984 = 3,285,843,968 (ZeRO-1 does not shard them)
  //   gradients  4 x 1,642,921,984 = 6,571,687,936 (FP32 main_grad, not sharded at ZeRO-1)
  //   optimizer  (4 master + 2 x 4 moments) x (P_dense / dp + P_expert / edp)
  //              = 12 x (29,204,480 + 704,643,072) = 12 x 733,847,552 = 8,806,170,624
  const double parameters = 2 * (p_dense + p_expert);
  const double gradients = 4 * (p_dense + p_expert);
  const double optimizer = 12 * (p_dense / 8 + p_expert / 2);

  // Activations (Korthikanti et al. 2022, sec. 4, per token of the micro-batch, with sequence parallelism):
  //   attention  norm input 2h / t + projection input 2h / t = 4,096 + 4,096; dropout mask h / t = 2,048;
  //              output projection input 2 a d / t = 4,096; Q 2 a d / t = 4,096; K and V 2 (g / t) d each =
  //              1,024 + 1,024; selective recomputation drops the 5 a s / t scores: 20,480 bytes
  //   MoE FFN    norm input 2h / t = 4,096, norm output 2h / t = 4,096, FP32 router probabilities 4 E / t = 16,
  //              dropout mask h / t = 2,048, routed copies: each of the rank's tokens sends k = 2, and the rank
  //              computes as many (balanced), each keeping its permuted input 2h, its intermediates 6f and its
  //              output 2h: k (4h + 6f) / t = 2 x (16,384 + 86,016) / 2 = 102,400; together 112,656 bytes
  //   a layer    20,480 + 112,656 = 133,136 bytes a token, x s b = 4096 tokens = 545,325,056 bytes
  // Stage 0 keeps min(pp, m) = 4 micro-batches in flight (1F1B), each of 8 layers and the embedding's dropout
  // mask s b h / t = 4096 x 2048 = 8,388,608:
  //   4 x (8 x 545,325,056 + 8,388,608) = 4 x 4,370,989,056 = 17,483,956,224
  const double attention_per_token =
      2.0 * 4096 / 2 + 2.0 * 4096 / 2 + 4096.0 / 2 + 2.0 * 32 * 128 / 2 + 2.0 * 32 * 128 / 2 + 2 * (2.0 * 4 * 128);
  const double moe_per_token =
      2.0 * 4096 / 2 + 2.0 * 4096 / 2 + 4.0 * 8 / 2 + 4096.0 / 2 + 2 * (4.0 * 4096 + 6.0 * 14336) / 2;
  ASSERT_DOUBLE_EQ(attention_per_token, 20'480.0);
  ASSERT_DOUBLE_EQ(moe_per_token, 112'656.0);
  const double layer = 4096 * (attention_per_token + moe_per_token);
  const double activations = 4 * (8 * layer + 4096 * 4096.0 / 2);
  // All-to-All buffers (DeepEP-style, memory.hpp): T_r = s b / t = 2048 tokens, k = 2 copies each, the busiest rank
  // receiving lambda = 1 times as many: T_r k (1 + lambda) (dispatch 2h + combine 2h)
  //   = 2048 x 2 x 2 x (8,192 + 8,192) = 134,217,728
  const double a2a = 2048.0 * 2 * 2 * (2 * 4096 + 2 * 4096);
  // Total: 3,285,843,968 + 6,571,687,936 + 8,806,170,624 + 17,483,956,224 + 134,217,728 = 36,281,876,480 bytes.
  const double total = parameters + gradients + optimizer + activations + a2a;
  ASSERT_DOUBLE_EQ(total, 36'281'876'480.0);

  const workloads::MemoryBreakdown m = workloads::memory_per_gpu(model, layout, options);
  print("busiest stage", 0, m.pp_idx);
  print("micro-batches in flight", 4, m.in_flight_microbatches);
  print("parameters (bytes)", parameters, m.parameters);
  print("gradients (bytes)", gradients, m.gradients);
  print("optimizer states (bytes)", optimizer, m.optimizer_states);
  print("activations (bytes)", activations, m.activations);
  print("all-to-all buffers (bytes)", a2a, m.a2a_buffers);
  print("total (bytes)", total, m.total);
  EXPECT_EQ(m.pp_idx, 0);
  EXPECT_DOUBLE_EQ(m.in_flight_microbatches, 4);
  EXPECT_DOUBLE_EQ(m.parameters, parameters);
  EXPECT_DOUBLE_EQ(m.gradients, gradients);
  EXPECT_DOUBLE_EQ(m.optimizer_states, optimizer);
  EXPECT_DOUBLE_EQ(m.activations, activations);
  EXPECT_DOUBLE_EQ(m.a2a_buffers, a2a);
  EXPECT_DOUBLE_EQ(m.kv_cache, 0);
  EXPECT_DOUBLE_EQ(m.total, total);

  // The last stage (3): the same 8 layers, the output head instead of the embedding plus the final norm h, one
  // micro-batch in flight (min(pp - 3, m) = 1), and the final norm's and output layer's activations
  // (Korthikanti sec. 4.3) 4h / t + 4 v / t per token instead of the embedding's mask:
  //   P_dense = 233,635,840 + 4,096 = 233,639,936
  //   activations = 8 x 545,325,056 + 4096 x (4 x 4096 / 2 + 4 x 32000 / 2) = 4,362,600,448 + 295,698,432
  //               = 4,658,298,880
  const double p_dense_last = 8 * dense_layer + table + 4096;
  const double activations_last = 8 * layer + 4096 * (4.0 * 4096 / 2 + 4.0 * 32000 / 2);
  const workloads::MemoryBreakdown last = workloads::memory_of_stage(model, layout, options, 3);
  print("last stage: parameters (bytes)", 2 * (p_dense_last + p_expert), last.parameters);
  print("last stage: optimizer states (bytes)", 12 * (p_dense_last / 8 + p_expert / 2), last.optimizer_states);
  print("last stage: activations (bytes)", activations_last, last.activations);
  EXPECT_DOUBLE_EQ(last.parameters, 2 * (p_dense_last + p_expert));
  EXPECT_DOUBLE_EQ(last.optimizer_states, 12 * (p_dense_last / 8 + p_expert / 2));
  EXPECT_DOUBLE_EQ(last.activations, activations_last);
  EXPECT_LT(last.total, m.total);

  // Without recomputation each layer also keeps the attention scores, 5 a s / t = 5 x 32 x 4096 / 2 = 327,680
  // bytes a token: stage 0 gains 4 micro-batches x 8 layers x 4096 tokens x 327,680 = 42,949,672,960 bytes.
  options.recompute = workloads::Recompute::kNone;
  const double scores = 4 * 8 * 4096 * (5.0 * 32 * 4096 / 2);
  const workloads::MemoryBreakdown none = workloads::memory_per_gpu(model, layout, options);
  print("recompute none: activations (bytes)", activations + scores, none.activations);
  EXPECT_DOUBLE_EQ(none.activations, activations + scores);
}

// An MoE model whose every token picks every expert (top-k = experts), so each expert's load is the micro-batch's
// tokens whatever the routing samples: 12 equal layers, 3 a stage, with GEMMs large enough (h 1024, 4 experts of
// 4096 channels, 4096 tokens a micro-batch) that what is not a layer (the embedding and head, with a vocabulary of
// 256) costs under 1% of a stage.
workloads::MoeModel bubble_model() {
  return model_from_yaml(
      "name: bubble\nhidden_size: 1024\nnum_experts: 4\nnum_topk: 4\nmoe_intermediate_size: 4096\nnum_layers: 12\n"
      "num_attention_heads: 8\nvocab_size: 256\n",
      "bubble.yaml");
}

TEST(StepValidation, OneFOneBBubbleOfASimulatedStepIsTheClosedForm) {
  // p = 4 stages of 3 layers each on a crossbar of 4 GPUs, 1F1B, m micro-batches. With forward f and backward b
  // per micro-batch on every stage and free sends, each stage computes for m (f + b) of the pipeline's
  // (m + p - 1)(f + b) (workloads/schedule.hpp; Narayanan et al. 2021): the idle share of the pipeline is
  //   (p - 1) / (m + p - 1) = 3 / 11 = 0.2727 for m = 8, 3 / 19 = 0.1579 for m = 16.
  // Measured on the stage that computes the most (it sets the pace of the steady state): idle / (idle + C), C its
  // compute without the optimizer (which runs after the pipeline; with dp = 1 there is no gradient reduction).
  // Communication is made negligible: a send of 4096 x 1024 x 2 bytes = 8 MiB at 10 TB/s is 0.8 us, against
  // about 9 ms of compute a stage and micro-batch.
  // Two modelled effects the closed form leaves out make the simulated share slightly smaller (about 1%): the last
  // stage also runs the head (about 1% more compute than the others, so its own f + b is the larger), and a
  // backward sends its input gradients before the weight gradients of the stage's first attention, which shortens
  // the cool-down. Serialised stages would give (p - 1) / p = 0.75; a bubble twice as long, 0.43 and 0.27.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "10000 GB/s", "0.1 us"));
  const compute::CostProfile profile = test_profile();
  for (const int m : {8, 16}) {
    step::StepConfig config;
    config.model = bubble_model();
    config.layout = workloads::parse_layout("dp=1,pp=4,mbs=1,gbs=" + std::to_string(m), 4);
    config.seq_len = 4096;
    const step::StepResult result = step::run_training_step(cluster, profile, config);
    ASSERT_EQ(result.stages.size(), 4u);

    const step::StageBreakdown* busiest = nullptr;
    TimePs busiest_pipeline_compute = 0;
    for (const step::StageBreakdown& stage : result.stages) {
      TimePs optimizer = 0;
      for (const step::Task& task : result.graph.tasks()) {
        if (task.lane == stage.stage && task.category == "optimizer") optimizer += task.duration;
      }
      const TimePs pipeline_compute = stage.compute - optimizer;
      std::printf("  m = %d, stage %d: compute %.1f us (optimizer %.1f us), idle %.1f us, exposed pp %.2f us\n", m,
                  stage.stage, stage.compute * 1e-6, optimizer * 1e-6, stage.idle * 1e-6, stage.exposed_pp_comm * 1e-6);
      if (busiest == nullptr || pipeline_compute > busiest_pipeline_compute) {
        busiest = &stage;
        busiest_pipeline_compute = pipeline_compute;
      }
    }
    const double expected = 3.0 / (m + 3.0);
    const double actual =
        static_cast<double>(busiest->idle) / static_cast<double>(busiest->idle + busiest_pipeline_compute);
    print("1F1B bubble, p = 4, m = " + std::to_string(m), expected, actual);
    EXPECT_NEAR(actual, expected, 0.02 * expected) << "m = " << m;
    // The pipeline runs the stages side by side: serialised, the idle share would be (p - 1) / p = 0.75.
    EXPECT_LT(result.step_time, 2 * busiest->compute);
  }
}

TEST(StepValidation, PlannerPicksTheLayoutWithoutBubbleOrTensorParallelism) {
  // Four GPUs on a crossbar at 10 TB/s and 0.1 us a hop, so communication costs microseconds against a step of
  // milliseconds. The model has one expert (top-1), so ep = 1 in every layout, and 8 heads, so tp in {1, 2, 4};
  // 4 layers, so pp in {1, 2, 4}. gbs = 8 sequences of 4096 tokens, mbs = 1: the valid layouts (dp, tp, pp) are
  // (4,1,1), (2,2,1), (1,4,1), (2,1,2), (1,2,2), (1,1,4). All fit (a 68M-parameter model on 16 GiB GPUs).
  // Every layout gives each GPU the same FLOPs of the layers (gbs x L / 4 layer passes' worth); with pp > 1 the head's
  // and the embedding's fall on one stage instead of being spread, which only slows pp down. What differs:
  //   pp > 1: the 1F1B bubble adds (p - 1) / m of the compute: pp 2 with m = 4 (+25%), pp 4 with m = 8 (+37.5%);
  //   tp > 1: each GPU runs every kernel of t times as many micro-batches (dp = 4 / t replicas share gbs), each 1/t
  //           the size: the FLOPs are equal but the launch overheads t times as many (3 us each), and every layer
  //           pass adds TP all-reduces of its activations on the critical path;
  //   dp = 4: only the gradient reduce-scatter (overlapping the backward) and the parameter all-gather after the
  //           optimizer, tens of microseconds at 10 TB/s.
  // So dp=4,tp=1,pp=1 must rank first.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(4, "10000 GB/s", "0.1 us"));
  const compute::CostProfile profile = test_profile();
  step::StepConfig base;
  base.model = model_from_yaml(
      "name: one-expert\nhidden_size: 1024\nnum_experts: 1\nnum_topk: 1\nmoe_intermediate_size: 4096\n"
      "num_layers: 4\nnum_attention_heads: 8\nvocab_size: 256\n",
      "one-expert.yaml");
  base.seq_len = 4096;
  PlanOptions options;
  options.enumerate.gbs = 8;
  options.enumerate.mbs_candidates = {1};
  options.top = 6;
  options.num_threads = 2;
  const reports::PlanResult plan = run_plan(cluster, profile, base, options);
  for (const reports::PlanEntry& e : plan.ranked()) {
    std::printf("  %lld. %s: %.3f ms (bound %.3f ms, bubble %.3f)\n", static_cast<long long>(e.rank()),
                e.layout().c_str(), e.step_time_ms(), e.bound_ms(), e.bubble_fraction());
  }
  for (const reports::PlanEntry& e : plan.others()) {
    std::printf("  %s: %s (%s)\n", e.layout().c_str(), e.status().c_str(), e.reason().c_str());
  }
  EXPECT_EQ(plan.num_valid(), 6);
  EXPECT_EQ(plan.num_fit(), 6);
  ASSERT_GE(plan.ranked_size(), 1);
  const std::string expected = "dp=4,tp=1,pp=1,ep=1,etp=1,vpp=1,mbs=1,gbs=8";
  std::printf("best layout: Expectation: %s / Actual result: %s\n", expected.c_str(), plan.ranked(0).layout().c_str());
  EXPECT_EQ(plan.ranked(0).layout(), expected);
  EXPECT_EQ(plan.ranked(0).recompute(), "none");
  // The bubble argument in numbers: a layout with pp > 1 and m micro-batches takes at least 1 + (p - 1) / m times
  // the winner's compute; the winner's step also holds its gradient reduction and optimizer, so allow 10% of the
  // bubble for them: at least 1 + 0.9 (p - 1) / m times the winner's step.
  for (const reports::PlanEntry& e : plan.ranked()) {
    const workloads::ParallelLayout layout = workloads::parse_layout(e.layout(), 4);
    if (layout.pp == 1) continue;
    const double bubble = static_cast<double>(layout.pp - 1) / static_cast<double>(workloads::num_microbatches(layout));
    print(e.layout() + " / best", 1 + bubble, e.step_time_ms() / plan.ranked(0).step_time_ms());
    EXPECT_GE(e.step_time_ms(), (1 + 0.9 * bubble) * plan.ranked(0).step_time_ms()) << e.layout();
  }
}

// One transfer of `bytes` from GPU 0 to GPU 1.
int add_transfer(step::TaskGraph& graph, double bytes) {
  step::CollectiveSpec spec;
  spec.signature = "0->1:" + std::to_string(bytes);
  spec.graph.add_transfer(0, 1, bytes);
  return graph.add_collective_spec(std::move(spec));
}

TEST(StepValidation, CommunicationHiddenUnderComputeAddsNoTimeAndTheRestAddsTheExcess) {
  // Two GPUs on a crossbar, 100 GB/s ports, 0.5 us a hop: a transfer alone takes T = 2 x 0.5 us + bytes / 100 GB/s.
  // Lane 0: compute C = 12 us on stream 0, the transfer on stream 1 from time 0, and a final compute task of 2 us
  // on stream 0 that waits for both. CUDA-stream semantics: makespan = max(C, T) + 2 us, and the communication not
  // covered by compute (stream_time's exposed) is max(0, T - C). With 0.5, 1, 2, 3 MB: T = 6, 11, 21, 31 us.
  const topologies::Cluster cluster(moesim::testing::crossbar_config(2, "100 GB/s", "0.5 us"));
  const TimePs compute = 12 * kUs;
  const TimePs last = 2 * kUs;
  for (const double bytes : {0.5e6, 1e6, 2e6, 3e6}) {
    step::TaskGraph graph;
    graph.add_compute(0, 0, "compute", "compute", compute);
    const step::TaskId comm = graph.add_collective(0, 1, "comm", "comm", add_transfer(graph, bytes));
    const step::TaskId final_task = graph.add_compute(0, 0, "final", "compute", last);
    graph.add_dependency(comm, final_task);
    const step::ExecutionResult r = step::execute(cluster, graph);

    const TimePs transfer = kUs + static_cast<TimePs>(bytes / 100e9 * 1e12);
    const TimePs makespan = std::max(compute, transfer) + last;
    const TimePs exposed = std::max<TimePs>(0, transfer - compute);
    const step::StreamTime comm_time = step::stream_time(graph, r, 0, 1, 0);
    const std::string tag = std::to_string(static_cast<int>(bytes / 1e3)) + " kB";
    print("transfer (us), " + tag, transfer * 1e-6, comm_time.busy * 1e-6);
    print("makespan (us), " + tag, makespan * 1e-6, r.makespan * 1e-6);
    print("exposed communication (us), " + tag, exposed * 1e-6, comm_time.exposed * 1e-6);
    EXPECT_EQ(comm_time.busy, transfer) << tag;
    EXPECT_EQ(r.makespan, makespan) << tag;
    EXPECT_EQ(comm_time.exposed, exposed) << tag;
    // What the communication adds to the compute-only step (C + 2 us) is exactly its exposed part.
    EXPECT_EQ(r.makespan - (compute + last), comm_time.exposed) << tag;
  }
}

}  // namespace
}  // namespace moesim::sim
