// GPU memory of a training or inference step under a parallel layout, per GPU, by what holds it.
//
// Theory of operation. Every GPU of a pipeline stage holds the same amount (up to rounding), so memory_per_gpu
// computes each stage and returns the busiest: the first stage keeps the most micro-batches in flight, the last holds
// the output head (and MTP); which one wins depends on the model. Bytes are doubles: ZeRO shards are P / N exactly
// (Megatron pads its buffers to a multiple of N; the difference is below one bucket). Notation: t = tp, e = etp,
// d = dp, D = edp = d t / (ep e), h = hidden_size, a = attention heads, g = KV heads, E = experts, k = top-k,
// v = vocabulary, s = sequence length, b = mbs, m = micro-batches per step, c = 6 for a gated FFN (SwiGLU) and
// 4 otherwise (see activations), t_sp = t with sequence parallelism and 1 without.
//
// Parameters per GPU (counts; model.hpp has the per-layer totals):
//   attention (mha/gqa): h a d_qk / t (q) + 2 h g_r d_qk (k, v) + a d_v h / t (o), g_r = max(g / t, 1) KV heads on
//     a rank (replicated when t > g);
//   attention (mla): the down projections and their norms h q_lora + q_lora + h (kv_lora + rope) + kv_lora are
//     whole on every TP rank (Megatron-Core builds them duplicated), the up projections q_lora a d_qk / t (h a d_qk / t
//     without q compression) and kv_lora a (nope + v) / t and the output a v h / t are split;
//   two norms of h per layer, whole; a dense FFN / t; an MoE layer's router h E (whole) + shared experts / t
//     + routed experts (E / ep) x expert / e;
//   embedding v_pad h / t on the first stage, v_pad = v rounded up to a multiple of 128 t (Megatron's
//     --make-vocab-size-divisible-by 128); the output head v_pad h / t (untied) and the final norm h on the last
//     stage; with pp > 1 the last stage also keeps a copy of the embedding when it is tied to the head or an MTP
//     module needs it (Megatron-Core shares it across the two stages);
//   MTP (training only; the last stage): per module one MoE layer as above, 2 h h / t of projection, 3 h of norms.
//   Routed experts are "expert" parameters (sharded over edp), everything else "dense" (sharded over dp).
//
// Training bytes, for P_dense and P_expert per GPU, from the ZeRO paper (Rajbhandari et al. 2020, sec. 3-5; its
// K = 12 bytes of optimizer state for mixed-precision Adam is master 4 + m 4 + v 4):
//   parameters        = param_bytes x (P_dense / z3(d) + P_expert / z3(D)) + with ZeRO-3 the largest layer of the
//                       stage gathered whole (param_bytes x its per-GPU count, one layer prefetched);
//   gradients         = grad_bytes x (P_dense / z2(d) + P_expert / z2(D));
//   optimizer_states  = (master + states x state_bytes) x (P_dense / z1(d) + P_expert / z1(D)), master = 4 with
//                       master_weights and a 16-bit param dtype, else 0; Adam: states 2 (m, v) of fp32;
//   where zN(n) = n when zero_stage >= N and 1 otherwise (1: optimizer states, 2: + gradients, 3: + parameters).
//   Inference keeps only parameters (no ZeRO, no MTP module).
//
// Activations (training), from Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models"
// (MLSys 2023, arXiv 2205.05198), sec. 4: one transformer layer stores s b h (34 + 5 a s / h) bytes with 16-bit
// activations and 1-byte dropout masks; sequence parallelism (sec. 4.2.2) divides all of it by t. We keep its terms,
// per token of the micro-batch, and generalise the parts that GQA, MLA, SwiGLU and MoE change (bytes, per GPU):
//   attention block  2h/t_sp (norm input) + 2h/t_sp (projection input) + h/t_sp (dropout mask) + 2 a d_v / t (the
//                    output projection's input) + Q, K, V:
//                      mha/gqa: 2 a d_qk / t + 2 g_r d_qk + 2 g_r d_v  (MHA: 6h / t, Korthikanti's 4sbh + 2sbh)
//                      mla:     2 a d_qk / t (Q) + 2 a d_qk / t (K, the shared RoPE key broadcast) + 2 a d_v / t (V)
//                               + 4 q_lora + 4 kv_lora + 2 rope (the latents, whole on every TP rank: each is both
//                               a norm's input and an up projection's input, as Korthikanti counts LN and linear
//                               inputs apart)
//                    + scores 5 a s / t (softmax output 2, dropout mask 1, dropout output 2 per score);
//   dense FFN block  2h/t_sp (norm input) + 2h/t_sp (first linear's input) + c f / t + h/t_sp (dropout mask), with
//                    c f = the activation's input(s) in 16 bits (gated: gate and up 4f, non-gated 2f) + the second
//                    linear's input 2f: GeLU with f = 4h gives Korthikanti's 16h, so a non-gated MHA layer is
//                    exactly s b h (34 + 5 a s / h) / t;
//   MoE FFN block    2h/t_sp (norm input) + 2h/t_sp (the norm's output: router and shared expert input) + 4E/t_sp
//                    (fp32 router probabilities) + shared experts n_sh c f_sh / t + h/t_sp (dropout mask) + routed
//                    lambda k (4h e + c f_moe) / t_sp: each of the rank's tokens sends k copies, and under
//                    balanced routing the rank computes as many copies as its tokens sent (the copies of the EP
//                    group's tokens spread over ep ranks), times lambda = moe_load_imbalance for the busiest rank;
//                    etp gathers the ETP group's copies (x e) and splits f (/ e); a copy keeps its permuted input 2h,
//                    its FFN intermediates c f_moe / e and its output 2h (for the probability-weighted combine).
//   selective recompute drops the 5 a s / t scores (Korthikanti sec. 5; FlashAttention never stores them either,
//   so use selective to model it); full recompute keeps only each layer's input, 2h/t_sp per token.
//   Per stage: (in-flight micro-batches) x s b x (the sum over the stage's layers), plus, from Korthikanti sec. 4.3,
//   the first stage's embedding dropout mask h/t_sp and the last stage's final norm and output layer
//   4h/t_sp + 4v/t (fp32 logits for the loss) per token; each MTP module adds one MoE layer, its 4h/t_sp projection
//   input and its own 4h/t_sp + 4v/t output layer.
//   In flight on pipeline rank r (1F1B, Narayanan et al. 2021): min(pp - r, m) micro-batches, so pp on the first
//   stage; interleaved (vpp > 1) Megatron's warm-up gives min(2 (pp - r - 1) + (vpp - 1) pp + 1, m vpp) chunks of
//   1/vpp of the stage's layers each, pp (1 + (pp - 1) / (pp vpp)) micro-batches' worth on the first stage
//   (Korthikanti sec. 4.2.3). MemoryOptions::in_flight_microbatches overrides it for other schedules (GPipe: m).
//
// Inference (prefill: T = batch x s tokens attending to s keys; decode: T = batch tokens attending to
// context_length keys, batch = inference_batch sequences per model replica): activations are the working set of
// one layer's forward, the largest layer of the stage with the formulas above at T tokens (the scores term with the
// key count in place of s; recompute selective or full drops it, as FlashAttention does), plus the last stage's
// output layer; no micro-batches are kept.
//   KV cache = layers of the stage x batch x keys x kv_bytes x per-GPU elements per token, from
//   model.kv_cache_elements_per_token(): mha/gqa 2 g d, of which a TP rank holds 2 g_r d; mla kv_lora + rope (the
//   compressed latent and the shared RoPE key), whole on every TP rank (each rank's heads expand the whole latent).
//
// All-to-All buffers (DeepEP-style, allocated once per GPU and reused by every MoE layer and micro-batch; none when
// ep = 1 or the stage has no MoE layer): with T_r = tokens of the micro-batch on the rank (s b / t_sp; inference
// T / t_sp), each token sends at most k copies (no node deduplication) and the busiest rank receives lambda x as
// many:  a2a = T_r k (1 + lambda) (dispatch_bytes + combine_bytes), dispatch_bytes and combine_bytes per token
// copy from the model (FP8 with scales or BF16; model.hpp): dispatch send + receive, combine send + receive.
//
// Headroom (fits): total + reserve_bytes <= capacity. reserve_bytes is a placeholder (default 4 GiB) for what this
// model leaves out: the CUDA context and kernels' workspaces (about 0.5-1 GiB), NCCL's own buffers, temporary
// tensors (e.g. the gathered weights of TP communication overlap), and allocator fragmentation.
#pragma once

#include <cstdint>
#include <string>

#include "workloads/layout.hpp"
#include "workloads/model.hpp"

namespace moesim::workloads {

enum class Recompute { kNone, kSelective, kFull };
// "none", "selective", "full".
const char* recompute_name(Recompute recompute);
Recompute parse_recompute(const std::string& name);

enum class StepMode { kTrain, kPrefill, kDecode };
// "train", "prefill", "decode".
const char* step_mode_name(StepMode mode);
StepMode parse_step_mode(const std::string& name);

inline constexpr double kDefaultMemoryReserveBytes = 4.0 * 1024 * 1024 * 1024;  // a placeholder; see the header

struct MemoryOptions {
  StepMode mode = StepMode::kTrain;
  std::int64_t seq_length = 4096;  // tokens per sequence (training); prefill: the prompt length
  // ZeRO stage 0..3: 0 none, 1 optimizer states sharded (Megatron's distributed optimizer), 2 + gradients,
  // 3 + parameters. Dense parameters shard over dp, expert parameters over edp.
  int zero_stage = 1;
  DType param_dtype = DType::kBf16;
  DType grad_dtype = DType::kFp32;  // Megatron accumulates gradients in fp32 main_grad buffers
  bool master_weights = true;       // an fp32 copy of the weights when param_dtype is 16-bit
  int optimizer_states = 2;         // Adam: first and second moments
  DType optimizer_state_dtype = DType::kFp32;
  Recompute recompute = Recompute::kNone;
  bool sequence_parallel = true;      // Megatron-Core requires it for MoE with tp > 1
  double moe_load_imbalance = 1.0;    // lambda >= 1: the busiest rank's routed copies over the mean
  double in_flight_microbatches = 0;  // 0: 1F1B's (interleaved with vpp > 1); else this many on every stage
  std::int64_t inference_batch = 1;   // prefill/decode: sequences served at once by one model replica
  std::int64_t context_length = 0;    // decode: keys per sequence in the KV cache; 0: seq_length
  DType kv_cache_dtype = DType::kBf16;
  double reserve_bytes = kDefaultMemoryReserveBytes;
};

struct MemoryBreakdown {
  int pp_idx = 0;  // the pipeline stage this breakdown is of
  double in_flight_microbatches = 0;
  double parameters = 0;
  double gradients = 0;
  double optimizer_states = 0;
  double activations = 0;
  double a2a_buffers = 0;
  double kv_cache = 0;
  double total = 0;
};

// Checks the options (zero_stage 0..3, seq_length >= 1, optimizer_states >= 0, moe_load_imbalance >= 1,
// in_flight_microbatches >= 0, inference_batch >= 1, context_length >= 0, reserve_bytes >= 0); throws
// std::invalid_argument "memory: KEY: must be ..., got ...".
void validate_memory_options(const MemoryOptions& options);

// Bytes one layer keeps for the backward pass per micro-batch of the layout, per GPU (training formulas above,
// with options.recompute). is_moe_layer picks the FFN block.
double layer_activation_bytes(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options,
                              bool is_moe_layer);

// Parameters one GPU holds, as the memory model counts them (so the step's gradient reductions and optimizer move
// what memory_of_stage stores): dense ones (attention with the layer's norms, the router whole, shared experts or
// the dense FFN split by tp) and routed-expert ones (num_experts / ep experts split by etp).
struct HeldParameters {
  double dense = 0;
  double expert = 0;
};
HeldParameters layer_params_per_gpu(const MoeModel& model, const ParallelLayout& layout, int layer);
// The vocabulary-parallel embedding table (padded vocabulary x hidden / tp), the same size as the untied head's.
double embedding_params_per_gpu(const MoeModel& model, const ParallelLayout& layout);

// Micro-batches' worth of activations pipeline rank pp_idx keeps at its peak (header), before any override.
double in_flight_microbatches(const ParallelLayout& layout, int pp_idx);

// One pipeline stage's GPUs. Validates the layout (validate_layout with dp x tp x pp GPUs) and the options.
MemoryBreakdown memory_of_stage(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options,
                                int pp_idx);
// The busiest GPU: the stage with the largest total (the lowest stage on a tie).
MemoryBreakdown memory_per_gpu(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options);

// memory_per_gpu(...).total + options.reserve_bytes <= gpu_capacity_bytes.
bool fits(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options, double gpu_capacity_bytes);

}  // namespace moesim::workloads
