#include "workloads/memory.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace moesim::workloads {
namespace {

using test::error_of;

// A 4-layer dense GPT as Korthikanti et al. describe it (MHA, non-gated FFN of 4h, untied head), so its
// activations are exactly s b h (34 + 5 a s / h) per layer: h 64, 4 heads of 16, f 256, vocabulary 1000 (padded to
// 1024). num_experts 1 with first_k_dense = num_layers makes every layer dense.
MoeModel tiny_gpt() {
  MoeModel m;
  m.source = m.name = "tiny-gpt";
  m.hidden_size = 64;
  m.num_experts = 1;
  m.num_topk = 1;
  m.moe_intermediate_size = m.shared_expert_intermediate_size = 256;
  m.num_layers = 4;
  m.first_k_dense = 4;
  m.intermediate_size = 256;
  m.gated_ffn = false;
  m.attention = AttentionKind::kMha;
  m.num_attention_heads = m.num_key_value_heads = 4;
  m.head_dim = 16;
  m.vocab_size = 1000;
  return m;
}

// A 2-layer MoE model: GQA (4 heads, 2 KV heads of 16), SwiGLU experts, 8 experts of 32 channels, top-2, one
// shared expert of 64, vocabulary 512, untied.
MoeModel tiny_moe() {
  MoeModel m;
  m.source = m.name = "tiny-moe";
  m.hidden_size = 64;
  m.num_experts = 8;
  m.num_topk = 2;
  m.num_shared_experts = 1;
  m.moe_intermediate_size = 32;
  m.shared_expert_intermediate_size = 64;
  m.num_layers = 2;
  m.attention = AttentionKind::kGqa;
  m.num_attention_heads = 4;
  m.num_key_value_heads = 2;
  m.head_dim = 16;
  m.vocab_size = 512;
  return m;
}

// tiny_moe with MLA: 4 heads, q_lora 32, kv_lora 16, nope 16, rope 8, v 16. KV cache: 16 + 8 = 24 per token.
MoeModel tiny_mla() {
  MoeModel m = tiny_moe();
  m.name = "tiny-mla";
  m.attention = AttentionKind::kMla;
  m.num_key_value_heads = 4;
  m.head_dim = 0;
  m.q_lora_rank = 32;
  m.kv_lora_rank = 16;
  m.qk_nope_head_dim = 16;
  m.qk_rope_head_dim = 8;
  m.v_head_dim = 16;
  return m;
}

MemoryOptions train_options(int zero_stage, Recompute recompute, std::int64_t seq_length) {
  MemoryOptions o;
  o.zero_stage = zero_stage;
  o.recompute = recompute;
  o.seq_length = seq_length;
  return o;
}

TEST(MemoryNames, ParseAndPrint) {
  EXPECT_EQ(parse_recompute("selective"), Recompute::kSelective);
  EXPECT_STREQ(recompute_name(Recompute::kFull), "full");
  EXPECT_EQ(parse_step_mode("decode"), StepMode::kDecode);
  EXPECT_STREQ(step_mode_name(StepMode::kPrefill), "prefill");
  EXPECT_EQ(error_of([] { parse_recompute("some"); }), "recompute: expected none, selective or full, got 'some'");
  EXPECT_EQ(error_of([] { parse_step_mode("serve"); }), "mode: expected train, prefill or decode, got 'serve'");
}

TEST(MemoryOptionsCheck, NamesTheKey) {
  MemoryOptions o;
  o.zero_stage = 4;
  EXPECT_EQ(error_of([&] { validate_memory_options(o); }), "memory: zero_stage: must be 0, 1, 2 or 3, got 4");
  o = MemoryOptions{};
  o.moe_load_imbalance = 0.5;
  EXPECT_EQ(error_of([&] { validate_memory_options(o); }),
            "memory: moe_load_imbalance: must be finite and >= 1, got 0.5");
  o = MemoryOptions{};
  o.seq_length = 0;
  EXPECT_EQ(error_of([&] { validate_memory_options(o); }), "memory: seq_length: must be >= 1, got 0");
  o = MemoryOptions{};
  o.inference_batch = 0;
  EXPECT_EQ(error_of([&] { validate_memory_options(o); }), "memory: inference_batch: must be >= 1, got 0");
  // An invalid layout is refused with validate_layout's message.
  EXPECT_EQ(error_of([] { memory_per_gpu(tiny_gpt(), parse_layout("pp=5", 5), MemoryOptions{}); }).rfind("layout ", 0),
            0u);
}

// Parameters of tiny_gpt on one GPU's worth (tp = pp = 1):
//   attention h (a + 2 g) d + a d h = 64 x 12 x 16 + 4 x 16 x 64 = 16,384; FFN 2 x 64 x 256 = 32,768; norms 128
//   layer 49,280; 4 layers 197,120; embedding and head 1024 x 64 = 65,536 each (1000 padded to 1024); final norm 64
//   P = 197,120 + 131,072 + 64 = 328,256.
constexpr double kTinyGptParams = 328256;

TEST(MemoryTraining, TinyGptEachZeroStage) {
  const MoeModel model = tiny_gpt();
  const ParallelLayout layout = parse_layout("dp=4,mbs=1,gbs=4", 4);  // one micro-batch
  const double p = kTinyGptParams;
  // ZeRO 0: bf16 params 2P, fp32 grads 4P, Adam fp32 master + m + v 12P.
  MemoryBreakdown m = memory_per_gpu(model, layout, train_options(0, Recompute::kNone, 32));
  EXPECT_DOUBLE_EQ(m.parameters, 2 * p);
  EXPECT_DOUBLE_EQ(m.gradients, 4 * p);
  EXPECT_DOUBLE_EQ(m.optimizer_states, 12 * p);
  // ZeRO 1: optimizer states over dp 4.
  m = memory_per_gpu(model, layout, train_options(1, Recompute::kNone, 32));
  EXPECT_DOUBLE_EQ(m.gradients, 4 * p);
  EXPECT_DOUBLE_EQ(m.optimizer_states, 12 * p / 4);
  // ZeRO 2: gradients too.
  m = memory_per_gpu(model, layout, train_options(2, Recompute::kNone, 32));
  EXPECT_DOUBLE_EQ(m.parameters, 2 * p);
  EXPECT_DOUBLE_EQ(m.gradients, 4 * p / 4);
  EXPECT_DOUBLE_EQ(m.optimizer_states, 12 * p / 4);
  // ZeRO 3: parameters too, plus the largest module gathered whole (the 65,536-parameter embedding or head).
  m = memory_per_gpu(model, layout, train_options(3, Recompute::kNone, 32));
  EXPECT_DOUBLE_EQ(m.parameters, 2 * p / 4 + 2 * 65536);
  EXPECT_DOUBLE_EQ(m.gradients, 4 * p / 4);
  // BF16 gradients and no master copy: 2P of gradients, 8P of Adam states.
  MemoryOptions lean = train_options(0, Recompute::kNone, 32);
  lean.grad_dtype = DType::kBf16;
  lean.master_weights = false;
  m = memory_per_gpu(model, layout, lean);
  EXPECT_DOUBLE_EQ(m.gradients, 2 * p);
  EXPECT_DOUBLE_EQ(m.optimizer_states, 8 * p);
  EXPECT_DOUBLE_EQ(m.kv_cache, 0);
  EXPECT_DOUBLE_EQ(m.a2a_buffers, 0);  // no MoE layer, ep 1
}

TEST(MemoryTraining, TinyGptEachRecomputeSetting) {
  const MoeModel model = tiny_gpt();
  const ParallelLayout layout = parse_layout("dp=4,mbs=1,gbs=4", 4);
  // s 32, b 1, h 64, a 4: a layer keeps s b h (34 + 5 a s / h) = 2048 x (34 + 10) = 90,112 bytes. The one stage adds
  // the embedding's dropout mask s b h = 2,048 and the output layer s b (4h + 4 v_pad) = 32 x (256 + 4096) =
  // 139,264. One micro-batch in flight.
  const double extras = 2048 + 139264;
  EXPECT_DOUBLE_EQ(layer_activation_bytes(model, layout, train_options(0, Recompute::kNone, 32), false), 90112);
  MemoryBreakdown m = memory_per_gpu(model, layout, train_options(0, Recompute::kNone, 32));
  EXPECT_DOUBLE_EQ(m.in_flight_microbatches, 1);
  EXPECT_DOUBLE_EQ(m.activations, 4 * 90112 + extras);
  // Selective drops 5 a s / h: 2048 x 34 = 69,632 a layer.
  m = memory_per_gpu(model, layout, train_options(0, Recompute::kSelective, 32));
  EXPECT_DOUBLE_EQ(m.activations, 4 * 69632 + extras);
  // Full keeps each layer's input, 2 s b h = 4,096.
  m = memory_per_gpu(model, layout, train_options(0, Recompute::kFull, 32));
  EXPECT_DOUBLE_EQ(m.activations, 4 * 4096 + extras);
  EXPECT_DOUBLE_EQ(m.total, m.parameters + m.gradients + m.optimizer_states + m.activations);
}

TEST(MemoryTraining, TinyGptPipelineStagesAndInFlightMicrobatches) {
  const MoeModel model = tiny_gpt();
  // pp 2, dp 2, gbs 8: 4 micro-batches. Stage 0 (layers 0-1, embedding) keeps min(2, 4) = 2 in flight, stage 1
  // (layers 2-3, head) min(1, 4) = 1.
  const ParallelLayout layout = parse_layout("dp=2,pp=2,mbs=1,gbs=8", 4);
  const MemoryOptions o = train_options(0, Recompute::kNone, 32);
  const MemoryBreakdown first = memory_of_stage(model, layout, o, 0);
  const MemoryBreakdown last = memory_of_stage(model, layout, o, 1);
  EXPECT_DOUBLE_EQ(first.in_flight_microbatches, 2);
  EXPECT_DOUBLE_EQ(last.in_flight_microbatches, 1);
  EXPECT_DOUBLE_EQ(first.activations, 2 * (2 * 90112 + 2048));   // 364,544
  EXPECT_DOUBLE_EQ(last.activations, 1 * (2 * 90112 + 139264));  // 319,488
  // Stage 0: 2 layers + embedding = 98,560 + 65,536 = 164,096; stage 1: 2 layers + head + final norm = 164,160.
  EXPECT_DOUBLE_EQ(first.parameters, 2 * 164096);
  EXPECT_DOUBLE_EQ(last.parameters, 2 * 164160);
  // Totals at 18 bytes a parameter: 3,318,272 against 3,274,368: the first stage is the busiest.
  EXPECT_DOUBLE_EQ(first.total, 18 * 164096 + 364544);
  const MemoryBreakdown busiest = memory_per_gpu(model, layout, o);
  EXPECT_EQ(busiest.pp_idx, 0);
  EXPECT_DOUBLE_EQ(busiest.total, first.total);
  // A GPipe-like schedule keeps every micro-batch: the override applies to every stage.
  MemoryOptions gpipe = o;
  gpipe.in_flight_microbatches = 4;
  EXPECT_DOUBLE_EQ(memory_of_stage(model, layout, gpipe, 1).activations, 4 * (2 * 90112 + 139264));
}

TEST(MemoryTraining, InterleavedInFlightFollowsKorthikanti) {
  // pp 2, vpp 2, 4 micro-batches: rank 0 warms up 2 (pp - 1) + (vpp - 1) pp = 4 chunks, 5 in flight at its peak,
  // each half of its layers: 2.5 micro-batches' worth = pp (1 + (pp - 1) / (pp vpp)) = 2 x 1.25. Rank 1: 3 chunks.
  const ParallelLayout layout = parse_layout("dp=2,pp=2,vpp=2,mbs=1,gbs=8", 4);
  EXPECT_DOUBLE_EQ(in_flight_microbatches(layout, 0), 2.5);
  EXPECT_DOUBLE_EQ(in_flight_microbatches(layout, 1), 1.5);
  // Without interleaving, min(pp - r, m); with fewer micro-batches than stages, all of them.
  EXPECT_DOUBLE_EQ(in_flight_microbatches(parse_layout("dp=1,pp=4,gbs=2", 4), 0), 2);
  EXPECT_DOUBLE_EQ(in_flight_microbatches(parse_layout("dp=1,pp=4,gbs=8", 4), 1), 3);
}

// tiny_moe on 8 GPUs, dp 4 x tp 2, ep 4 (edp = 8 / 4 = 2), s 16, one micro-batch of 1. Per GPU:
//   attention q 64 x 4 x 16 / 2 + k, v 64 x 1 x 32 (one KV head a rank) + o 4 x 16 x 64 / 2 = 6,144; norms 128;
//   router 64 x 8 = 512 (whole); shared expert 3 x 64 x 64 / 2 = 6,144: dense 12,928 a layer;
//   routed experts 8 / 4 = 2 of 3 x 64 x 32 = 6,144: expert 12,288 a layer.
//   Embedding and head 512 x 64 / 2 = 16,384 each (512 is a multiple of 128 x 2), final norm 64.
//   P_dense = 2 x 12,928 + 32,768 + 64 = 58,688; P_expert = 24,576.
constexpr double kTinyMoeDense = 58688;
constexpr double kTinyMoeExpert = 24576;

TEST(MemoryTraining, TinyMoeEachZeroStageShardsExpertsOverEdp) {
  const MoeModel model = tiny_moe();
  const ParallelLayout layout = parse_layout("dp=4,tp=2,ep=4,mbs=1,gbs=4", 8);
  const double all = kTinyMoeDense + kTinyMoeExpert;
  const double sharded = kTinyMoeDense / 4 + kTinyMoeExpert / 2;  // dense over dp 4, experts over edp 2: 26,960
  MemoryBreakdown m = memory_per_gpu(model, layout, train_options(0, Recompute::kNone, 16));
  EXPECT_DOUBLE_EQ(m.parameters, 2 * all);
  EXPECT_DOUBLE_EQ(m.gradients, 4 * all);
  EXPECT_DOUBLE_EQ(m.optimizer_states, 12 * all);
  m = memory_per_gpu(model, layout, train_options(1, Recompute::kNone, 16));
  EXPECT_DOUBLE_EQ(m.optimizer_states, 12 * sharded);
  EXPECT_DOUBLE_EQ(m.gradients, 4 * all);
  m = memory_per_gpu(model, layout, train_options(2, Recompute::kNone, 16));
  EXPECT_DOUBLE_EQ(m.gradients, 4 * sharded);
  EXPECT_DOUBLE_EQ(m.parameters, 2 * all);
  // ZeRO 3: plus one MoE layer gathered whole, 12,928 + 12,288 = 25,216 parameters.
  m = memory_per_gpu(model, layout, train_options(3, Recompute::kNone, 16));
  EXPECT_DOUBLE_EQ(m.parameters, 2 * sharded + 2 * 25216);
}

TEST(MemoryTraining, TinyMoeEachRecomputeSettingAndA2aBuffers) {
  const MoeModel model = tiny_moe();
  const ParallelLayout layout = parse_layout("dp=4,tp=2,ep=4,mbs=1,gbs=4", 8);
  // Bytes per token of the micro-batch, t = t_sp = 2:
  //   attention: norm and projection inputs 2 x 2 x 64 / 2 = 128, dropout mask 64 / 2 = 32, output projection
  //     input 2 x 4 x 16 / 2 = 64, Q 2 x 4 x 16 / 2 = 64, K and V 2 x 1 x 16 = 32 each (one KV head a rank): 352;
  //     scores 5 x 4 x 16 / 2 = 160;
  //   MoE FFN: norm input and output 128, mask 32, router probabilities 4 x 8 / 2 = 16, shared expert
  //     3 x 2 x 64 / 2 = 192, routed k (4h + 6 f) / 2 = 2 x (256 + 192) / 2 = 448: 816.
  //   A layer: 16 tokens x (352 + 160 + 816) = 21,248. Two layers 42,496; embedding mask 16 x 32 = 512; output layer
  //   16 x (2 x 2 x 64 / 2 + 4 x 512 / 2) = 18,432.
  EXPECT_DOUBLE_EQ(layer_activation_bytes(model, layout, train_options(0, Recompute::kNone, 16), true), 21248);
  MemoryBreakdown m = memory_per_gpu(model, layout, train_options(0, Recompute::kNone, 16));
  EXPECT_DOUBLE_EQ(m.activations, 42496 + 512 + 18432);
  // Selective: without the scores, 16 x 160 less a layer.
  m = memory_per_gpu(model, layout, train_options(0, Recompute::kSelective, 16));
  EXPECT_DOUBLE_EQ(m.activations, 42496 - 2 * 16 * 160 + 512 + 18432);
  // Full: each layer's input, 16 x 2 x 64 / 2 = 1,024.
  m = memory_per_gpu(model, layout, train_options(0, Recompute::kFull, 16));
  EXPECT_DOUBLE_EQ(m.activations, 2 * 1024 + 512 + 18432);
  // All-to-All: T_r = 16 / 2 = 8 tokens, k 2: 16 copies; x (1 + lambda 1) x (128 + 128) bf16 bytes = 8,192.
  EXPECT_DOUBLE_EQ(m.a2a_buffers, 8192);
  // A busiest rank receiving 1.5x the mean: routed activations and receive buffers grow by half.
  MemoryOptions skewed = train_options(0, Recompute::kNone, 16);
  skewed.moe_load_imbalance = 1.5;
  m = memory_per_gpu(model, layout, skewed);
  EXPECT_DOUBLE_EQ(m.a2a_buffers, 16 * 2.5 * 256);
  EXPECT_DOUBLE_EQ(m.activations, 42496 + 2 * 16 * 224 + 512 + 18432);  // routed 448 -> 672 a token
}

TEST(MemoryInference, KvCacheMhaSplitsOverTpMlaDoesNot) {
  // Decode, 2 sequences of 100 keys. tiny_gpt (MHA): 2 x 4 x 16 = 128 elements a token a layer, bf16:
  // 4 layers x 2 x 100 x 2 x 128 = 204,800; tp 2 holds half the heads.
  MemoryOptions decode;
  decode.mode = StepMode::kDecode;
  decode.seq_length = 32;
  decode.inference_batch = 2;
  decode.context_length = 100;
  MemoryBreakdown m = memory_per_gpu(tiny_gpt(), parse_layout("dp=4", 4), decode);
  EXPECT_DOUBLE_EQ(m.kv_cache, 204800);
  EXPECT_DOUBLE_EQ(m.gradients, 0);
  EXPECT_DOUBLE_EQ(m.optimizer_states, 0);
  EXPECT_DOUBLE_EQ(m.parameters, 2 * kTinyGptParams);
  EXPECT_DOUBLE_EQ(memory_per_gpu(tiny_gpt(), parse_layout("dp=2,tp=2", 4), decode).kv_cache, 102400);
  // tiny_moe (GQA, 2 KV heads): 2 x 2 x 16 = 64 elements; at tp 2 one head a rank (32), at tp 4 still one (replicated).
  EXPECT_DOUBLE_EQ(memory_per_gpu(tiny_moe(), parse_layout("dp=1,tp=2,ep=2", 2), decode).kv_cache,
                   2.0 * 2 * 100 * 2 * 32);
  EXPECT_DOUBLE_EQ(memory_per_gpu(tiny_moe(), parse_layout("dp=1,tp=4,ep=2", 4), decode).kv_cache,
                   2.0 * 2 * 100 * 2 * 32);
  // tiny_mla caches the latent and the RoPE key, 16 + 8 = 24 elements, whole on every TP rank:
  // 2 layers x 2 x 100 x 2 x 24 = 19,200 at tp 1, 2 and 4.
  for (const char* text : {"dp=1,tp=1", "dp=1,tp=2", "dp=1,tp=4"}) {
    EXPECT_DOUBLE_EQ(memory_per_gpu(tiny_mla(), parse_layout(text, 0), decode).kv_cache, 19200) << text;
  }
  // Prefill writes the prompt's keys: s = 32.
  MemoryOptions prefill = decode;
  prefill.mode = StepMode::kPrefill;
  EXPECT_DOUBLE_EQ(memory_per_gpu(tiny_mla(), parse_layout("dp=1", 1), prefill).kv_cache, 2.0 * 2 * 32 * 2 * 24);
}

TEST(MemoryInference, ActivationsAreOneLayersWorkingSet) {
  // Prefill of 2 sequences of 32 on tiny_gpt: one layer at 64 tokens, 64 x 2816 bytes (13h + 5 a s + 21h a token),
  // plus the output layer 64 x (4h + 4 v_pad) = 64 x 4352.
  MemoryOptions prefill;
  prefill.mode = StepMode::kPrefill;
  prefill.seq_length = 32;
  prefill.inference_batch = 2;
  const MemoryBreakdown m = memory_per_gpu(tiny_gpt(), parse_layout("dp=1", 1), prefill);
  EXPECT_DOUBLE_EQ(m.activations, 64.0 * 2816 + 64.0 * 4352);
}

TEST(MemoryParameters, WholeModelOnOneGpuMatchesTheParameterCount) {
  // On one GPU the stage holds everything: the model's own count (both vocabularies are multiples of 128), and in
  // training the MTP module too.
  for (const char* name : {"mixtral-8x7b", "deepseek-v3"}) {
    const MoeModel model = load_model(name);
    MemoryOptions infer;
    infer.mode = StepMode::kDecode;
    EXPECT_DOUBLE_EQ(memory_per_gpu(model, parse_layout("dp=1", 1), infer).parameters, 2.0 * model.num_params())
        << name;
    MemoryOptions train = train_options(0, Recompute::kFull, 16);
    EXPECT_DOUBLE_EQ(memory_per_gpu(model, parse_layout("dp=1", 1), train).parameters,
                     2.0 * (model.num_params() + model.num_mtp_params()))
        << name;
  }
}

// The largest parameter memory of any stage: what "per GPU" means for a monotonicity check.
double max_stage_parameters(const MoeModel& model, const ParallelLayout& layout) {
  const MemoryOptions o = train_options(1, Recompute::kFull, 16);
  double most = 0;
  for (int stage = 0; stage < layout.pp; ++stage)
    most = std::max(most, memory_of_stage(model, layout, o, stage).parameters);
  return most;
}

TEST(MemoryParameters, MoreTpPpOrEpNeverRaisesParametersPerGpu) {
  // Each step doubles one of tp, pp, ep (dp fixed at 32, the GPU count follows); whenever both layouts are valid,
  // the parameters on the busiest stage do not grow. ZeRO 1 leaves parameters whole, so dp does not enter.
  struct Case {
    const char* model;
    std::vector<int> pps;
  };
  for (const Case& c : {Case{"mixtral-8x7b", {1, 2, 4, 8}}, Case{"deepseek-v3", {1, 2, 4, 8, 16}},
                        Case{"qwen3-30b-a3b", {1, 2, 4, 8}}}) {
    const MoeModel model = load_model(c.model);
    int checked = 0;
    for (const int tp : {1, 2, 4, 8}) {
      for (const int pp : c.pps) {
        for (const int ep : {1, 2, 4, 8, 16}) {
          const ParallelLayout base{32, tp, pp, ep, 1, 1, 1, 32};
          if (!layout_problems(base, model, base.num_gpus()).empty()) continue;
          const double before = max_stage_parameters(model, base);
          for (ParallelLayout more :
               {ParallelLayout{32, tp * 2, pp, ep, 1, 1, 1, 32}, ParallelLayout{32, tp, pp * 2, ep, 1, 1, 1, 32},
                ParallelLayout{32, tp, pp, ep * 2, 1, 1, 1, 32}}) {
            if (!layout_problems(more, model, more.num_gpus()).empty()) continue;
            EXPECT_LE(max_stage_parameters(model, more), before)
                << c.model << ": " << format_layout(base) << " -> " << format_layout(more);
            ++checked;
          }
        }
      }
    }
    EXPECT_GT(checked, 20) << c.model;
  }
}

TEST(MemoryFits, TotalPlusReserveAgainstCapacity) {
  const MoeModel model = tiny_gpt();
  const ParallelLayout layout = parse_layout("dp=4,mbs=1,gbs=4", 4);
  MemoryOptions o = train_options(0, Recompute::kNone, 32);
  o.reserve_bytes = 1000;
  const double total = memory_per_gpu(model, layout, o).total;
  EXPECT_TRUE(fits(model, layout, o, total + 1000));
  EXPECT_FALSE(fits(model, layout, o, total + 999));
  EXPECT_DOUBLE_EQ(MemoryOptions{}.reserve_bytes, kDefaultMemoryReserveBytes);
}

}  // namespace
}  // namespace moesim::workloads
