// The kernels of one transformer layer on one GPU, as roofline ops (sim/compute/roofline.hpp): what the step
// builder turns into compute tasks. FLOPs count a multiply-add as 2; bytes are HBM traffic (weights read once per
// kernel, activations read and written once), 2 bytes per element for BF16, 1 for FP8.
//
// The micro-batch: `sequences` sequences of `seq_len` tokens, T = sequences x seq_len tokens, processed by a TP
// group of `tp` GPUs: column- and row-parallel GEMMs split their weight dimension by tp (Megatron), attention
// heads are split by tp (KV heads too when tp divides them; when tp is a multiple of them, each rank holds the one
// KV head its query heads share), and MLA's down-projections are replicated on every TP rank (each computes them
// for all T tokens). Routed experts are split by etp along their intermediate dimension. Sequence parallelism
// (Megatron-Core requires it for MoE with tp > 1; workloads/memory.hpp's default): the GEMMs and the attention core
// see all T tokens (so do MLA's latent norms), while the residual stream's norms and adds, the router, permute
// and combine run on this GPU's T / tp, so tp must divide seq_len. The .cpp states every op's FLOPs and bytes.
//
// Backward: every GEMM costs its forward twice (input gradient and weight gradient, reported as separate ops so a
// schedule can defer the weight gradients); attention's core costs 2.5 x its forward FLOPs (FlashAttention-2's
// backward, which recomputes the scores); element-wise and data-movement kernels cost their forward bytes twice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/compute/roofline.hpp"
#include "workloads/model.hpp"

namespace moesim::sim::step {

struct LayerShape {
  std::int64_t sequences = 1;
  std::int64_t seq_len = 4096;
  int tp = 1;
  int etp = 1;
  compute::Precision gemm_precision = compute::Precision::kBf16;  // FP8 training (DeepSeek-V3) or BF16
  // Decode: the keys each sequence already has in its KV cache; the step's seq_len new tokens attend to those and
  // to the new tokens before them, and the core reads the cache from HBM. 0: training and prefill (causal
  // attention within the seq_len tokens). MLA is counted in its non-absorbed form (the same shapes as training),
  // which undercounts decode FLOPs but not the cache bytes that bound it.
  std::int64_t kv_cache_len = 0;

  std::int64_t tokens() const { return sequences * seq_len; }
};

struct LayerOp {
  std::string name;  // "qkv", "attention core", "o proj", "mlp up+gate", ...
  compute::Op op;
  bool is_weight_gradient = false;  // backward ops only: the weight-gradient half of a GEMM
};

// Forward and backward kernels of the attention block (input norm and residual add included), per GPU of the TP
// group. MHA/GQA: fused QKV projection, causal attention core, output projection; MLA: the query and key-value down-
// and up-projections (with the latents' norms), the core with qk_head_dim / value_head_dim, the output projection.
std::vector<LayerOp> attention_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> attention_backward(const workloads::MoeModel& model, const LayerShape& shape);

// A dense layer's FFN (post-attention norm and residual add included): up (and gate) projection, activation, down
// projection.
std::vector<LayerOp> dense_ffn_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> dense_ffn_backward(const workloads::MoeModel& model, const LayerShape& shape);

// An MoE layer's post-attention norm, router (gating GEMM over all experts, scores and top-k) and permute, before
// the dispatch.
std::vector<LayerOp> router_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> router_backward(const workloads::MoeModel& model, const LayerShape& shape);

// The routed experts of one EP rank, given the token copies each of its local experts received: grouped GEMMs
// (up+gate, activation, down), split by etp.
std::vector<LayerOp> experts_forward(const workloads::MoeModel& model, const LayerShape& shape,
                                     const std::vector<std::int64_t>& tokens_per_local_expert);
std::vector<LayerOp> experts_backward(const workloads::MoeModel& model, const LayerShape& shape,
                                      const std::vector<std::int64_t>& tokens_per_local_expert);

// The shared experts (dense FFNs every token passes through), split by tp; empty without shared experts.
std::vector<LayerOp> shared_experts_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> shared_experts_backward(const workloads::MoeModel& model, const LayerShape& shape);

// Unpermute and the weighted combine of the copies that came back (T / tp x top-k rows into T / tp), then the MoE
// block's residual add (which also adds the shared experts' output).
std::vector<LayerOp> combine_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> combine_backward(const workloads::MoeModel& model, const LayerShape& shape);

// The embedding lookup (first stage) and the final norm, LM head and loss (last stage), split by tp (vocabulary
// parallel).
std::vector<LayerOp> embedding_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> embedding_backward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> head_forward(const workloads::MoeModel& model, const LayerShape& shape);
std::vector<LayerOp> head_backward(const workloads::MoeModel& model, const LayerShape& shape);

// The optimizer step on `num_params` parameters held by this GPU (Adam: read parameter, gradient and two states,
// write parameter and states, in the precisions given by the memory model's defaults: fp32 master weights, states
// and gradients, and the BF16 copy of the weights written back: 30 bytes a parameter), as one element-wise op.
LayerOp optimizer_step(std::int64_t num_params);

// Model FLOPs per token of a training step (forward + backward, no recomputation, MTP modules not counted), for
// MFU: 6 x the activated parameters of the matrix multiplications (embedding lookup excluded, LM head included) +
// the attention core's 6 x layers x seq_len x heads x (qk_head_dim + value_head_dim) / 2, the / 2 for causal
// masking (per token, layer and head: QK^T 2 seq_len qk_head_dim and PV 2 seq_len value_head_dim FLOPs, x 3 for
// the backward). The .cpp states the formula and its sources (PaLM's appendix B, Megatron's MFU definition).
double model_flops_per_token(const workloads::MoeModel& model, std::int64_t seq_len);

}  // namespace moesim::sim::step
