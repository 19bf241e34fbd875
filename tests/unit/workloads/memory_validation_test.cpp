// The memory model against closed forms from its sources, and DeepSeek-V3's training setup, printed side by side.
//
// Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (2022), sec. 4-5, give
// per-layer activation memory for a GPT (MHA, GeLU FFN of 4h, 16-bit activations, 1-byte dropout masks):
//   tensor parallel only:          s b h (10 + 24 / t + 5 a s / (h t))
//   + sequence parallel:           s b h (34 + 5 a s / h) / t
//   + selective recompute:         34 s b h / t
//   full recompute:                2 s b h (the layer input; / t when sequence parallel keeps it sharded)
// and, under 1F1B, the first stage keeps L / p layers for p micro-batches (L layers' worth), times
// 1 + (p - 1) / (p m) when interleaved with m virtual stages.
#include "workloads/memory.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace moesim::workloads {
namespace {

constexpr double kGB = 1e9;
constexpr double kGiB = 1024.0 * 1024 * 1024;

void expect_closed_form(const std::string& what, double expected, double actual) {
  std::printf("%-52s Expectation: %16.0f  Actual result: %16.0f\n", what.c_str(), expected, actual);
  EXPECT_DOUBLE_EQ(actual, expected) << what;
}

// GPT-3 175B (Brown et al. 2020): 96 layers, h 12288, 96 heads, f 4h, vocabulary 50257 (padded as Megatron does).
MoeModel gpt3() {
  MoeModel m;
  m.source = m.name = "gpt3-175b";
  m.hidden_size = 12288;
  m.num_experts = 1;
  m.num_topk = 1;
  m.moe_intermediate_size = m.shared_expert_intermediate_size = 4 * 12288;
  m.num_layers = 96;
  m.first_k_dense = 96;
  m.intermediate_size = 4 * 12288;
  m.gated_ffn = false;
  m.attention = AttentionKind::kMha;
  m.num_attention_heads = m.num_key_value_heads = 96;
  m.head_dim = 128;
  m.vocab_size = 50257;
  return m;
}

TEST(MemoryValidation, KorthikantiPerLayerActivations) {
  const MoeModel model = gpt3();
  const double s = 2048;
  const double b = 1;
  const double h = 12288;
  const double a = 96;
  for (const int t : {1, 2, 8}) {
    const ParallelLayout layout{1, t, 1, 1, 1, 1, 1, 1};
    MemoryOptions o;
    o.seq_length = 2048;
    const std::string tag = " (t = " + std::to_string(t) + ")";
    expect_closed_form("sequence parallel: s b h (34 + 5 a s / h) / t" + tag, s * b * h * (34 + 5 * a * s / h) / t,
                       layer_activation_bytes(model, layout, o, false));
    o.sequence_parallel = false;
    expect_closed_form("tensor parallel: s b h (10 + 24 / t + 5 a s / (h t))" + tag,
                       s * b * h * (10 + 24.0 / t + 5 * a * s / (h * t)),
                       layer_activation_bytes(model, layout, o, false));
    o.sequence_parallel = true;
    o.recompute = Recompute::kSelective;
    expect_closed_form("selective: 34 s b h / t" + tag, 34 * s * b * h / t,
                       layer_activation_bytes(model, layout, o, false));
    o.recompute = Recompute::kFull;
    expect_closed_form("full: 2 s b h / t" + tag, 2 * s * b * h / t, layer_activation_bytes(model, layout, o, false));
  }
}

TEST(MemoryValidation, KorthikantiFirstStageHoldsAllLayersWorth) {
  // 8 stages of 12 layers, t 8, 64 micro-batches; the first stage keeps p = 8 micro-batches of its 12 layers, i.e.
  // 96 layers' worth, plus 8 embedding dropout masks s b h / t. Interleaved with 2 chunks: x (1 + 7 / 16).
  const MoeModel model = gpt3();
  MemoryOptions o;
  o.seq_length = 2048;
  o.recompute = Recompute::kSelective;
  const ParallelLayout layout{8, 8, 8, 1, 1, 1, 1, 512};
  const double layer = layer_activation_bytes(model, layout, o, false);
  const double mask = 2048.0 * 12288 / 8;
  expect_closed_form("1F1B first stage: L layers + p masks", 96 * layer + 8 * mask,
                     memory_of_stage(model, layout, o, 0).activations);
  const ParallelLayout interleaved{8, 8, 8, 1, 1, 2, 1, 512};
  expect_closed_form("interleaved first stage: x (1 + (p - 1) / (p m))", (1 + 7.0 / 16) * (96 * layer + 8 * mask),
                     memory_of_stage(model, interleaved, o, 0).activations);
}

void print_breakdown(const std::string& what, const MemoryBreakdown& m) {
  std::printf("%s: stage %d, %.2f micro-batches in flight\n", what.c_str(), m.pp_idx, m.in_flight_microbatches);
  std::printf("  parameters %8.2f GB  gradients %8.2f GB  optimizer %8.2f GB  activations %8.2f GB\n",
              m.parameters / kGB, m.gradients / kGB, m.optimizer_states / kGB, m.activations / kGB);
  std::printf("  a2a buffers %7.2f GB  kv cache %9.2f GB  total %8.2f GB\n", m.a2a_buffers / kGB, m.kv_cache / kGB,
              m.total / kGB);
}

TEST(MemoryValidation, DeepSeekV3On2048H800s) {
  // The DeepSeek-V3 technical report (sec. 3.1-3.3): 2048 H800s (80 GB), 16-way pipeline, 64-way expert parallelism
  // over 8 nodes, ZeRO-1 data parallelism, no tensor parallelism: dp = 2048 / 16 = 128, edp = 128 / 64 = 2. BF16
  // weights, FP32 master weights and gradients, AdamW moments in BF16 (sec. 3.3.3). Sequences of 4K, global batch
  // up to 15,360 sequences.
  const MoeModel model = load_model("deepseek-v3");
  const ParallelLayout layout = parse_layout("dp=128,tp=1,pp=16,ep=64,etp=1,mbs=1,gbs=15360", 2048);
  MemoryOptions o;
  o.seq_length = 4096;
  o.zero_stage = 1;
  o.optimizer_state_dtype = DType::kBf16;

  // The sanity range for the model states (parameters, gradients, optimizer) of the busiest stage:
  //   at least: its BF16 weights, and no GPU holds less than 1 / (pp x ep) of the weights (experts split 64 ways,
  //     everything else only by stage), so at least 2 bytes x (all parameters with MTP) / (16 x 64);
  //   at most: 80 GB, the H800's memory, which the report's layout (no TP) had to fit states and activations in.
  double most_states = 0;
  for (int stage = 0; stage < layout.pp; ++stage) {
    const MemoryBreakdown m = memory_of_stage(model, layout, o, stage);
    most_states = std::max(most_states, m.parameters + m.gradients + m.optimizer_states);
  }
  const double lower = 2.0 * static_cast<double>(model.num_params() + model.num_mtp_params()) / (16 * 64);
  const double upper = 80 * kGB;
  std::printf("model states on the busiest stage: %.2f GB, expected within [%.2f GB, %.2f GB]\n", most_states / kGB,
              lower / kGB, upper / kGB);
  EXPECT_GE(most_states, lower);
  EXPECT_LE(most_states, upper);

  for (const Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    o.recompute = r;
    print_breakdown(std::string("deepseek-v3 ") + format_layout(layout) + ", recompute " + recompute_name(r),
                    memory_per_gpu(model, layout, o));
  }
  // With full recomputation the step fits an 80 GB GPU with the default reserve; the report's own setup recomputes
  // less and stores some activations in FP8, which this model does not describe.
  o.recompute = Recompute::kFull;
  EXPECT_TRUE(fits(model, layout, o, 80 * kGB));
  std::printf("reserve %.1f GiB (placeholder)\n", o.reserve_bytes / kGiB);
}

TEST(MemoryValidation, DeepSeekV3DecodeKvCacheIsTheLatent) {
  // MLA caches kv_lora + rope = 576 elements a token a layer: 61 x 576 x 2 bytes = 70,272 bytes a token in BF16
  // (DeepSeek-V2 sec. 2.1.4 compares this with MHA's 2 n_h d_h per layer).
  const MoeModel model = load_model("deepseek-v3");
  MemoryOptions o;
  o.mode = StepMode::kDecode;
  o.seq_length = 1;
  o.context_length = 4096;
  o.inference_batch = 1;
  const MemoryBreakdown m = memory_per_gpu(model, parse_layout("dp=1", 1), o);
  expect_closed_form("kv cache: 61 layers x 576 x 2 B x 4096 tokens", 61.0 * 576 * 2 * 4096, m.kv_cache);
}

}  // namespace
}  // namespace moesim::workloads
