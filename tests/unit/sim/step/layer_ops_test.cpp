#include "sim/step/layer_ops.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim/compute/cost_profile.hpp"
#include "sim/compute/roofline.hpp"
#include "tests/test_support.hpp"
#include "workloads/model.hpp"

namespace moesim::sim::step {
namespace {

using compute::OpKind;
using compute::OpWork;
using compute::Precision;
using test::contains;
using test::error_of;
using workloads::AttentionKind;
using workloads::MoeModel;

// A small GQA MoE model whose every op can be worked out by hand: h 1024, 16 heads of 64 with 4 KV heads, dense FFN
// 4096 (gated), 8 routed experts of 512, top-2, one shared expert of 1024, vocabulary 32000.
MoeModel small_gqa() {
  MoeModel m;
  m.source = "test";
  m.name = "small-gqa";
  m.hidden_size = 1024;
  m.num_experts = 8;
  m.num_topk = 2;
  m.num_shared_experts = 1;
  m.moe_intermediate_size = 512;
  m.shared_expert_intermediate_size = 1024;
  m.num_layers = 4;
  m.first_k_dense = 1;
  m.intermediate_size = 4096;
  m.gated_ffn = true;
  m.attention = AttentionKind::kGqa;
  m.num_attention_heads = 16;
  m.num_key_value_heads = 4;
  m.head_dim = 64;
  m.vocab_size = 32000;
  return m;
}

// The same with 16 KV heads: MHA.
MoeModel small_mha() {
  MoeModel m = small_gqa();
  m.name = "small-mha";
  m.attention = AttentionKind::kMha;
  m.num_key_value_heads = 16;
  return m;
}

// 2 sequences of 1024 tokens: T = 2048.
LayerShape small_shape(int tp) {
  LayerShape shape;
  shape.sequences = 2;
  shape.seq_len = 1024;
  shape.tp = tp;
  return shape;
}

// Only the grouped GEMM's token tile matters to op_work: 128, as DeepGEMM's and the built-in profile's.
const compute::DeviceProfile& tile128_device() {
  static const compute::DeviceProfile device = [] {
    compute::DeviceProfile d;
    d.name = "tile-128";
    d.op(OpKind::kGroupedGemm).token_tile = 128;
    return d;
  }();
  return device;
}

OpWork work(const LayerOp& op) {
  return compute::op_work(tile128_device(), op.op);
}

std::vector<std::string> names(const std::vector<LayerOp>& ops) {
  std::vector<std::string> out;
  out.reserve(ops.size());
  for (const LayerOp& op : ops) out.push_back(op.name);
  return out;
}

const LayerOp& find(const std::vector<LayerOp>& ops, const std::string& name) {
  for (const LayerOp& op : ops) {
    if (op.name == name) return op;
  }
  throw std::runtime_error("no op named " + name);
}

double sum_flops(const std::vector<LayerOp>& ops, bool include_attention_core) {
  double total = 0.0;
  for (const LayerOp& op : ops) {
    if (op.op.kind == OpKind::kAttention && !include_attention_core) continue;
    total += work(op).flops;
  }
  return total;
}

void append(std::vector<LayerOp>& to, const std::vector<LayerOp>& ops) {
  to.insert(to.end(), ops.begin(), ops.end());
}

// The header's backward rules, checked op by op: the backward walks the forward in reverse; a GEMM (dense, grouped,
// the router's) becomes a dgrad and a wgrad of the same kind and precision with its forward FLOPs each (grouped ones
// padded alike); the attention core 2.5 x its FLOPs; every other kernel the same kind with twice the bytes.
void expect_backward_mirrors_forward(const std::vector<LayerOp>& forward, const std::vector<LayerOp>& backward) {
  std::size_t i = 0;
  for (auto it = forward.rbegin(); it != forward.rend(); ++it) {
    const LayerOp& f = *it;
    const OpWork fw = work(f);
    ASSERT_LT(i, backward.size()) << f.name;
    const LayerOp& b = backward[i];
    EXPECT_EQ(b.op.kind, f.op.kind) << b.name;
    EXPECT_EQ(b.op.precision, f.op.precision) << b.name;
    switch (f.op.kind) {
      case OpKind::kDenseGemm:
      case OpKind::kGroupedGemm:
      case OpKind::kRouter: {
        ASSERT_LT(i + 1, backward.size()) << f.name;
        const LayerOp& w = backward[i + 1];
        EXPECT_EQ(b.name, f.name + " dgrad");
        EXPECT_FALSE(b.is_weight_gradient) << b.name;
        EXPECT_EQ(work(b).flops, fw.flops) << b.name;
        EXPECT_EQ(w.name, f.name + " wgrad");
        EXPECT_TRUE(w.is_weight_gradient) << w.name;
        EXPECT_EQ(w.op.kind, f.op.kind) << w.name;
        EXPECT_EQ(work(w).flops, fw.flops) << w.name;
        i += 2;
        break;
      }
      case OpKind::kAttention:
        EXPECT_EQ(b.name, f.name + " backward");
        EXPECT_DOUBLE_EQ(b.op.flops, 2.5 * fw.flops) << b.name;
        i += 1;
        break;
      default:
        EXPECT_EQ(b.name, f.name + " backward");
        EXPECT_EQ(b.op.flops, 0.0) << b.name;
        EXPECT_DOUBLE_EQ(b.op.bytes, 2.0 * fw.bytes) << b.name;
        i += 1;
        break;
    }
  }
  EXPECT_EQ(i, backward.size());
}

TEST(LayerOps, GqaAttentionTp1ByHand) {
  // T = 2 x 1024 = 2048 tokens, h 1024, 16 heads of d 64, 4 KV heads, BF16 (2 bytes everywhere).
  const auto ops = attention_forward(small_gqa(), small_shape(1));
  EXPECT_EQ(names(ops),
            (std::vector<std::string>{"input norm", "qkv", "attention core", "o proj", "attention residual add"}));

  // input norm: 2 (2 T h + h) = 2 (2 x 2048 x 1024 + 1024) = 8,390,656 bytes, no FLOPs.
  EXPECT_EQ(ops[0].op.kind, OpKind::kElementwise);
  EXPECT_EQ(ops[0].op.flops, 0.0);
  EXPECT_EQ(ops[0].op.bytes, 8'390'656.0);

  // qkv: n = (16 + 2 x 4) x 64 = 1536. FLOPs 2 T n h = 2 x 2048 x 1536 x 1024 = 6,442,450,944; bytes
  // (T h + h n) 2 + T n 2 = (2,097,152 + 1,572,864) x 2 + 3,145,728 x 2 = 13,631,488.
  EXPECT_EQ(ops[1].op.kind, OpKind::kDenseGemm);
  EXPECT_EQ(ops[1].op.flops, 6'442'450'944.0);
  EXPECT_EQ(ops[1].op.bytes, 13'631'488.0);

  // core, causal: 2 b s^2 H (d_qk + d_v) / 2 = 2 x 1024^2 x 16 x 128 = 4,294,967,296. Bytes: Q + K + V =
  // 2 x 2048 x (16 x 64 + 4 x 128) = 6,291,456, O = 2 x 2048 x 1024 = 4,194,304, fp32 LSE 4 x 2048 x 16 = 131,072:
  // 10,616,832.
  EXPECT_EQ(ops[2].op.kind, OpKind::kAttention);
  EXPECT_EQ(ops[2].op.flops, 4'294'967'296.0);
  EXPECT_EQ(ops[2].op.bytes, 10'616'832.0);

  // o proj: 2 T h (H d) = 2 x 2048 x 1024 x 1024 = 4,294,967,296; bytes (2048 x 1024 + 1024 x 1024) x 2 +
  // 2048 x 1024 x 2 = 10,485,760.
  EXPECT_EQ(ops[3].op.kind, OpKind::kDenseGemm);
  EXPECT_EQ(ops[3].op.flops, 4'294'967'296.0);
  EXPECT_EQ(ops[3].op.bytes, 10'485'760.0);

  // residual add: read 2, write 1: 3 x 2048 x 1024 x 2 = 12,582,912.
  EXPECT_EQ(ops[4].op.bytes, 12'582'912.0);

  const auto backward = attention_backward(small_gqa(), small_shape(1));
  EXPECT_EQ(names(backward),
            (std::vector<std::string>{"attention residual add backward", "o proj dgrad", "o proj wgrad",
                                      "attention core backward", "qkv dgrad", "qkv wgrad", "input norm backward"}));
  // In BF16 dgrad (reads dy and W, writes dx) and wgrad (reads x and dy, writes dW) move the forward's three tensors.
  EXPECT_EQ(find(backward, "qkv dgrad").op.bytes, 13'631'488.0);
  EXPECT_EQ(find(backward, "qkv wgrad").op.bytes, 13'631'488.0);
  // Core backward: reads Q, K, V, O, dO, LSE and writes dQ, dK, dV: 2 x 6,291,456 + 2 x 4,194,304 + 131,072.
  EXPECT_EQ(find(backward, "attention core backward").op.flops, 2.5 * 4'294'967'296.0);
  EXPECT_EQ(find(backward, "attention core backward").op.bytes, 21'102'592.0);
}

TEST(LayerOps, GqaAttentionTp2ByHand) {
  // tp 2: 8 query heads and 2 KV heads per GPU; the GEMMs and the core see all T = 2048 tokens, the norm and the
  // residual add the sequence-parallel 1024.
  const auto ops = attention_forward(small_gqa(), small_shape(2));
  // input norm: 2 (2 x 1024 x 1024 + 1024) = 4,196,352.
  EXPECT_EQ(ops[0].op.bytes, 4'196'352.0);
  // qkv: n = (8 + 2 x 2) x 64 = 768: 2 x 2048 x 768 x 1024 = 3,221,225,472; bytes (2,097,152 + 786,432) x 2 +
  // 2048 x 768 x 2 = 8,912,896.
  EXPECT_EQ(ops[1].op.flops, 3'221'225'472.0);
  EXPECT_EQ(ops[1].op.bytes, 8'912'896.0);
  // core: 2 x 1024^2 x 8 x 128 = 2,147,483,648; bytes 2 x 2048 x (8 x 64 + 2 x 128) + 2 x 2048 x 512 +
  // 4 x 2048 x 8 = 3,145,728 + 2,097,152 + 65,536 = 5,308,416.
  EXPECT_EQ(ops[2].op.flops, 2'147'483'648.0);
  EXPECT_EQ(ops[2].op.bytes, 5'308'416.0);
  // o proj: k = 8 x 64 = 512: 2 x 2048 x 1024 x 512 = 2,147,483,648; bytes (2048 x 512 + 512 x 1024) x 2 +
  // 2048 x 1024 x 2 = 7,340,032.
  EXPECT_EQ(ops[3].op.flops, 2'147'483'648.0);
  EXPECT_EQ(ops[3].op.bytes, 7'340'032.0);
  // residual add on 1024 tokens: 3 x 1024 x 1024 x 2 = 6,291,456.
  EXPECT_EQ(ops[4].op.bytes, 6'291'456.0);
}

TEST(LayerOps, KvHeadsAreReplicatedWhenTpIsAMultipleOfThem) {
  // tp 8 > 4 KV heads: 2 query heads per GPU, both in one KV group, so each GPU holds one KV head:
  // qkv n = (2 + 2 x 1) x 64 = 256.
  LayerShape shape = small_shape(8);
  const auto ops = attention_forward(small_gqa(), shape);
  EXPECT_EQ(find(ops, "qkv").op.flops, 2.0 * 2048 * 256 * 1024);
}

TEST(LayerOps, DenseFfnByHand) {
  // tp 1: f = 4096, gated.
  auto ops = dense_ffn_forward(small_gqa(), small_shape(1));
  EXPECT_EQ(names(ops), (std::vector<std::string>{"post-attention norm", "mlp up+gate", "mlp activation", "mlp down",
                                                  "mlp residual add"}));
  EXPECT_EQ(ops[0].op.bytes, 8'390'656.0);  // as the input norm
  // up+gate: n = 2f = 8192: 2 x 2048 x 8192 x 1024 = 34,359,738,368; bytes (2048 x 1024 + 1024 x 8192) x 2 +
  // 2048 x 8192 x 2 = 20,971,520 + 33,554,432 = 54,525,952.
  EXPECT_EQ(ops[1].op.flops, 34'359'738'368.0);
  EXPECT_EQ(ops[1].op.bytes, 54'525'952.0);
  // SwiGLU reads gate and up, writes one: 3 x 2048 x 4096 x 2 = 50,331,648.
  EXPECT_EQ(ops[2].op.kind, OpKind::kElementwise);
  EXPECT_EQ(ops[2].op.bytes, 50'331'648.0);
  // down: 2 x 2048 x 1024 x 4096 = 17,179,869,184; bytes (2048 x 4096 + 4096 x 1024) x 2 + 2048 x 1024 x 2 =
  // 29,360,128.
  EXPECT_EQ(ops[3].op.flops, 17'179'869'184.0);
  EXPECT_EQ(ops[3].op.bytes, 29'360'128.0);
  EXPECT_EQ(ops[4].op.bytes, 12'582'912.0);

  // tp 2: f / t = 2048.
  ops = dense_ffn_forward(small_gqa(), small_shape(2));
  EXPECT_EQ(ops[0].op.bytes, 4'196'352.0);
  // up+gate n = 4096: 2 x 2048 x 4096 x 1024 = 17,179,869,184; bytes (2,097,152 + 4,194,304) x 2 +
  // 2048 x 4096 x 2 = 29,360,128.
  EXPECT_EQ(ops[1].op.flops, 17'179'869'184.0);
  EXPECT_EQ(ops[1].op.bytes, 29'360'128.0);
  EXPECT_EQ(ops[2].op.bytes, 25'165'824.0);  // 3 x 2048 x 2048 x 2
  // down k = 2048: 2 x 2048 x 1024 x 2048 = 8,589,934,592; bytes (2048 x 2048 + 2048 x 1024) x 2 +
  // 2048 x 1024 x 2 = 16,777,216.
  EXPECT_EQ(ops[3].op.flops, 8'589'934'592.0);
  EXPECT_EQ(ops[3].op.bytes, 16'777'216.0);
  EXPECT_EQ(ops[4].op.bytes, 6'291'456.0);

  // Not gated (T5, Switch): one up matrix of f, and the activation reads one input: 2 x 2048 x 4096 x 2.
  MoeModel plain = small_gqa();
  plain.gated_ffn = false;
  ops = dense_ffn_forward(plain, small_shape(1));
  EXPECT_EQ(find(ops, "mlp up").op.flops, 2.0 * 2048 * 4096 * 1024);
  EXPECT_EQ(find(ops, "mlp activation").op.bytes, 2.0 * 2048 * 4096 * 2);
}

TEST(LayerOps, MlaDeepSeekV3ByHand) {
  // DeepSeek-V3's MLA (h 7168, 128 heads, q_lora 1536, kv_lora 512, nope 128, rope 64, v 128), one sequence of
  // 4096 tokens, tp 2 (64 heads per GPU), FP8 projections (1 byte in, BF16 out): the down projections are whole on
  // each GPU, the up and output projections split.
  const MoeModel model = workloads::load_model("deepseek-v3");
  LayerShape shape;
  shape.sequences = 1;
  shape.seq_len = 4096;
  shape.tp = 2;
  shape.gemm_precision = Precision::kFp8;
  const auto ops = attention_forward(model, shape);
  EXPECT_EQ(names(ops), (std::vector<std::string>{"input norm", "q down", "q norm", "q up", "kv down", "kv norm",
                                                  "kv up", "attention core", "o proj", "attention residual add"}));

  // input norm on T / t = 2048 tokens: 2 (2 x 2048 x 7168 + 7168) = 58,734,592.
  EXPECT_EQ(find(ops, "input norm").op.bytes, 58'734'592.0);
  // q down 7168 -> 1536: 2 x 4096 x 1536 x 7168 = 90,194,313,216; bytes 4096 x 7168 + 7168 x 1536 (FP8) +
  // 4096 x 1536 x 2 = 29,360,128 + 11,010,048 + 12,582,912 = 52,953,088.
  EXPECT_EQ(find(ops, "q down").op.flops, 90'194'313'216.0);
  EXPECT_EQ(find(ops, "q down").op.bytes, 52'953'088.0);
  // q norm on all 4096 tokens: 2 (2 x 4096 x 1536 + 1536) = 25,168,896.
  EXPECT_EQ(find(ops, "q norm").op.bytes, 25'168'896.0);
  // q up 1536 -> 64 x (128 + 64) = 12288: 2 x 4096 x 12288 x 1536 = 154,618,822,656; bytes 4096 x 1536 +
  // 1536 x 12288 + 4096 x 12288 x 2 = 6,291,456 + 18,874,368 + 100,663,296 = 125,829,120.
  EXPECT_EQ(find(ops, "q up").op.flops, 154'618'822'656.0);
  EXPECT_EQ(find(ops, "q up").op.bytes, 125'829'120.0);
  // kv down 7168 -> 512 + 64: 2 x 4096 x 576 x 7168 = 33,822,867,456; bytes 29,360,128 + 4,128,768 + 4,718,592.
  EXPECT_EQ(find(ops, "kv down").op.flops, 33'822'867'456.0);
  EXPECT_EQ(find(ops, "kv down").op.bytes, 38'207'488.0);
  // kv norm: 2 (2 x 4096 x 512 + 512) = 8,389,632.
  EXPECT_EQ(find(ops, "kv norm").op.bytes, 8'389'632.0);
  // kv up 512 -> 64 x (128 + 128) = 16384: 2 x 4096 x 16384 x 512 = 68,719,476,736; bytes 2,097,152 + 8,388,608 +
  // 134,217,728 = 144,703,488.
  EXPECT_EQ(find(ops, "kv up").op.flops, 68'719'476'736.0);
  EXPECT_EQ(find(ops, "kv up").op.bytes, 144'703'488.0);
  // core, d_qk 192, d_v 128: 2 x 1 x 4096^2 x 64 x (192 + 128) / 2 = 343,597,383,680, in BF16. Bytes: Q and K
  // per head (the RoPE key broadcast) and V, 2 x 4096 x 64 x (192 + 192 + 128) = 268,435,456, O 2 x 4096 x 64 x 128
  // = 67,108,864, LSE 4 x 4096 x 64 = 1,048,576: 336,592,896.
  const LayerOp& core = find(ops, "attention core");
  EXPECT_EQ(core.op.precision, Precision::kBf16);
  EXPECT_EQ(core.op.flops, 343'597'383'680.0);
  EXPECT_EQ(core.op.bytes, 336'592'896.0);
  // o proj 64 x 128 = 8192 -> 7168: 2 x 4096 x 7168 x 8192 = 481,036,337,152; bytes 33,554,432 + 58,720,256 +
  // 58,720,256 = 150,994,944.
  EXPECT_EQ(find(ops, "o proj").op.flops, 481'036'337'152.0);
  EXPECT_EQ(find(ops, "o proj").op.bytes, 150'994'944.0);
  // residual add on 2048 tokens: 3 x 2048 x 7168 x 2 = 88,080,384.
  EXPECT_EQ(find(ops, "attention residual add").op.bytes, 88'080'384.0);

  expect_backward_mirrors_forward(ops, attention_backward(model, shape));

  // Without query compression (DeepSeek-V2-Lite) one q proj 7168 -> 12288 replaces the down, norm and up.
  MoeModel lite = model;
  lite.q_lora_rank = 0;
  const auto lite_ops = attention_forward(lite, shape);
  EXPECT_EQ(names(lite_ops), (std::vector<std::string>{"input norm", "q proj", "kv down", "kv norm", "kv up",
                                                       "attention core", "o proj", "attention residual add"}));
  EXPECT_EQ(find(lite_ops, "q proj").op.flops, 2.0 * 4096 * 12288 * 7168);
}

TEST(LayerOps, PrecisionsFollowTheKernel) {
  // FP8 training: projections, experts and shared experts in FP8; the core, norms, router and LM head in BF16.
  LayerShape shape = small_shape(1);
  shape.gemm_precision = Precision::kFp8;
  const MoeModel model = small_gqa();
  std::vector<LayerOp> ops = attention_forward(model, shape);
  append(ops, router_forward(model, shape));
  append(ops, experts_forward(model, shape, {256, 256}));
  append(ops, shared_experts_forward(model, shape));
  append(ops, combine_forward(model, shape));
  append(ops, head_forward(model, shape));
  for (const LayerOp& op : ops) {
    const bool is_fp8 =
        (op.op.kind == OpKind::kDenseGemm && op.name != "lm head") || op.op.kind == OpKind::kGroupedGemm;
    EXPECT_EQ(op.op.precision, is_fp8 ? Precision::kFp8 : Precision::kBf16) << op.name;
  }
  EXPECT_EQ(find(ops, "router").op.kind, OpKind::kRouter);
  EXPECT_EQ(find(ops, "permute").op.kind, OpKind::kPermute);
  EXPECT_EQ(find(ops, "unpermute").op.kind, OpKind::kUnpermute);
  EXPECT_EQ(find(ops, "experts up+gate").op.kind, OpKind::kGroupedGemm);
  EXPECT_EQ(find(ops, "lm head").op.kind, OpKind::kDenseGemm);
  EXPECT_EQ(find(ops, "loss").op.kind, OpKind::kElementwise);
}

TEST(LayerOps, RouterPermuteAndCombineByHand) {
  // tp 2: the MoE block's own kernels run on T / t = 1024 tokens; h 1024, E 8, top-2, one shared expert.
  const MoeModel model = small_gqa();
  const auto router = router_forward(model, small_shape(2));
  EXPECT_EQ(names(router), (std::vector<std::string>{"post-attention norm", "router", "permute"}));
  EXPECT_EQ(router[0].op.bytes, 4'196'352.0);
  // Gating GEMM 2 x 1024 x 1024 x 8 = 16,777,216; bytes 2 (1024 x 1024 + 1024 x 8) + fp32 scores 4 x 1024 x 8 +
  // top-k 8 x 1024 x 2 = 2,113,536 + 32,768 + 16,384 = 2,162,688.
  EXPECT_EQ(router[1].op.flops, 16'777'216.0);
  EXPECT_EQ(router[1].op.bytes, 2'162'688.0);
  // permute: read 1024 rows, write 2 x 1024 copies: 2 x 3 x 1024 x 1024 = 6,291,456.
  EXPECT_EQ(router[2].op.bytes, 6'291'456.0);

  const auto router_bwd = router_backward(model, small_shape(2));
  // dgrad reads fp32 score gradients and the weight, writes the input gradient: 4 x 1024 x 8 + 2 x 8 x 1024 +
  // 2 x 1024 x 1024 = 2,146,304; wgrad moves the same three tensors.
  EXPECT_EQ(find(router_bwd, "router dgrad").op.bytes, 2'146'304.0);
  EXPECT_EQ(find(router_bwd, "router wgrad").op.bytes, 2'146'304.0);

  const auto combine = combine_forward(model, small_shape(2));
  EXPECT_EQ(names(combine), (std::vector<std::string>{"unpermute", "moe residual add"}));
  // unpermute: read 2 x 1024 copies, write 1024 rows: 6,291,456; residual + routed + shared, written once:
  // 4 x 1024 x 1024 x 2 = 8,388,608.
  EXPECT_EQ(combine[0].op.bytes, 6'291'456.0);
  EXPECT_EQ(combine[1].op.bytes, 8'388'608.0);

  // Shared experts: one of 1024, split by tp 2 to 512, on all 2048 tokens: up+gate 2 x 2048 x 1024 x 1024,
  // activation 3 x 2048 x 512 x 2, down 2 x 2048 x 1024 x 512.
  const auto shared = shared_experts_forward(model, small_shape(2));
  EXPECT_EQ(names(shared), (std::vector<std::string>{"shared up+gate", "shared activation", "shared down"}));
  EXPECT_EQ(shared[0].op.flops, 4'294'967'296.0);
  EXPECT_EQ(shared[1].op.bytes, 6'291'456.0);
  EXPECT_EQ(shared[2].op.flops, 2'147'483'648.0);

  MoeModel no_shared = model;
  no_shared.num_shared_experts = 0;
  EXPECT_TRUE(shared_experts_forward(no_shared, small_shape(2)).empty());
  EXPECT_TRUE(shared_experts_backward(no_shared, small_shape(2)).empty());
  EXPECT_EQ(combine_forward(no_shared, small_shape(2))[1].op.bytes, 6'291'456.0);  // 3 x 1024 x 1024 x 2
}

TEST(LayerOps, GroupedGemmPadsUnevenExpertLoads) {
  // Five local experts with 1, 128, 129, 0 and 300 copies (558 in all). With 128-token tiles they compute 128, 128,
  // 256, 0 and 384 rows: 896. up+gate (n = 2 x 512, k = 1024): 2 x 896 x 1024 x 1024 = 1,879,048,192 FLOPs; bytes
  // count real rows only, and the weights of the four experts with tokens: 558 x 1024 x 2 (input) +
  // 4 x 1024 x 1024 x 2 (weights) + 558 x 1024 x 2 (output) = 10,674,176.
  const std::vector<std::int64_t> loads{1, 128, 129, 0, 300};
  const MoeModel model = small_gqa();
  const auto ops = experts_forward(model, small_shape(1), loads);
  EXPECT_EQ(names(ops), (std::vector<std::string>{"experts up+gate", "experts activation", "experts down"}));
  ASSERT_TRUE(ops[0].op.grouped.has_value());
  EXPECT_EQ(ops[0].op.grouped->tokens_per_expert, loads);
  EXPECT_EQ(work(ops[0]).flops, 1'879'048'192.0);
  EXPECT_EQ(work(ops[0]).bytes, 10'674'176.0);
  // Exactly what grouped_gemm_op gives for the same shape.
  const OpWork direct =
      compute::op_work(tile128_device(), compute::grouped_gemm_op(loads, 1024, 1024, Precision::kBf16));
  EXPECT_EQ(work(ops[0]).flops, direct.flops);
  EXPECT_EQ(work(ops[0]).bytes, direct.bytes);
  // Activation over the 558 real copies: 3 x 558 x 512 x 2 = 1,714,176. down (n 1024, k 512): 2 x 896 x 1024 x 512.
  EXPECT_EQ(ops[1].op.bytes, 1'714'176.0);
  EXPECT_EQ(work(ops[2]).flops, 939'524'096.0);

  // etp 2 halves the width: up+gate n = 2 x 256, 2 x 896 x 512 x 1024 = 939,524,096.
  LayerShape etp2 = small_shape(1);
  etp2.etp = 2;
  EXPECT_EQ(work(experts_forward(model, etp2, loads)[0]).flops, 939'524'096.0);

  // Backward: dgrad and wgrad each padded as the forward.
  const auto backward = experts_backward(model, small_shape(1), loads);
  expect_backward_mirrors_forward(ops, backward);
  EXPECT_EQ(work(find(backward, "experts down dgrad")).flops, 939'524'096.0);
  EXPECT_EQ(work(find(backward, "experts up+gate wgrad")).flops, 1'879'048'192.0);
}

TEST(LayerOps, BackwardIsTwiceTheForwardForGemmsAndTwoAndAHalfForTheCore) {
  // Every function's backward against its forward, for GQA at tp 1 and 2, FP8 and BF16, and MHA.
  const std::vector<std::int64_t> loads{100, 0, 300, 129};
  for (const MoeModel& model : {small_gqa(), small_mha()}) {
    for (const int tp : {1, 2}) {
      for (const Precision precision : {Precision::kBf16, Precision::kFp8}) {
        LayerShape shape = small_shape(tp);
        shape.gemm_precision = precision;
        SCOPED_TRACE(model.name + " tp " + std::to_string(tp));
        expect_backward_mirrors_forward(attention_forward(model, shape), attention_backward(model, shape));
        expect_backward_mirrors_forward(dense_ffn_forward(model, shape), dense_ffn_backward(model, shape));
        expect_backward_mirrors_forward(router_forward(model, shape), router_backward(model, shape));
        expect_backward_mirrors_forward(experts_forward(model, shape, loads), experts_backward(model, shape, loads));
        expect_backward_mirrors_forward(shared_experts_forward(model, shape), shared_experts_backward(model, shape));
        expect_backward_mirrors_forward(combine_forward(model, shape), combine_backward(model, shape));
        expect_backward_mirrors_forward(embedding_forward(model, shape), embedding_backward(model, shape));
        expect_backward_mirrors_forward(head_forward(model, shape), head_backward(model, shape));
      }
    }
  }
  // In sum: the attention block's backward FLOPs are 2 x its GEMMs' + 2.5 x its core's.
  const auto fwd = attention_forward(small_gqa(), small_shape(1));
  const double gemms = sum_flops(fwd, false);
  const double core = find(fwd, "attention core").op.flops;
  EXPECT_DOUBLE_EQ(sum_flops(attention_backward(small_gqa(), small_shape(1)), true), 2.0 * gemms + 2.5 * core);
  // The embedding's backward is its weight gradient.
  EXPECT_TRUE(embedding_backward(small_gqa(), small_shape(1))[0].is_weight_gradient);
}

TEST(LayerOps, LayerFlopsAreTwiceTokensTimesMatrixParameters) {
  // A cross-check with model.hpp: without the attention core (no causal term), a layer's forward FLOPs are
  // 2 FLOPs per multiply-add x T tokens x the layer's matrix parameters, i.e. its parameters less its 2 norms of h.
  // MHA dense layer: attention 1024 x 48 x 64 + 1024 x 1024 = 4,194,304, FFN 3 x 1024 x 4096 = 12,582,912, so
  // 2 x 2048 x 16,777,216 = 68,719,476,736. With tp 2 each GPU does half of it.
  const MoeModel mha = small_mha();
  const double tokens = 2048;
  const double matrices = static_cast<double>(mha.num_dense_layer_params() - std::int64_t{2} * mha.hidden_size);
  EXPECT_EQ(matrices, 16'777'216.0);
  for (const int tp : {1, 2}) {
    std::vector<LayerOp> layer = attention_forward(mha, small_shape(tp));
    append(layer, dense_ffn_forward(mha, small_shape(tp)));
    EXPECT_EQ(tp * sum_flops(layer, false), 2.0 * tokens * matrices) << "tp " << tp;
  }

  // GQA MoE layer, tp 1, all 8 experts local (ep 1), 2048 x 2 copies spread evenly, 512 each (whole tiles, so no
  // padding): attention + router + shared experts see every token once, each routed expert its copies, so the sum
  // is 2 T x the activated parameters less the norms.
  const MoeModel gqa = small_gqa();
  const std::vector<std::int64_t> loads(8, 512);
  std::vector<LayerOp> layer = attention_forward(gqa, small_shape(1));
  append(layer, router_forward(gqa, small_shape(1)));
  append(layer, experts_forward(gqa, small_shape(1), loads));
  append(layer, shared_experts_forward(gqa, small_shape(1)));
  append(layer, combine_forward(gqa, small_shape(1)));
  const auto activated = static_cast<double>(gqa.num_activated_moe_layer_params() - std::int64_t{2} * gqa.hidden_size);
  EXPECT_EQ(sum_flops(layer, false), 2.0 * tokens * activated);

  // MLA (DeepSeek-V3, one sequence of 4096): tp 1 gives 2 T x (attention parameters less the q and kv latent norms);
  // tp 2 does the down projections on both GPUs, so twice a GPU's FLOPs exceed that by one more copy of them.
  const MoeModel v3 = workloads::load_model("deepseek-v3");
  LayerShape shape;
  shape.sequences = 1;
  shape.seq_len = 4096;
  const double mla_matrices = static_cast<double>(v3.num_attention_params() - v3.q_lora_rank - v3.kv_lora_rank);
  EXPECT_EQ(sum_flops(attention_forward(v3, shape), false), 2.0 * 4096 * mla_matrices);
  shape.tp = 2;
  const double down = 7168.0 * 1536 + 7168.0 * (512 + 64);
  EXPECT_EQ(2 * sum_flops(attention_forward(v3, shape), false), 2.0 * 4096 * (mla_matrices + down));
}

TEST(LayerOps, EmbeddingAndHeadByHand) {
  // tp 2, T 2048, h 1024, vocabulary 32000 (a multiple of 128 x 2: no padding), 16000 per GPU.
  const MoeModel model = small_gqa();
  const auto embedding = embedding_forward(model, small_shape(2));
  ASSERT_EQ(embedding.size(), 1u);
  // ids 8 x 2048 + the shard's rows 2 x 2048 x 1024 / 2 + the partial output 2 x 2048 x 1024 = 6,307,840.
  EXPECT_EQ(embedding[0].op.kind, OpKind::kPermute);
  EXPECT_EQ(embedding[0].op.bytes, 6'307'840.0);

  const auto head = head_forward(model, small_shape(2));
  EXPECT_EQ(names(head), (std::vector<std::string>{"final norm", "lm head", "loss"}));
  EXPECT_EQ(head[0].op.bytes, 4'196'352.0);
  // lm head: 2 x 2048 x 16000 x 1024 = 67,108,864,000; bytes (2048 x 1024 + 1024 x 16000) x 2 + 2048 x 16000 x 2
  // = 36,962,304 + 65,536,000 = 102,498,304.
  EXPECT_EQ(head[1].op.flops, 67'108'864'000.0);
  EXPECT_EQ(head[1].op.bytes, 102'498'304.0);
  // loss: read BF16 logits, write fp32 exponentials: 6 x 2048 x 16000 = 196,608,000.
  EXPECT_EQ(head[2].op.bytes, 196'608'000.0);

  // A vocabulary of 32001 pads to 32256 (126 x 256), 16128 per GPU.
  MoeModel odd = model;
  odd.vocab_size = 32001;
  EXPECT_EQ(find(head_forward(odd, small_shape(2)), "lm head").op.flops, 2.0 * 2048 * 16128 * 1024);
}

TEST(LayerOps, OptimizerStepMovesThirtyBytesPerParameter) {
  // Reads the fp32 gradient, master weight and two moments (16 bytes), writes the master weight and moments (12)
  // and the BF16 weight (2).
  const LayerOp op = optimizer_step(1'000'000);
  EXPECT_EQ(op.op.kind, OpKind::kElementwise);
  EXPECT_EQ(op.op.precision, Precision::kFp32);
  EXPECT_EQ(op.op.flops, 0.0);
  EXPECT_EQ(op.op.bytes, 30'000'000.0);
  EXPECT_EQ(optimizer_step(0).op.bytes, 0.0);
}

TEST(LayerOps, ModelFlopsPerTokenBesideSixN) {
  // 6 N_mm + 6 L s H (d_qk + d_v) / 2 at s = 4096.
  // Mixtral: per layer 41,943,040 (attention) + 2 x 176,160,768 (top-2 experts) + 4096 x 8 (router) =
  // 394,297,344; x 32 + 32000 x 4096 (head) = 12,748,587,008; attention 6 x 32 x 4096 x 32 x 256 / 2 =
  // 3,221,225,472. Total 6 x 12,748,587,008 + 3,221,225,472 = 79,712,747,520.
  const MoeModel mixtral = workloads::load_model("mixtral-8x7b");
  const double mixtral_flops = model_flops_per_token(mixtral, 4096);
  EXPECT_EQ(mixtral_flops, 79'712'747'520.0);
  // DeepSeek-V3: attention matrices 187,107,328 - 1536 - 512 = 187,105,280; dense layers 3 x (187,105,280 +
  // 396,361,728); MoE layers 58 x (187,105,280 + 8 x 44,040,192 + 44,040,192 + 1,835,008); head 129280 x 7168.
  // 1,750,401,024 + 33,947,516,928 + 926,679,040 = 36,624,596,992; attention 6 x 61 x 4096 x 128 x 320 / 2 =
  // 30,702,305,280. Total 6 x 36,624,596,992 + 30,702,305,280 = 250,449,887,232.
  const MoeModel v3 = workloads::load_model("deepseek-v3");
  const double v3_flops = model_flops_per_token(v3, 4096);
  EXPECT_EQ(v3_flops, 250'449'887'232.0);

  for (const MoeModel* model : {&mixtral, &v3}) {
    const auto n = static_cast<double>(model->num_activated_params());
    const auto n_no_embedding = n - static_cast<double>(model->num_embedding_params());
    const double flops = model_flops_per_token(*model, 4096);
    std::cout << model->name << " at seq_len 4096: model FLOPs per token " << flops / 1e9 << " G; 6 x activated ("
              << n / 1e9 << " B) = " << 6 * n / 1e9
              << " G; 6 x activated without the embedding = " << 6 * n_no_embedding / 1e9 << " G; ratio to 6N "
              << flops / (6 * n) << "\n";
    // The attention term adds to 6N and the embedding (in N, no matmul) takes away: within 15% at 4k tokens.
    EXPECT_NEAR(flops / (6 * n), 1.0, 0.15) << model->name;
  }
}

TEST(LayerOps, InvalidInputsThrow) {
  const MoeModel model = small_gqa();
  LayerShape tp3 = small_shape(3);
  tp3.seq_len = 1023;  // a multiple of 3, so the heads are what fails
  EXPECT_TRUE(contains(error_of([&] { attention_forward(model, tp3); }),
                       "layer ops for small-gqa: tp: must divide num_attention_heads (16), got 3"));
  EXPECT_TRUE(contains(error_of([&] { dense_ffn_forward(model, tp3); }), "tp: must divide intermediate_size (4096)"));
  EXPECT_TRUE(contains(error_of([&] { shared_experts_forward(model, tp3); }), "tp: must divide num_shared_experts"));

  MoeModel odd_kv = model;  // 24 heads, 6 KV heads, tp 4: 4 does not divide 6 and is no multiple of it
  odd_kv.num_attention_heads = 24;
  odd_kv.num_key_value_heads = 6;
  EXPECT_TRUE(contains(error_of([&] { attention_forward(odd_kv, small_shape(4)); }),
                       "tp: must divide num_key_value_heads (6) or be a multiple of it, got 4"));

  LayerShape uneven = small_shape(16);
  uneven.seq_len = 1000;
  EXPECT_TRUE(contains(error_of([&] { router_forward(model, uneven); }), "seq_len: must be a multiple of tp 16"));
  LayerShape no_sequences = small_shape(1);
  no_sequences.sequences = 0;
  EXPECT_TRUE(contains(error_of([&] { combine_forward(model, no_sequences); }), "sequences: must be >= 1, got 0"));
  EXPECT_TRUE(contains(error_of([&] { head_forward(model, small_shape(0)); }), "tp: must be >= 1, got 0"));

  LayerShape etp3 = small_shape(1);
  etp3.etp = 3;
  EXPECT_TRUE(contains(error_of([&] {
                         experts_forward(model, etp3, {4, 4});
                       }),
                       "etp: must divide moe_intermediate_size (512), got 3"));
  EXPECT_TRUE(contains(error_of([&] {
                         experts_backward(model, small_shape(1), {4, -1});
                       }),
                       "tokens_per_local_expert[1]: must be >= 0, got -1"));
  EXPECT_TRUE(contains(error_of([&] { experts_forward(model, small_shape(1), {}); }), "tokens_per_local_expert"));

  MoeModel no_dense = model;
  no_dense.intermediate_size = 0;
  EXPECT_TRUE(contains(error_of([&] { dense_ffn_forward(no_dense, small_shape(1)); }),
                       "intermediate_size: must be > 0, got 0"));
  MoeModel no_attention = model;
  no_attention.num_attention_heads = 0;
  EXPECT_TRUE(contains(error_of([&] { attention_forward(no_attention, small_shape(1)); }),
                       "num_attention_heads: must be > 0, got 0"));
  MoeModel no_vocab = model;
  no_vocab.vocab_size = 0;
  EXPECT_TRUE(contains(error_of([&] { embedding_forward(no_vocab, small_shape(1)); }), "vocab_size: must be > 0"));
  EXPECT_TRUE(contains(error_of([&] { head_backward(no_vocab, small_shape(1)); }), "vocab_size: must be > 0"));
  MoeModel no_topk = model;
  no_topk.num_topk = 0;
  EXPECT_TRUE(contains(error_of([&] { router_forward(no_topk, small_shape(1)); }), "num_topk: must be in [1, "));

  EXPECT_TRUE(contains(error_of([&] { optimizer_step(-1); }), "num_params must be >= 0, got -1"));
  EXPECT_TRUE(contains(error_of([&] { model_flops_per_token(model, 0); }), "seq_len: must be >= 1, got 0"));
  // Parameter counts refuse a model without attention, and so does the FLOP count that uses them.
  EXPECT_THROW(model_flops_per_token(no_attention, 4096), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::sim::step
