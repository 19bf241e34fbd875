// An MoE model: what one MoE layer's All-to-All needs (hidden size, experts, top-k, wire dtypes), and the rest of
// the architecture that a whole step and its memory need (attention, dense layers, embeddings, MTP).
//
// Presets carry the values of the published configs (Hugging Face config.json of each model, or the paper);
// custom models come from a model YAML or directly from a Hugging Face config.json. The model YAML, with each
// key's [default] and unit (counts are plain integers, sizes are in channels, i.e. elements of a vector):
//
//   base: deepseek-v3          # [none] start from a preset and override keys (see "Base" below)
//   name: my-moe               # [the file's name]
//   hidden_size: 4096          # required without base: channels of the residual stream
//   num_experts: 64            # required without base: routed experts per MoE layer
//   num_topk: 6                # required without base: experts per token, <= num_experts
//   num_shared_experts: 2      # [0] experts every token passes through, beside its routed ones
//   moe_intermediate_size: 1408   # required without base: channels inside one routed expert
//   shared_expert_intermediate_size: 5632  # [moe_intermediate_size] channels inside one shared expert
//   num_layers: 28             # required without base: all layers, dense ones included
//   first_k_dense: 1           # [0] dense layers before the first MoE layer (DeepSeek's first_k_dense_replace)
//   moe_layer_period: 1        # [1] after those, every this-many-th layer is MoE (1: all; Switch: 2)
//   intermediate_size: 10944   # [0] channels of a dense layer's FFN; required (> 0) when there are dense layers
//   gated_ffn: true            # [true] FFNs are gated (SwiGLU: gate, up, down), false: two matrices (T5, Switch)
//   attention: gqa             # [derived] mha | gqa | mla: mla when kv_lora_rank > 0, else gqa when
//                              #   num_key_value_heads < num_attention_heads, else mha
//   num_attention_heads: 16    # [0: attention not described; parameter counts refuse]
//   num_key_value_heads: 4     # [num_attention_heads] must divide num_attention_heads; mla: = num_attention_heads
//   head_dim: 128              # [hidden_size / num_attention_heads] channels per head; mha and gqa only
//   q_lora_rank: 1536          # [0: no query compression] mla only: channels of the compressed query
//   kv_lora_rank: 512          # [0] mla only (> 0 means mla): channels of the compressed key-value latent
//   qk_nope_head_dim: 128      # [0] mla only: channels per head of the query and key without RoPE
//   qk_rope_head_dim: 64       # [0] mla only: channels per head with RoPE (the key's are shared by all heads)
//   v_head_dim: 128            # [0] mla only: channels per head of the value
//   vocab_size: 102400         # [0: embeddings not described; parameter counts refuse]: tokens
//   tie_word_embeddings: false # [false] the output head reuses the input embedding matrix
//   max_position_embeddings: 4096  # [0: unknown] tokens; informative (a workload's sequence length is its own)
//   num_mtp_layers: 0          # [0] multi-token prediction modules (DeepSeek-V3's num_nextn_predict_layers)
//   router_scoring: softmax    # [softmax] softmax | sigmoid: how the router turns logits into scores
//   num_expert_groups: 0       # [0: none] group-limited routing: experts in this many groups (n_group) ...
//   num_topk_groups: 0         # [0] ... each token's experts from its best this many groups (topk_group)
//   dispatch_dtype: fp8        # [bf16] fp8 | bf16 | fp16 | fp32
//   dispatch_scale_block: 128  # [0: none] fp8 only: one fp32 scale per this many channels
//   combine_dtype: bf16        # [bf16]
//   tokens_per_rank: 8192      # [unset] the workload's tokens per rank, used unless a scenario or flag says
//
// Layers. Layers are numbered 0 .. num_layers - 1, and layer i is an MoE layer when i >= first_k_dense and
// (i - first_k_dense) % moe_layer_period == 0; every other layer has a dense FFN of intermediate_size. This one
// rule spells each family's exactly: DeepSeek's first_k_dense_replace k and moe_layer_freq f (MoE when i >= k and
// i % f == 0: first_k_dense = the first multiple of f at or after k), Qwen's decoder_sparse_step s (MoE when
// (i + 1) % s == 0: first_k_dense s - 1) and Switch's sparse step s (MoE when i % s == 1: first_k_dense 1).
// A model has at least one MoE layer. MoE layers are also numbered 0 .. num_moe_layers() - 1 among themselves:
// routing's `layer` is that index.
//
// Base. Keys not given keep the preset's values, with two exceptions that keep an override from leaving a stale
// shape behind: num_key_value_heads, head_dim and shared_expert_intermediate_size are derived again from the
// overridden keys where the preset's value was itself the derived default (an mha preset stays mha with more
// heads, Mixtral's head_dim follows hidden_size, Qwen3's stated head_dim stays), and attention mha or gqa (or
// kv_lora_rank 0) on an mla preset drops its MLA keys. Loaded models store these values resolved.
//
// Parameters (the weights a checkpoint stores, counted, not sized; biases are none in these families):
//   attention, mha/gqa:  hidden x (heads + 2 kv_heads) x head_dim  (q, k, v)  +  heads x head_dim x hidden  (o)
//   attention, mla (DeepSeek-V2 sec. 2.1, V3 sec. 2.1.1):
//     query: hidden x q_lora + q_lora (its norm) + q_lora x heads x (nope + rope); without compression
//            (q_lora 0) hidden x heads x (nope + rope)
//     key-value: hidden x (kv_lora + rope) (the latent and the shared RoPE key) + kv_lora (its norm)
//                + kv_lora x heads x (nope + v) (keys and values up)
//     output: heads x v x hidden
//   FFN: (3 if gated else 2) x hidden x width; an MoE layer holds num_experts routed experts, the shared experts and
//     a router of hidden x num_experts; a layer adds two norms of hidden; the model adds a final norm of hidden,
//     vocab x hidden of embedding and, unless tied, vocab x hidden of output head.
//   MTP module (DeepSeek-V3 sec. 2.2): one MoE layer, a projection of 2 hidden x hidden and three norms of hidden;
//     its embedding and output head are the main model's. Counted apart: published totals leave it out.
// Activated parameters are those one token uses: all of them but the routed experts it does not choose (so the
// embedding table counts whole, as Mistral's and Qwen's published active counts do; DeepSeek's README leaves the
// embedding out: num_activated_params() - num_embedding_params()). Not counted: Qwen3's per-head query/key norms
// (2 x head_dim a layer), DeepSeek-V3's router bias (num_experts a layer), T5's relative position buckets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace moesim::workloads {

enum class DType { kFp8, kBf16, kFp16, kFp32 };
const char* dtype_name(DType dtype);
int dtype_bytes(DType dtype);

enum class AttentionKind { kMha, kGqa, kMla };
const char* attention_kind_name(AttentionKind kind);

enum class RouterScoring { kSoftmax, kSigmoid };
const char* router_scoring_name(RouterScoring scoring);

struct MoeModel {
  std::string source;  // preset name or file, for messages
  std::string name;
  int hidden_size = 0;
  int num_experts = 0;
  int num_topk = 0;
  int num_shared_experts = 0;
  int moe_intermediate_size = 0;
  int shared_expert_intermediate_size = 0;  // the loaders resolve it (moe_intermediate_size unless stated)
  int num_layers = 0;
  int first_k_dense = 0;
  int moe_layer_period = 1;
  int intermediate_size = 0;  // dense layers' FFN; 0 only when there are none
  bool gated_ffn = true;

  AttentionKind attention = AttentionKind::kMha;
  int num_attention_heads = 0;  // 0: attention not described
  int num_key_value_heads = 0;  // resolved by the loaders; mla: num_attention_heads
  int head_dim = 0;             // mha/gqa, resolved by the loaders; 0 for mla (see qk_head_dim())
  int q_lora_rank = 0;
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;

  int vocab_size = 0;  // 0: embeddings not described
  bool tie_word_embeddings = false;
  int max_position_embeddings = 0;  // 0: unknown
  int num_mtp_layers = 0;
  RouterScoring router_scoring = RouterScoring::kSoftmax;
  int num_expert_groups = 0;  // 0: routing is not group-limited
  int num_topk_groups = 0;

  DType dispatch_dtype = DType::kBf16;
  int dispatch_scale_block = 0;  // channels per fp32 scale for fp8 dispatch; 0 = no scales
  DType combine_dtype = DType::kBf16;
  std::optional<std::int64_t> tokens_per_rank;  // a model file's default workload size; presets leave it unset

  // Bytes of one token copy on the wire: hidden x element size, plus scales for fp8 dispatch.
  double dispatch_bytes_per_token() const;
  double combine_bytes_per_token() const;

  // The layer rule above. DeepSeek-V3 (61 layers, first_k_dense 3, period 1): layers 3..60, 58 MoE layers;
  // switch-base-128 (24, 1, 2): layers 1, 3, ..., 23, 12 MoE layers.
  bool is_moe_layer(int layer_idx) const;
  int num_moe_layers() const;
  int num_dense_layers() const { return num_layers - num_moe_layers(); }

  // Channels per head of queries and keys (mla: nope + rope, 128 + 64 = 192 for DeepSeek-V3; mixtral: 4096 / 32 =
  // 128) and of values (mla: v_head_dim).
  int qk_head_dim() const;
  int value_head_dim() const;
  // Elements one token leaves in one layer's KV cache: mha/gqa keys and values, 2 x kv_heads x head_dim (Mixtral:
  // 2 x 8 x 128 = 2048); mla the latent and the shared RoPE key, kv_lora + rope (DeepSeek-V3: 512 + 64 = 576).
  std::int64_t kv_cache_elements_per_token() const;

  // Parameter counts (formulas above). Those that need the attention or the vocabulary throw
  // std::invalid_argument naming the model and the missing key when the model leaves it at 0.
  // Mixtral: 4096 x (32 + 2 x 8) x 128 + 32 x 128 x 4096 = 41,943,040.
  std::int64_t num_attention_params() const;
  // One routed expert. Mixtral: 3 x 4096 x 14336 = 176,160,768.
  std::int64_t num_expert_params() const;
  // All shared experts of one MoE layer. DeepSeek-V3: 1 x 3 x 7168 x 2048 = 44,040,192.
  std::int64_t num_shared_expert_params() const;
  // Router (gate) of one MoE layer: hidden x num_experts. DeepSeek-V3: 7168 x 256 = 1,835,008.
  std::int64_t num_router_params() const;
  // FFN of one dense layer. DeepSeek-V3: 3 x 7168 x 18432 = 396,361,728.
  std::int64_t num_dense_ffn_params() const;
  // Whole layers: attention, FFN and two norms. Mixtral MoE layer: 41,943,040 + 8 x 176,160,768 + 32,768 + 8,192
  // = 1,451,270,144; activated (top-2 experts): 41,943,040 + 2 x 176,160,768 + 32,768 + 8,192 = 394,305,536.
  std::int64_t num_dense_layer_params() const;
  std::int64_t num_moe_layer_params() const;
  std::int64_t num_activated_moe_layer_params() const;
  // Input embedding (vocab x hidden) and output head (the same, or 0 when tied). Mixtral: 32000 x 4096 each.
  std::int64_t num_embedding_params() const;
  std::int64_t num_head_params() const;
  // The main model: layers, final norm, embedding and head, without MTP. Mixtral: 32 x 1,451,270,144 + 4,096 +
  // 2 x 131,072,000 = 46,702,792,704 (published: 46.7B); activated 32 x 394,305,536 + 4,096 + 262,144,000 =
  // 12,879,925,248 (published: 12.9B).
  std::int64_t num_params() const;
  std::int64_t num_activated_params() const;
  // The MTP modules' own parameters. DeepSeek-V3: 11,507,286,016 (an MoE layer) + 2 x 7168 x 7168 + 3 x 7168 =
  // 11,610,067,968.
  std::int64_t num_mtp_params() const;
};

struct ModelPresetInfo {
  std::string name;
  std::string summary;  // "hidden 7168, 256 experts, top-8, 1 shared, mla (DeepSeek-V3 config.json)"
};

// mixtral-8x7b, deepseek-v3, qwen3-30b-a3b, switch-base-128.
std::vector<ModelPresetInfo> model_presets();

// A preset name, a model YAML, or a Hugging Face config.json (recognised by the .json extension). Throws
// std::invalid_argument naming the file, the key and what was expected.
MoeModel load_model(const std::string& name_or_path);
// Reads and validates a model mapping (a file's content or an inline `model:` mapping of a scenario).
MoeModel parse_model(const YAML::Node& node, const std::string& source);

}  // namespace moesim::workloads
