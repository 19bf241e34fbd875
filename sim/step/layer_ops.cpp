#include "sim/step/layer_ops.hpp"

#include <stdexcept>
#include <string>
#include <utility>

// Notation, per GPU of the TP group: b sequences of s tokens, T = b s tokens, t = tp, T_sp = T / t (the sequence-
// parallel slice), h hidden, H attention heads, H_l = H / t heads on this GPU, G KV heads, G_l = G / t when t divides
// G, else 1 (t a multiple of G: every query head of a rank is in one KV group, so the rank holds that one head), d
// head_dim, E experts, k top-k, V vocabulary, V_p = V rounded up to a multiple of 128 t, p = gemm_precision.
//
// A GEMM y[m x n] = x[m x k] W[k x n] is dense_gemm_op(m, n, k): FLOPs 2 m n k; bytes (m k + k n) bytes(p) + m n
// gemm_output_bytes(p) (roofline.hpp): the input and the weight in the GEMM's precision (an FP8 GEMM reads an FP8
// input; the cast is fused into the kernel before it and not counted), the output in BF16.
//
// Forward kernels (FLOPs; bytes):
//   norm over r rows of width w (RMSNorm: input norm, q/kv latent norms, post-attention norm, final norm):
//     0; 2 (2 r w + w): read the rows and the weight, write the rows.
//   residual add of n summands over r rows: 0; 2 (n + 1) r h.
//   mha/gqa: input norm (T_sp rows), qkv GEMM (T, (H_l + 2 G_l) d, h): 2 T h (H_l + 2 G_l) d, core, o proj GEMM
//     (T, h, H_l d): 2 T H_l d h, residual add (2 summands, T_sp rows).
//   mla: input norm; q_lora > 0: q down (T, q_lora, h): 2 T h q_lora (whole on every TP rank), q norm (T rows of
//     q_lora), q up (T, H_l (d_nope + d_rope), q_lora): 2 T q_lora H_l (d_nope + d_rope); q_lora = 0: q proj
//     (T, H_l (d_nope + d_rope), h); kv down (T, kv_lora + d_rope, h): 2 T h (kv_lora + d_rope) (whole on every
//     rank), kv norm (T rows of kv_lora), kv up (T, H_l (d_nope + d_v), kv_lora): 2 T kv_lora H_l (d_nope + d_v),
//     core with d_qk = d_nope + d_rope and d_v, o proj (T, h, H_l d_v): 2 T H_l d_v h, residual add.
//   attention core, causal (FlashAttention): per sequence and head, QK^T is [s x d_qk] x [d_qk x s], 2 s^2 d_qk
//     FLOPs, and PV is [s x s] x [s x d_v], 2 s^2 d_v; causal masking skips the upper triangle, half of both, so
//     FLOPs = 2 b s^2 H_l (d_qk + d_v) / 2 = b s^2 H_l (d_qk + d_v). Bytes: read Q (T H_l d_qk), K (T G_l d_qk)
//     and V (T G_l d_v), write O (T H_l d_v), all BF16, and the fp32 log-sum-exp (T H_l) kept for the backward.
//     mla reads K and V per head (G_l = H_l): the shared RoPE key is broadcast into every head's key.
//   dense FFN of width f (f / t per GPU; shared experts: num_shared x shared_intermediate, fused into one FFN):
//     post-attention norm (T_sp rows); gated: up+gate (T, 2 f / t, h): 4 T h f / t, activation (SwiGLU) 0;
//     2 x 3 T f / t (read gate and up, write their product); not gated: up (T, f / t, h): 2 T h f / t, activation
//     0; 2 x 2 T f / t; down (T, h, f / t): 2 T f h / t; residual add (2 summands, T_sp rows).
//   router (T_sp rows, BF16): 2 T_sp h E; 2 (T_sp h + h E) (input and gate weight) + 4 T_sp E (fp32 scores, kept
//     for the backward and the auxiliary loss) + 8 T_sp k (the top-k's fp32 weights and int32 expert indices).
//   permute: 0; 2 (T_sp h + k T_sp h): read each token, write its k copies grouped by expert.
//   routed experts, n_e copies for local expert e, N = sum n_e, f_e = moe_intermediate / etp: grouped GEMMs
//     up+gate (n_e, 2 f_e, h) (not gated: (n_e, f_e, h)), activation 0; 2 x 3 N f_e (not gated 2 x 2 N f_e), down
//     (n_e, h, f_e); grouped_gemm_op with the real n_e: op_work pads each n_e to the device's token tile, so
//     FLOPs = sum 2 ceil(n_e / tile) tile n k.
//   unpermute (weighted combine): 0; 2 (k T_sp h + T_sp h): read the k copies of each token, write the token.
//     The routing map and the probabilities (4 to 8 bytes a copy, against 2 h) are left out here and in permute.
//   MoE residual add: residual + routed output (+ shared experts' output when there are any), T_sp rows.
//   embedding (vocabulary parallel): 0; 8 T (int64 token ids) + 2 T h / t (the rows this rank's vocabulary shard
//     holds, 1 / t of the tokens on average) + 2 T h (the partial output: every token's row, zeros where another
//     rank owns the token, summed by the reduce-scatter that follows).
//   head: final norm (T_sp rows), lm head (T, V_p / t, h): 2 T h V_p / t, always BF16 (DeepSeek-V3 sec. 3.3.1
//     keeps the output head in BF16 under FP8 training), loss (vocabulary-parallel cross entropy): 0;
//     (2 + 4) T V_p / t: read the BF16 logits, write the fp32 exponentials kept for the backward.
//
// Backward, in reverse order of the forward:
//   GEMM (m, n, k) -> dgrad dx[m x k] = dy[m x n] W^T: dense_gemm_op(m, k, n), and wgrad dW[k x n] = x^T dy:
//     dense_gemm_op(k, n, m), is_weight_gradient; each 2 m n k FLOPs, each with the bytes of what it reads and
//     writes. A grouped GEMM (n_e, n, k) -> dgrad grouped_gemm_op(n_e, k, n) (padded as the forward) and wgrad
//     grouped_gemm_op(n_e, n, k), the forward's shape: its reduction runs along the tokens, which the kernel tiles
//     too, so the padding (and the FLOPs) are the forward's; its bytes are exact in BF16 (they count the same three
//     tensors) and for FP8 count dW at 1 byte and dy at 2 where it is the other way round (a few percent).
//   router -> dgrad and wgrad of its gating GEMM, kind router, 2 T_sp h E each; bytes: dgrad reads the fp32 score
//     gradients and the weight, writes the input gradient, 4 T_sp E + 2 h E + 2 T_sp h; wgrad reads the input and
//     the score gradients, writes the weight gradient, the same sum. The softmax / sigmoid and top-k backward is
//     folded into the dgrad.
//   attention core -> 2.5 x the forward FLOPs (FlashAttention-2, Dao 2023, counts its backward so: five matmuls,
//     the scores recomputed, against the forward's two); bytes: read Q, K, V, O, dO and the log-sum-exp, write dQ,
//     dK, dV.
//   every other kernel (norms, activations, adds, loss, permute, unpermute, embedding) -> the same kind, the
//     forward's bytes twice. The embedding's backward is its weight gradient (a scatter-add into the table; token
//     ids have no gradient), so it is marked is_weight_gradient.
//
// Element-wise and data-movement kernels carry 0 FLOPs: the few FLOPs an element gets run on the CUDA cores at an
// arithmetic intensity (about 1 FLOP/byte) far below every device's crossover, and the roofline would weigh them
// against the op precision's tensor-core peak, which means nothing for them. With 0, the FLOPs of a layer's ops are
// its matrix multiplications alone, which the tests tie to model.hpp's parameter counts.
//
// Precision: projections, experts and shared experts in p; the attention core, norms, activations and data movement
// in BF16; the LM head in BF16 (above); the router in BF16, not FP8 (DeepSeek-V3 sec. 3.3.1 keeps the gating out of
// FP8) and not FP32: its GEMM is memory-bound (n = E is only 8 to 256) and reads the BF16 activations the norm
// wrote, so an FP32 GEMM would cost about the same time, while the scores it writes, and the softmax / sigmoid and
// top-k on them, are fp32 (the 4 T_sp E bytes above), which is where routing precision matters. RoPE is fused into
// the attention kernel (not a kernel of its own), and dropout is off (MoE pretraining runs without it).
namespace moesim::sim::step {
namespace {

using compute::Op;
using compute::OpKind;
using compute::Precision;
using workloads::AttentionKind;
using workloads::MoeModel;

constexpr double kBf16Bytes = 2.0;
constexpr double kFp32Bytes = 4.0;
constexpr double kTokenIdBytes = 8.0;    // int64: PyTorch's index type
constexpr double kTopkEntryBytes = 8.0;  // one routing choice: an fp32 weight and an int32 expert index
constexpr double kCoreBackwardFlopsFactor = 2.5;
constexpr double kBackwardBytesFactor = 2.0;
constexpr std::int64_t kVocabDivisor = 128;  // Megatron's --make-vocab-size-divisible-by, as workloads/memory.hpp

// Adam with fp32 master weights and two fp32 moments, the memory model's defaults (workloads/memory.hpp:
// master_weights, optimizer_states 2 of fp32, grad_dtype fp32): the BF16 gradients of the backward are accumulated
// and reduced into an fp32 buffer (Megatron's main_grad), so per parameter the step reads the fp32 gradient (4), the
// master weight (4) and both moments (8), writes the master weight (4) and both moments (8), and writes the BF16
// copy the next forward reads (2): 16 read + 14 written = 30 bytes.
constexpr double kAdamReadBytesPerParam = 4.0 + 4.0 + 2 * 4.0;
constexpr double kAdamWrittenBytesPerParam = 4.0 + 2 * 4.0 + 2.0;

const std::string& model_label(const MoeModel& model) {
  return model.name.empty() ? model.source : model.name;
}

[[noreturn]] void fail(const MoeModel& model, const std::string& key, const std::string& expectation) {
  throw std::invalid_argument("layer ops for " + model_label(model) + ": " + key + ": " + expectation);
}

// What every function needs: a positive hidden size and a shape the TP group can split.
void check_shape(const MoeModel& model, const LayerShape& shape) {
  if (model.hidden_size < 1) fail(model, "hidden_size", "must be > 0, got " + std::to_string(model.hidden_size));
  if (shape.sequences < 1) fail(model, "sequences", "must be >= 1, got " + std::to_string(shape.sequences));
  if (shape.seq_len < 1) fail(model, "seq_len", "must be >= 1, got " + std::to_string(shape.seq_len));
  if (shape.tp < 1) fail(model, "tp", "must be >= 1, got " + std::to_string(shape.tp));
  if (shape.etp < 1) fail(model, "etp", "must be >= 1, got " + std::to_string(shape.etp));
  // Sequence parallelism splits every sequence along its tokens; Megatron requires the same.
  if (shape.seq_len % shape.tp != 0) {
    fail(model, "seq_len",
         "must be a multiple of tp " + std::to_string(shape.tp) +
             " (sequence parallelism splits each sequence over the TP group), got " + std::to_string(shape.seq_len));
  }
}

// total / parts, where parts must divide total.
std::int64_t split(const MoeModel& model, std::int64_t total, const char* total_key, int parts, const char* parts_key) {
  if (total < 1) fail(model, total_key, "must be > 0, got " + std::to_string(total));
  if (total % parts != 0) {
    fail(model, parts_key,
         "must divide " + std::string(total_key) + " (" + std::to_string(total) + "), got " + std::to_string(parts));
  }
  return total / parts;
}

// How a forward kernel's backward is derived (the rules in the theory comment).
enum class Backward { kGemm, kGroupedGemm, kRouter, kAttentionCore, kBytesTwice };

struct Kernel {
  LayerOp forward;
  Backward backward = Backward::kBytesTwice;
  std::int64_t m = 0;  // kGemm and kRouter: y[m x n] = x[m x k] W[k x n]
  std::int64_t n = 0;
  std::int64_t k = 0;
  double backward_bytes = 0.0;               // kAttentionCore
  bool is_backward_weight_gradient = false;  // kBytesTwice: the embedding's scatter-add into its table
};

Op elementwise_op(double bytes, OpKind kind = OpKind::kElementwise) {
  Op op;
  op.kind = kind;
  op.precision = Precision::kBf16;
  op.bytes = bytes;
  return op;
}

Kernel bytes_kernel(std::string name, double bytes, OpKind kind = OpKind::kElementwise) {
  return Kernel{LayerOp{std::move(name), elementwise_op(bytes, kind)}};
}

Kernel norm_kernel(std::string name, std::int64_t rows, std::int64_t width) {
  const auto r = static_cast<double>(rows);
  const auto w = static_cast<double>(width);
  return bytes_kernel(std::move(name), kBf16Bytes * (2.0 * r * w + w));
}

Kernel add_kernel(std::string name, std::int64_t rows, std::int64_t width, int num_summands) {
  return bytes_kernel(std::move(name),
                      kBf16Bytes * (num_summands + 1) * static_cast<double>(rows) * static_cast<double>(width));
}

Kernel gemm_kernel(std::string name, std::int64_t m, std::int64_t n, std::int64_t k, Precision precision) {
  return Kernel{LayerOp{std::move(name), compute::dense_gemm_op(m, n, k, precision)}, Backward::kGemm, m, n, k};
}

Kernel grouped_kernel(std::string name, const std::vector<std::int64_t>& tokens_per_expert, std::int64_t n,
                      std::int64_t k, Precision precision) {
  return Kernel{LayerOp{std::move(name), compute::grouped_gemm_op(tokens_per_expert, n, k, precision)},
                Backward::kGroupedGemm};
}

std::vector<LayerOp> forward_of(const std::vector<Kernel>& kernels) {
  std::vector<LayerOp> out;
  out.reserve(kernels.size());
  for (const Kernel& kernel : kernels) out.push_back(kernel.forward);
  return out;
}

std::vector<LayerOp> backward_of(const std::vector<Kernel>& kernels) {
  std::vector<LayerOp> out;
  out.reserve(2 * kernels.size());
  for (auto it = kernels.rbegin(); it != kernels.rend(); ++it) {
    const Kernel& kernel = *it;
    const LayerOp& fwd = kernel.forward;
    const Precision precision = fwd.op.precision;
    switch (kernel.backward) {
      case Backward::kGemm:
        out.push_back({fwd.name + " dgrad", compute::dense_gemm_op(kernel.m, kernel.k, kernel.n, precision)});
        out.push_back({fwd.name + " wgrad", compute::dense_gemm_op(kernel.k, kernel.n, kernel.m, precision), true});
        break;
      case Backward::kGroupedGemm: {
        const compute::GroupedGemmShape& shape = *fwd.op.grouped;
        out.push_back(
            {fwd.name + " dgrad", compute::grouped_gemm_op(shape.tokens_per_expert, shape.k, shape.n, precision)});
        out.push_back({fwd.name + " wgrad",
                       compute::grouped_gemm_op(shape.tokens_per_expert, shape.n, shape.k, precision), true});
        break;
      }
      case Backward::kRouter: {
        const auto m = static_cast<double>(kernel.m);
        const auto n = static_cast<double>(kernel.n);
        const auto k = static_cast<double>(kernel.k);
        Op op = fwd.op;
        op.bytes = kFp32Bytes * m * n + kBf16Bytes * (n * k + m * k);
        out.push_back({fwd.name + " dgrad", op});
        out.push_back({fwd.name + " wgrad", op, true});
        break;
      }
      case Backward::kAttentionCore: {
        Op op = fwd.op;
        op.flops = kCoreBackwardFlopsFactor * fwd.op.flops;
        op.bytes = kernel.backward_bytes;
        out.push_back({fwd.name + " backward", op});
        break;
      }
      case Backward::kBytesTwice: {
        Op op = fwd.op;
        op.bytes = kBackwardBytesFactor * fwd.op.bytes;
        out.push_back({fwd.name + " backward", op, kernel.is_backward_weight_gradient});
        break;
      }
    }
  }
  return out;
}

// The causal core for heads_per_gpu query heads and kv_heads_per_gpu key-value heads (formulas above).
// `cache_bytes_per_token`: what one cached token costs this GPU to read in decode (shape.kv_cache_len > 0).
Kernel attention_core_kernel(const LayerShape& shape, std::int64_t heads_per_gpu, std::int64_t kv_heads_per_gpu,
                             std::int64_t qk_dim, std::int64_t v_dim, double cache_bytes_per_token) {
  const auto b = static_cast<double>(shape.sequences);
  const auto s = static_cast<double>(shape.seq_len);
  const double tokens = b * s;
  const auto heads = static_cast<double>(heads_per_gpu);
  const auto kv_heads = static_cast<double>(kv_heads_per_gpu);
  const auto d_qk = static_cast<double>(qk_dim);
  const auto d_v = static_cast<double>(v_dim);
  const double qkv_bytes = kBf16Bytes * tokens * (heads * d_qk + kv_heads * (d_qk + d_v));
  const double o_bytes = kBf16Bytes * tokens * heads * d_v;
  const double lse_bytes = kFp32Bytes * tokens * heads;
  Op op;
  op.kind = OpKind::kAttention;
  op.precision = Precision::kBf16;
  op.flops = 2.0 * b * s * s * heads * (d_qk + d_v) / 2.0;  // QK^T and PV, halved by the causal mask
  op.bytes = qkv_bytes + o_bytes + lse_bytes;
  if (shape.kv_cache_len > 0) {
    // Decode: new token i (of s) attends to the cache and to itself and the new tokens before it, so the keys
    // summed over the new tokens are s x cache + s (s + 1) / 2; the cache is read once per sequence.
    const auto cache = static_cast<double>(shape.kv_cache_len);
    const double keys = s * cache + s * (s + 1.0) / 2.0;
    op.flops = 2.0 * b * keys * heads * (d_qk + d_v);
    op.bytes += b * cache * cache_bytes_per_token;
  }
  Kernel kernel{LayerOp{"attention core", op}, Backward::kAttentionCore};
  // Reads Q, K, V, O, dO (dO is O's size) and the log-sum-exp; writes dQ, dK, dV (Q's, K's and V's sizes).
  kernel.backward_bytes = 2.0 * qkv_bytes + 2.0 * o_bytes + lse_bytes;
  return kernel;
}

std::vector<Kernel> attention_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  const int tp = shape.tp;
  const std::int64_t hidden = model.hidden_size;
  const std::int64_t tokens = shape.tokens();
  const std::int64_t local_tokens = tokens / tp;
  const Precision p = shape.gemm_precision;
  const std::int64_t heads = split(model, model.num_attention_heads, "num_attention_heads", tp, "tp");

  std::vector<Kernel> out;
  out.push_back(norm_kernel("input norm", local_tokens, hidden));
  if (model.attention != AttentionKind::kMla) {
    const std::int64_t num_kv_heads = model.num_key_value_heads;
    const std::int64_t head_dim = model.head_dim;
    if (num_kv_heads < 1 || model.num_attention_heads % num_kv_heads != 0) {
      fail(model, "num_key_value_heads",
           "must be > 0 and divide num_attention_heads (" + std::to_string(model.num_attention_heads) + "), got " +
               std::to_string(num_kv_heads));
    }
    if (head_dim < 1) fail(model, "head_dim", "must be > 0, got " + std::to_string(head_dim));
    std::int64_t kv_heads = 1;  // tp a multiple of the KV heads: each rank's query heads share one KV head
    if (num_kv_heads % tp == 0) {
      kv_heads = num_kv_heads / tp;
    } else if (tp % num_kv_heads != 0) {
      fail(model, "tp",
           "must divide num_key_value_heads (" + std::to_string(num_kv_heads) + ") or be a multiple of it, got " +
               std::to_string(tp));
    }
    out.push_back(gemm_kernel("qkv", tokens, (heads + 2 * kv_heads) * head_dim, hidden, p));
    // The cache holds this rank's keys and values (KV heads split by tp, or one replicated head each).
    out.push_back(attention_core_kernel(shape, heads, kv_heads, head_dim, head_dim,
                                        kBf16Bytes * 2.0 * static_cast<double>(kv_heads * head_dim)));
    out.push_back(gemm_kernel("o proj", tokens, hidden, heads * head_dim, p));
  } else {
    const std::int64_t q_lora = model.q_lora_rank;
    const std::int64_t kv_lora = model.kv_lora_rank;
    const std::int64_t nope = model.qk_nope_head_dim;
    const std::int64_t rope = model.qk_rope_head_dim;
    const std::int64_t v_dim = model.v_head_dim;
    if (kv_lora < 1) fail(model, "kv_lora_rank", "must be > 0 for mla, got " + std::to_string(kv_lora));
    if (q_lora < 0) fail(model, "q_lora_rank", "must be >= 0, got " + std::to_string(q_lora));
    if (nope < 0 || rope < 0 || nope + rope < 1) {
      fail(model, "qk_nope_head_dim + qk_rope_head_dim",
           "must be > 0 (each >= 0), got " + std::to_string(nope) + " + " + std::to_string(rope));
    }
    if (v_dim < 1) fail(model, "v_head_dim", "must be > 0, got " + std::to_string(v_dim));
    const std::int64_t qk_dim = nope + rope;
    if (q_lora > 0) {
      out.push_back(gemm_kernel("q down", tokens, q_lora, hidden, p));
      out.push_back(norm_kernel("q norm", tokens, q_lora));
      out.push_back(gemm_kernel("q up", tokens, heads * qk_dim, q_lora, p));
    } else {
      out.push_back(gemm_kernel("q proj", tokens, heads * qk_dim, hidden, p));
    }
    out.push_back(gemm_kernel("kv down", tokens, kv_lora + rope, hidden, p));
    out.push_back(norm_kernel("kv norm", tokens, kv_lora));
    out.push_back(gemm_kernel("kv up", tokens, heads * (nope + v_dim), kv_lora, p));
    // The cache holds the latent and the shared RoPE key, whole on every TP rank.
    out.push_back(
        attention_core_kernel(shape, heads, heads, qk_dim, v_dim, kBf16Bytes * static_cast<double>(kv_lora + rope)));
    out.push_back(gemm_kernel("o proj", tokens, hidden, heads * v_dim, p));
  }
  out.push_back(add_kernel("attention residual add", local_tokens, hidden, 2));
  return out;
}

// Up (and gate), activation, down of an FFN of `width_per_gpu` channels on this GPU over `rows` rows.
void append_ffn(std::vector<Kernel>& out, const std::string& prefix, const MoeModel& model, std::int64_t rows,
                std::int64_t width_per_gpu, Precision p) {
  const std::int64_t hidden = model.hidden_size;
  const int num_inputs = model.gated_ffn ? 2 : 1;  // the activation reads gate and up, or up alone
  out.push_back(
      gemm_kernel(prefix + (model.gated_ffn ? " up+gate" : " up"), rows, num_inputs * width_per_gpu, hidden, p));
  out.push_back(bytes_kernel(prefix + " activation", kBf16Bytes * (num_inputs + 1) * static_cast<double>(rows) *
                                                         static_cast<double>(width_per_gpu)));
  out.push_back(gemm_kernel(prefix + " down", rows, hidden, width_per_gpu, p));
}

std::vector<Kernel> dense_ffn_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  const std::int64_t width = split(model, model.intermediate_size, "intermediate_size", shape.tp, "tp");
  const std::int64_t local_tokens = shape.tokens() / shape.tp;
  std::vector<Kernel> out;
  out.push_back(norm_kernel("post-attention norm", local_tokens, model.hidden_size));
  append_ffn(out, "mlp", model, shape.tokens(), width, shape.gemm_precision);
  out.push_back(add_kernel("mlp residual add", local_tokens, model.hidden_size, 2));
  return out;
}

void check_moe(const MoeModel& model) {
  if (model.num_experts < 1) fail(model, "num_experts", "must be > 0, got " + std::to_string(model.num_experts));
  if (model.num_topk < 1 || model.num_topk > model.num_experts) {
    fail(
        model, "num_topk",
        "must be in [1, num_experts " + std::to_string(model.num_experts) + "], got " + std::to_string(model.num_topk));
  }
}

std::vector<Kernel> router_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  check_moe(model);
  const std::int64_t rows = shape.tokens() / shape.tp;
  const std::int64_t hidden = model.hidden_size;
  const std::int64_t experts = model.num_experts;
  const auto r = static_cast<double>(rows);
  const auto h = static_cast<double>(hidden);
  const auto e = static_cast<double>(experts);
  Op router;
  router.kind = OpKind::kRouter;
  router.precision = Precision::kBf16;
  router.flops = 2.0 * r * h * e;
  router.bytes = kBf16Bytes * (r * h + h * e) + kFp32Bytes * r * e + kTopkEntryBytes * r * model.num_topk;

  std::vector<Kernel> out;
  out.push_back(norm_kernel("post-attention norm", rows, hidden));
  out.push_back(Kernel{LayerOp{"router", router}, Backward::kRouter, rows, experts, hidden});
  out.push_back(bytes_kernel("permute", kBf16Bytes * (r * h + model.num_topk * r * h), OpKind::kPermute));
  return out;
}

std::vector<Kernel> experts_kernels(const MoeModel& model, const LayerShape& shape,
                                    const std::vector<std::int64_t>& tokens_per_local_expert) {
  check_shape(model, shape);
  const std::int64_t width = split(model, model.moe_intermediate_size, "moe_intermediate_size", shape.etp, "etp");
  if (tokens_per_local_expert.empty()) {
    fail(model, "tokens_per_local_expert", "must have one count per local expert, got none");
  }
  double num_copies = 0.0;
  for (std::size_t expert_idx = 0; expert_idx < tokens_per_local_expert.size(); ++expert_idx) {
    const std::int64_t count = tokens_per_local_expert[expert_idx];
    if (count < 0) {
      fail(model, "tokens_per_local_expert[" + std::to_string(expert_idx) + "]",
           "must be >= 0, got " + std::to_string(count));
    }
    num_copies += static_cast<double>(count);
  }
  const std::int64_t hidden = model.hidden_size;
  const Precision p = shape.gemm_precision;
  const int num_inputs = model.gated_ffn ? 2 : 1;
  std::vector<Kernel> out;
  out.push_back(grouped_kernel(model.gated_ffn ? "experts up+gate" : "experts up", tokens_per_local_expert,
                               num_inputs * width, hidden, p));
  out.push_back(
      bytes_kernel("experts activation", kBf16Bytes * (num_inputs + 1) * num_copies * static_cast<double>(width)));
  out.push_back(grouped_kernel("experts down", tokens_per_local_expert, hidden, width, p));
  return out;
}

std::vector<Kernel> shared_experts_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  if (model.num_shared_experts < 0) {
    fail(model, "num_shared_experts", "must be >= 0, got " + std::to_string(model.num_shared_experts));
  }
  if (model.num_shared_experts == 0) return {};
  const std::int64_t total_width =
      static_cast<std::int64_t>(model.num_shared_experts) * model.shared_expert_intermediate_size;
  const std::int64_t width =
      split(model, total_width, "num_shared_experts x shared_expert_intermediate_size", shape.tp, "tp");
  std::vector<Kernel> out;
  append_ffn(out, "shared", model, shape.tokens(), width, shape.gemm_precision);
  return out;
}

std::vector<Kernel> combine_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  check_moe(model);
  const std::int64_t rows = shape.tokens() / shape.tp;
  const auto r = static_cast<double>(rows);
  const auto h = static_cast<double>(model.hidden_size);
  std::vector<Kernel> out;
  out.push_back(bytes_kernel("unpermute", kBf16Bytes * (model.num_topk * r * h + r * h), OpKind::kUnpermute));
  out.push_back(add_kernel("moe residual add", rows, model.hidden_size, model.num_shared_experts > 0 ? 3 : 2));
  return out;
}

std::int64_t vocab_per_gpu(const MoeModel& model, const LayerShape& shape) {
  if (model.vocab_size < 1) fail(model, "vocab_size", "must be > 0, got " + std::to_string(model.vocab_size));
  const std::int64_t multiple = kVocabDivisor * shape.tp;
  const std::int64_t padded = (model.vocab_size + multiple - 1) / multiple * multiple;
  return padded / shape.tp;
}

std::vector<Kernel> embedding_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  vocab_per_gpu(model, shape);  // validates the vocabulary
  const auto tokens = static_cast<double>(shape.tokens());
  const auto h = static_cast<double>(model.hidden_size);
  const double bytes = kTokenIdBytes * tokens + kBf16Bytes * tokens * h / shape.tp + kBf16Bytes * tokens * h;
  Kernel kernel = bytes_kernel("embedding", bytes, OpKind::kPermute);
  kernel.is_backward_weight_gradient = true;
  return {kernel};
}

std::vector<Kernel> head_kernels(const MoeModel& model, const LayerShape& shape) {
  check_shape(model, shape);
  const std::int64_t vocab = vocab_per_gpu(model, shape);
  const std::int64_t tokens = shape.tokens();
  std::vector<Kernel> out;
  out.push_back(norm_kernel("final norm", tokens / shape.tp, model.hidden_size));
  out.push_back(gemm_kernel("lm head", tokens, vocab, model.hidden_size, Precision::kBf16));
  out.push_back(bytes_kernel("loss", (kBf16Bytes + kFp32Bytes) * static_cast<double>(tokens) * vocab));
  return out;
}

}  // namespace

std::vector<LayerOp> attention_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(attention_kernels(model, shape));
}
std::vector<LayerOp> attention_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(attention_kernels(model, shape));
}

std::vector<LayerOp> dense_ffn_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(dense_ffn_kernels(model, shape));
}
std::vector<LayerOp> dense_ffn_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(dense_ffn_kernels(model, shape));
}

std::vector<LayerOp> router_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(router_kernels(model, shape));
}
std::vector<LayerOp> router_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(router_kernels(model, shape));
}

std::vector<LayerOp> experts_forward(const MoeModel& model, const LayerShape& shape,
                                     const std::vector<std::int64_t>& tokens_per_local_expert) {
  return forward_of(experts_kernels(model, shape, tokens_per_local_expert));
}
std::vector<LayerOp> experts_backward(const MoeModel& model, const LayerShape& shape,
                                      const std::vector<std::int64_t>& tokens_per_local_expert) {
  return backward_of(experts_kernels(model, shape, tokens_per_local_expert));
}

std::vector<LayerOp> shared_experts_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(shared_experts_kernels(model, shape));
}
std::vector<LayerOp> shared_experts_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(shared_experts_kernels(model, shape));
}

std::vector<LayerOp> combine_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(combine_kernels(model, shape));
}
std::vector<LayerOp> combine_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(combine_kernels(model, shape));
}

std::vector<LayerOp> embedding_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(embedding_kernels(model, shape));
}
std::vector<LayerOp> embedding_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(embedding_kernels(model, shape));
}

std::vector<LayerOp> head_forward(const MoeModel& model, const LayerShape& shape) {
  return forward_of(head_kernels(model, shape));
}
std::vector<LayerOp> head_backward(const MoeModel& model, const LayerShape& shape) {
  return backward_of(head_kernels(model, shape));
}

LayerOp optimizer_step(std::int64_t num_params) {
  if (num_params < 0) {
    throw std::invalid_argument("optimizer step: num_params must be >= 0, got " + std::to_string(num_params));
  }
  Op op;
  op.kind = OpKind::kElementwise;
  op.precision = Precision::kFp32;
  op.bytes = (kAdamReadBytesPerParam + kAdamWrittenBytesPerParam) * static_cast<double>(num_params);
  return {"optimizer step", op};
}

// Model FLOPs per token of a training step, for MFU (PaLM, Chowdhery et al. 2022, appendix B: 6 N + 12 L H Q T
// FLOPs per token; Megatron's MFU, Korthikanti et al. 2022: the model's FLOPs, recomputation not counted):
//
//   6 N_mm + 6 L s H (d_qk + d_v) / 2
//
// 6 = 2 FLOPs a multiply-add x 3 passes (forward, input gradient, weight gradient). N_mm is the activated parameters
// of the matrix multiplications a token goes through: per layer the attention's projections (model.hpp's count less
// MLA's two latent norms), a dense layer's FFN, or an MoE layer's top-k routed experts, shared experts and router;
// plus the LM head's V x h, counted even when tied to the embedding (the GEMM runs either way); the embedding lookup
// and the norms do no matrix multiplication. The attention term: per token, layer and head, QK^T is 2 s d_qk FLOPs
// and PV 2 s d_v; PaLM counts the whole score matrix (its 12 L H Q T is this with d_qk = d_v = Q and no halving);
// causal masking halves it, as NeMo's flops formulas do (causal_self_attn). MTP modules are not counted.
double model_flops_per_token(const MoeModel& model, std::int64_t seq_len) {
  if (seq_len < 1) fail(model, "seq_len", "must be >= 1, got " + std::to_string(seq_len));
  const std::int64_t latent_norms =
      model.attention == AttentionKind::kMla ? std::int64_t{model.q_lora_rank} + model.kv_lora_rank : 0;
  const auto attention = static_cast<double>(model.num_attention_params() - latent_norms);
  const double dense_layer = attention + static_cast<double>(model.num_dense_ffn_params());
  const double moe_layer = attention + static_cast<double>(model.num_topk) * model.num_expert_params() +
                           static_cast<double>(model.num_shared_expert_params() + model.num_router_params());
  const auto head = static_cast<double>(model.num_embedding_params());  // V x h
  const double matmul_params = model.num_dense_layers() * dense_layer + model.num_moe_layers() * moe_layer + head;
  const double core = static_cast<double>(model.num_layers) * static_cast<double>(seq_len) * model.num_attention_heads *
                      (model.qk_head_dim() + model.value_head_dim()) / 2.0;
  return 6.0 * matmul_params + 6.0 * core;
}

}  // namespace moesim::sim::step
