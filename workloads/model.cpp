// MoE model descriptions: presets, model YAML and Hugging Face config.json.
//
// Theory of operation. A model reaches the simulator by one of three doors, all ending in the same MoeModel:
//   - a preset: the values of the model's published Hugging Face config.json, typed in below (the source of
//     each is named beside it) so that no network access is ever needed;
//   - a model YAML (schema in model.hpp), read through ConfigMap so that every key has one type, one default
//     and one range, and unknown keys are errors; `base: <preset>` starts from a preset and overrides keys;
//   - a Hugging Face config.json, read with yaml-cpp (JSON is YAML). That file is not our format: its keys vary
//     between model families, so we map the synonyms we know and ignore every other key, but a missing required
//     value or an inconsistent one is still an error naming the file and the key.
// Both files end in one consistency check (check_architecture), which names each file's own spelling of a key.
// Bytes per token and parameter counts are derived, never stored, so an override of hidden_size or a dtype
// cannot leave them stale. The few defaults that derive from other keys (num_key_value_heads, head_dim,
// shared_expert_intermediate_size) are stored resolved, so readers see plain numbers; with a base, such a value
// is derived again from the overridden keys when the base's value was itself the derived default.
#include "workloads/model.hpp"

#include <filesystem>
#include <initializer_list>
#include <limits>
#include <stdexcept>

#include "common/config.hpp"

namespace moesim::workloads {
namespace {

constexpr std::int64_t kMaxInt = std::numeric_limits<int>::max();
constexpr int kScaleBytes = 4;     // fp8 scales are fp32
constexpr int kNormsPerLayer = 2;  // before attention and before the FFN
constexpr int kMtpNorms = 3;       // an MTP module's two input norms (enorm, hnorm) and its output norm

struct Preset {
  MoeModel model;
  std::string origin;  // where the numbers come from, for the summary
};

MoeModel make_model(const char* name, int hidden_size, int num_experts, int num_topk, int num_shared_experts,
                    int moe_intermediate_size, int num_layers) {
  MoeModel model;
  model.source = name;
  model.name = name;
  model.hidden_size = hidden_size;
  model.num_experts = num_experts;
  model.num_topk = num_topk;
  model.num_shared_experts = num_shared_experts;
  model.moe_intermediate_size = moe_intermediate_size;
  model.shared_expert_intermediate_size = moe_intermediate_size;
  model.num_layers = num_layers;
  return model;
}

void set_attention(MoeModel& model, AttentionKind kind, int num_attention_heads, int num_key_value_heads,
                   int head_dim) {
  model.attention = kind;
  model.num_attention_heads = num_attention_heads;
  model.num_key_value_heads = num_key_value_heads;
  model.head_dim = head_dim;
}

std::vector<Preset> presets() {
  std::vector<Preset> out;
  // huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json: hidden_size 4096, num_local_experts 8,
  // num_experts_per_tok 2, intermediate_size 14336 (each expert is a full FFN), num_hidden_layers 32 (all MoE),
  // num_attention_heads 32, num_key_value_heads 8 (no head_dim key: 4096 / 32 = 128), vocab_size 32000,
  // max_position_embeddings 32768, tie_word_embeddings false; softmax router.
  MoeModel mixtral = make_model("mixtral-8x7b", 4096, 8, 2, 0, 14336, 32);
  set_attention(mixtral, AttentionKind::kGqa, 32, 8, 128);
  mixtral.intermediate_size = 14336;
  mixtral.vocab_size = 32000;
  mixtral.max_position_embeddings = 32768;
  out.push_back({mixtral, "Mixtral-8x7B config.json"});

  // huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json: hidden_size 7168, n_routed_experts 256,
  // num_experts_per_tok 8, n_shared_experts 1, moe_intermediate_size 2048, num_hidden_layers 61 of which the
  // first_k_dense_replace = 3 are dense (intermediate_size 18432, moe_layer_freq 1); MLA with
  // num_attention_heads 128 (num_key_value_heads 128), q_lora_rank 1536, kv_lora_rank 512, qk_nope_head_dim 128,
  // qk_rope_head_dim 64, v_head_dim 128; vocab_size 129280, max_position_embeddings 163840, tie_word_embeddings
  // false, num_nextn_predict_layers 1, scoring_func sigmoid, n_group 8, topk_group 4. The DeepSeek-V3 technical
  // report (sec. 3.3, and DeepEP) dispatches in FP8 with one FP32 scale per 128 channels and combines in BF16.
  MoeModel deepseek = make_model("deepseek-v3", 7168, 256, 8, 1, 2048, 61);
  set_attention(deepseek, AttentionKind::kMla, 128, 128, 0);
  deepseek.q_lora_rank = 1536;
  deepseek.kv_lora_rank = 512;
  deepseek.qk_nope_head_dim = 128;
  deepseek.qk_rope_head_dim = 64;
  deepseek.v_head_dim = 128;
  deepseek.first_k_dense = 3;
  deepseek.intermediate_size = 18432;
  deepseek.vocab_size = 129280;
  deepseek.max_position_embeddings = 163840;
  deepseek.num_mtp_layers = 1;
  deepseek.router_scoring = RouterScoring::kSigmoid;
  deepseek.num_expert_groups = 8;
  deepseek.num_topk_groups = 4;
  deepseek.dispatch_dtype = DType::kFp8;
  deepseek.dispatch_scale_block = 128;
  out.push_back({deepseek, "DeepSeek-V3 config.json, FP8 dispatch per the technical report"});

  // huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json: hidden_size 2048, num_experts 128,
  // num_experts_per_tok 8, moe_intermediate_size 768, num_hidden_layers 48 (decoder_sparse_step 1, mlp_only_layers
  // empty: all MoE), no shared expert, num_attention_heads 32, num_key_value_heads 4, head_dim 128, intermediate_size
  // 6144 (no dense layer uses it), vocab_size 151936, max_position_embeddings 40960, tie_word_embeddings false;
  // softmax router.
  MoeModel qwen = make_model("qwen3-30b-a3b", 2048, 128, 8, 0, 768, 48);
  set_attention(qwen, AttentionKind::kGqa, 32, 4, 128);
  qwen.intermediate_size = 6144;
  qwen.vocab_size = 151936;
  qwen.max_position_embeddings = 40960;
  out.push_back({qwen, "Qwen3-30B-A3B config.json"});

  // huggingface.co/google/switch-base-128/blob/main/config.json: d_model 768, num_experts 128, d_ff 3072 (experts
  // and dense layers alike, not gated: feed_forward_proj relu), num_heads 12, d_kv 64, vocab_size 32128, 12 encoder
  // (num_layers) and 12 decoder (num_decoder_layers) layers, every second one sparse (encoder_sparse_step and
  // decoder_sparse_step 2: layers 1, 3, ..., 11 of each stack); no tie_word_embeddings key, so the transformers
  // default (tied) holds, as in T5; relative positions, no max_position_embeddings. Switch routing is top-1 (the
  // config has no num_experts_per_tok). The step model is decoder-only, so the encoder-decoder is described as
  // its decoder-only equivalent: one stack of 24 layers, MoE at 1, 3, ..., 23 (12 MoE layers, as in the real
  // model); the decoder's cross-attention (4 x 768 x 768 per decoder layer) is not modelled.
  MoeModel switch_base = make_model("switch-base-128", 768, 128, 1, 0, 3072, 24);
  set_attention(switch_base, AttentionKind::kMha, 12, 12, 64);
  switch_base.first_k_dense = 1;
  switch_base.moe_layer_period = 2;
  switch_base.intermediate_size = 3072;
  switch_base.gated_ffn = false;
  switch_base.vocab_size = 32128;
  switch_base.tie_word_embeddings = true;
  out.push_back({switch_base, "switch-base-128 config.json, as a 24-layer decoder-only stack"});
  return out;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& preset : presets()) names.push_back(preset.model.name);
  return names;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::optional<MoeModel> find_preset(const std::string& name) {
  for (auto& preset : presets()) {
    if (preset.model.name == name) return preset.model;
  }
  return std::nullopt;
}

DType parse_dtype(const std::string& text) {
  if (text == "fp8") return DType::kFp8;
  if (text == "bf16") return DType::kBf16;
  if (text == "fp16") return DType::kFp16;
  return DType::kFp32;  // callers pass only names that ConfigMap::choice accepted
}

const std::vector<std::string>& dtype_names() {
  static const std::vector<std::string> names = {"fp8", "bf16", "fp16", "fp32"};
  return names;
}

const std::vector<std::string>& attention_names() {
  static const std::vector<std::string> names = {"mha", "gqa", "mla"};
  return names;
}

AttentionKind parse_attention(const std::string& text) {
  if (text == "gqa") return AttentionKind::kGqa;
  if (text == "mla") return AttentionKind::kMla;
  return AttentionKind::kMha;  // callers pass only names that ConfigMap::choice accepted
}

const std::vector<std::string>& scoring_names() {
  static const std::vector<std::string> names = {"softmax", "sigmoid"};
  return names;
}

RouterScoring parse_scoring(const std::string& text) {
  return text == "sigmoid" ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string str(std::int64_t value) {
  return std::to_string(value);
}

// Fails on the first of `keys` that the file states, else on the first: a message about a relation between keys
// points at the one the user wrote.
[[noreturn]] void fail_on(const ConfigMap& cfg, std::initializer_list<const char*> keys, const std::string& what) {
  for (const char* key : keys) {
    if (cfg.has(key)) cfg.fail(key, what);
  }
  cfg.fail(*keys.begin(), what);
}

// How the file being read spells each key that check_architecture may blame.
struct KeyNames {
  const char* hidden_size = "hidden_size";
  const char* attention = "attention";
  const char* num_experts = "num_experts";
  const char* num_topk = "num_topk";
  const char* num_layers = "num_layers";
  const char* first_k_dense = "first_k_dense";
  const char* moe_layer_period = "moe_layer_period";
  const char* intermediate_size = "intermediate_size";
  const char* num_attention_heads = "num_attention_heads";
  const char* num_key_value_heads = "num_key_value_heads";
  const char* kv_lora_rank = "kv_lora_rank";
  const char* qk_rope_head_dim = "qk_rope_head_dim";
  const char* qk_nope_head_dim = "qk_nope_head_dim";
  const char* v_head_dim = "v_head_dim";
  const char* num_expert_groups = "num_expert_groups";
  const char* num_topk_groups = "num_topk_groups";
};

// hidden_size / num_attention_heads, the default head_dim, when it divides.
int derived_head_dim(const ConfigMap& cfg, const KeyNames& keys, const char* head_dim_key, int hidden_size,
                     int num_attention_heads) {
  if (num_attention_heads == 0) return 0;
  if (hidden_size % num_attention_heads != 0) {
    fail_on(cfg, {head_dim_key},
            "missing: needed when " + std::string(keys.hidden_size) + " (" + str(hidden_size) +
                ") is not a multiple of " + keys.num_attention_heads + " (" + str(num_attention_heads) + ")");
  }
  return hidden_size / num_attention_heads;
}

// The relations between keys that both file formats must satisfy; ranges of single keys were checked on reading.
void check_architecture(const MoeModel& m, const ConfigMap& cfg, const KeyNames& keys) {
  if (m.num_moe_layers() < 1) {
    fail_on(cfg, {keys.first_k_dense, keys.num_layers},
            "leaves no MoE layer: the first MoE layer (" + str(m.first_k_dense) + ") must be < " + keys.num_layers +
                " (" + str(m.num_layers) + ")");
  }
  if (m.num_dense_layers() > 0 && m.intermediate_size < 1) {
    fail_on(cfg, {keys.intermediate_size, keys.first_k_dense, keys.moe_layer_period},
            "the dense layers' FFN size must be >= 1: " + str(m.num_dense_layers()) + " of the " + str(m.num_layers) +
                " layers are dense (first MoE layer " + str(m.first_k_dense) + ", moe_layer_period " +
                str(m.moe_layer_period) + "), got " + keys.intermediate_size + " " + str(m.intermediate_size));
  }

  const int heads = m.num_attention_heads;
  if (heads > 0) {
    const int kv_heads = m.num_key_value_heads;
    if (kv_heads < 1 || kv_heads > heads || heads % kv_heads != 0) {
      fail_on(cfg, {keys.num_key_value_heads, keys.num_attention_heads},
              std::string(keys.num_key_value_heads) + " (" + str(kv_heads) + ") must divide " +
                  keys.num_attention_heads + " (" + str(heads) + ")");
    }
  }
  if (m.attention == AttentionKind::kMla) {
    if (m.kv_lora_rank < 1) fail_on(cfg, {keys.kv_lora_rank, keys.attention}, "mla needs kv_lora_rank >= 1, got 0");
    if (m.qk_nope_head_dim + m.qk_rope_head_dim < 1) {
      fail_on(cfg, {keys.qk_rope_head_dim, keys.qk_nope_head_dim},
              "mla needs qk_nope_head_dim + qk_rope_head_dim >= 1, got 0");
    }
    if (m.v_head_dim < 1) fail_on(cfg, {keys.v_head_dim}, "mla needs v_head_dim >= 1, got 0");
    if (m.num_key_value_heads != heads) {
      // MLA keeps one latent per token, which every head expands: there are no key-value head groups.
      fail_on(cfg, {keys.num_key_value_heads},
              "mla has one key-value head per query head: must equal " + std::string(keys.num_attention_heads) + " (" +
                  str(heads) + "), got " + str(m.num_key_value_heads));
    }
  }

  const int groups = m.num_expert_groups;
  const int topk_groups = m.num_topk_groups;
  if (groups == 0 && topk_groups > 0) {
    fail_on(
        cfg, {keys.num_topk_groups},
        "needs " + std::string(keys.num_expert_groups) + " > 0, got " + str(topk_groups) + " without expert groups");
  }
  if (groups > 0) {
    if (m.num_experts % groups != 0) {
      fail_on(cfg, {keys.num_expert_groups, keys.num_experts},
              std::string(keys.num_expert_groups) + " (" + str(groups) + ") must divide " + keys.num_experts + " (" +
                  str(m.num_experts) + ")");
    }
    if (topk_groups < 1 || topk_groups > groups) {
      fail_on(cfg, {keys.num_topk_groups, keys.num_expert_groups},
              std::string(keys.num_topk_groups) + " must be in [1, " + str(groups) + "] with " + str(groups) +
                  " expert groups, got " + str(topk_groups));
    }
    const std::int64_t reachable = static_cast<std::int64_t>(topk_groups) * (m.num_experts / groups);
    if (reachable < m.num_topk) {
      fail_on(cfg, {keys.num_topk_groups, keys.num_topk},
              std::string(keys.num_topk_groups) + " (" + str(topk_groups) + ") groups of " +
                  str(m.num_experts / groups) + " experts hold fewer than " + keys.num_topk + " (" + str(m.num_topk) +
                  ") experts");
    }
  }
}

// The first of `keys` that the file states, or nullptr.
const char* first_present(const ConfigMap& cfg, std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    if (cfg.has(key)) return key;
  }
  return nullptr;
}

// A Hugging Face config.json. Each family spells the same quantity differently; the first key present wins.
MoeModel parse_hf_config(const std::string& path) {
  const YAML::Node root = load_yaml_file(path);
  const ConfigMap cfg(root, path);
  KeyNames keys;

  auto first_of = [&](std::initializer_list<const char*> names, std::int64_t min, const char** used) -> int {
    if (const char* key = first_present(cfg, names)) {
      if (used != nullptr) *used = key;
      return static_cast<int>(cfg.integer(key, std::nullopt, min, kMaxInt));
    }
    std::vector<std::string> list(names.begin(), names.end());
    throw std::invalid_argument(path + ": expected one of " + join(list));
  };
  auto integer_or = [&](const char* key, std::int64_t fallback, std::int64_t min) {
    return static_cast<int>(cfg.integer(key, fallback, min, kMaxInt));
  };

  MoeModel model;
  model.source = path;
  model.name = path;
  model.hidden_size = first_of({"hidden_size", "d_model"}, 1, &keys.hidden_size);
  model.num_experts = first_of({"num_local_experts", "n_routed_experts", "num_experts"}, 1, &keys.num_experts);
  keys.num_topk = "num_experts_per_tok";
  if (cfg.has("num_experts_per_tok")) {
    model.num_topk = static_cast<int>(cfg.integer("num_experts_per_tok", std::nullopt, 1, model.num_experts));
  } else {
    // Switch Transformers' configs have no top-k key because Switch routing is top-1 by definition; they are
    // recognised by num_experts together with the router_* settings.
    bool has_router_key = false;
    if (root.IsMap()) {
      for (const auto& entry : root) has_router_key |= entry.first.as<std::string>().rfind("router_", 0) == 0;
    }
    if (!cfg.has("num_experts") || !has_router_key) {
      throw std::invalid_argument(path +
                                  ": expected one of num_experts_per_tok (or a Switch config: num_experts and "
                                  "router_* keys, which means top-1)");
    }
    model.num_topk = 1;
  }
  model.moe_intermediate_size = first_of({"moe_intermediate_size", "intermediate_size", "d_ff"}, 1, nullptr);
  model.shared_expert_intermediate_size = model.moe_intermediate_size;
  if (cfg.has("n_shared_experts")) {
    model.num_shared_experts = integer_or("n_shared_experts", 0, 0);
  } else if (cfg.has("shared_expert_intermediate_size")) {
    // Qwen2-MoE style: one shared expert, described by its size rather than a count.
    const int size = integer_or("shared_expert_intermediate_size", 0, 0);
    model.num_shared_experts = size > 0 ? 1 : 0;
    if (size > 0) model.shared_expert_intermediate_size = size;
  }
  // Without a separate moe_intermediate_size (Mixtral, Switch), intermediate_size or d_ff is every FFN's size.
  if (const char* key = first_present(cfg, {"intermediate_size", "d_ff"})) {
    keys.intermediate_size = key;
    model.intermediate_size = integer_or(key, 0, 1);
  }
  if (cfg.has("is_gated_act")) {
    model.gated_ffn = cfg.boolean("is_gated_act");
  } else if (cfg.has("feed_forward_proj")) {
    model.gated_ffn = cfg.string("feed_forward_proj").rfind("gated-", 0) == 0;  // T5: "relu", "gated-gelu"
  }

  // Layers. An encoder-decoder (T5, Switch) becomes its decoder-only equivalent: the decoder stacked on the
  // encoder. Switch makes layer i of a stack sparse when i % step == 1 (step 1: every layer), so the pattern
  // carries over the join when both stacks share the step and the encoder's length is a multiple of it.
  const bool is_encoder_decoder = (cfg.has("is_encoder_decoder") && cfg.boolean("is_encoder_decoder")) ||
                                  cfg.has("num_decoder_layers") || cfg.has("encoder_sparse_step");
  model.num_layers = first_of({"num_hidden_layers", "num_layers"}, 1, &keys.num_layers);
  if (cfg.has("mlp_only_layers") && cfg.raw("mlp_only_layers").IsSequence() && cfg.raw("mlp_only_layers").size() > 0) {
    cfg.fail("mlp_only_layers",
             "not supported: dense layers at listed positions cannot be described by a first MoE layer and a "
             "period (expected an empty list)");
  }
  if (is_encoder_decoder) {
    const int num_encoder_layers = model.num_layers;
    const int num_decoder_layers = integer_or("num_decoder_layers", num_encoder_layers, 1);
    const int encoder_step = integer_or("encoder_sparse_step", 1, 0);
    const int decoder_step = integer_or("decoder_sparse_step", 1, 0);
    if (encoder_step != decoder_step || encoder_step < 1 || num_encoder_layers % encoder_step != 0) {
      fail_on(cfg, {"decoder_sparse_step", "encoder_sparse_step"},
              "not supported: an encoder-decoder is read as one decoder-only stack, which needs encoder_sparse_step "
              "= decoder_sparse_step >= 1 dividing num_layers (" +
                  str(num_encoder_layers) + "), got " + str(encoder_step) + " and " + str(decoder_step));
    }
    model.num_layers = num_encoder_layers + num_decoder_layers;
    model.first_k_dense = encoder_step > 1 ? 1 : 0;
    model.moe_layer_period = encoder_step;
    keys.first_k_dense = keys.moe_layer_period = "encoder_sparse_step";
  } else if (cfg.has("decoder_sparse_step")) {
    if (cfg.has("first_k_dense_replace") || cfg.has("moe_layer_freq")) {
      cfg.fail("decoder_sparse_step", "expected one layer rule, got it beside first_k_dense_replace/moe_layer_freq");
    }
    // Qwen: layer i is MoE when (i + 1) % step == 0.
    model.moe_layer_period = integer_or("decoder_sparse_step", 1, 1);
    model.first_k_dense = model.moe_layer_period - 1;
    keys.first_k_dense = keys.moe_layer_period = "decoder_sparse_step";
  } else {
    // DeepSeek: layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0.
    const int first_k = integer_or("first_k_dense_replace", 0, 0);
    const int freq = integer_or("moe_layer_freq", 1, 1);
    model.moe_layer_period = freq;
    model.first_k_dense = static_cast<int>((static_cast<std::int64_t>(first_k) + freq - 1) / freq * freq);
    keys.first_k_dense = "first_k_dense_replace";
    keys.moe_layer_period = "moe_layer_freq";
  }

  // Attention. MLA is recognised by its latent (kv_lora_rank); some converted DeepSeek configs also carry a
  // head_dim (the RoPE part, for rotary code), which MLA's shape does not use, so it is ignored there.
  if (const char* key = first_present(cfg, {"num_attention_heads", "num_heads"})) {
    keys.num_attention_heads = key;
    model.num_attention_heads = integer_or(key, 0, 1);
  }
  const int heads = model.num_attention_heads;
  model.kv_lora_rank = integer_or("kv_lora_rank", 0, 0);
  keys.attention = "kv_lora_rank";
  const bool is_mla = model.kv_lora_rank > 0;
  model.num_key_value_heads = heads > 0 ? integer_or("num_key_value_heads", heads, 1) : 0;
  if (is_mla) {
    model.attention = AttentionKind::kMla;
    model.q_lora_rank = integer_or("q_lora_rank", 0, 0);  // null (DeepSeek-V2-Lite): no query compression
    model.qk_nope_head_dim = integer_or("qk_nope_head_dim", 0, 0);
    model.qk_rope_head_dim = integer_or("qk_rope_head_dim", 0, 0);
    model.v_head_dim = integer_or("v_head_dim", 0, 0);
    if (heads == 0) cfg.fail("kv_lora_rank", "mla needs num_attention_heads, which the file does not give");
  } else {
    model.attention = model.num_key_value_heads < heads ? AttentionKind::kGqa : AttentionKind::kMha;
    const char* head_dim_key = first_present(cfg, {"head_dim", "d_kv"});
    model.head_dim = head_dim_key != nullptr ? integer_or(head_dim_key, 0, 1)
                                             : derived_head_dim(cfg, keys, "head_dim", model.hidden_size, heads);
    if (heads == 0) model.head_dim = 0;
  }

  model.vocab_size = integer_or("vocab_size", 0, 0);
  // Absent, the key takes the default of the family's transformers config class: T5 and Switch inherit
  // PretrainedConfig's (tied) and leave the key out of their files; Mixtral, DeepSeek and Qwen default to untied.
  model.tie_word_embeddings = cfg.boolean("tie_word_embeddings", is_encoder_decoder);
  model.max_position_embeddings = integer_or("max_position_embeddings", 0, 0);
  model.num_mtp_layers = integer_or("num_nextn_predict_layers", 0, 0);
  model.router_scoring = parse_scoring(cfg.choice("scoring_func", scoring_names(), "softmax"));
  model.num_expert_groups = integer_or("n_group", 0, 0);
  model.num_topk_groups = integer_or("topk_group", 0, 0);
  keys.num_expert_groups = "n_group";
  keys.num_topk_groups = "topk_group";
  check_architecture(model, cfg, keys);
  return model;
}

// The attention keys of a model YAML. With a base, keys not given keep the base's values, except that a kind
// change away from mla drops the base's MLA shape, and derived defaults are derived again.
void parse_attention_keys(const ConfigMap& cfg, const MoeModel& base, bool has_base, MoeModel& model) {
  auto integer = [&](const char* key, int current) {
    return static_cast<int>(cfg.integer(key, has_base ? current : 0, 0, kMaxInt));
  };
  const int heads = integer("num_attention_heads", base.num_attention_heads);
  model.num_attention_heads = heads;
  model.q_lora_rank = integer("q_lora_rank", base.q_lora_rank);
  model.kv_lora_rank = integer("kv_lora_rank", base.kv_lora_rank);
  model.qk_nope_head_dim = integer("qk_nope_head_dim", base.qk_nope_head_dim);
  model.qk_rope_head_dim = integer("qk_rope_head_dim", base.qk_rope_head_dim);
  model.v_head_dim = integer("v_head_dim", base.v_head_dim);

  std::optional<AttentionKind> stated;
  if (cfg.has("attention")) stated = parse_attention(cfg.choice("attention", attention_names()));
  const bool is_mla = stated ? *stated == AttentionKind::kMla : model.kv_lora_rank > 0;

  if (heads == 0) {
    // Attention not described: nothing may describe a part of it.
    for (const char* key : {"attention", "num_key_value_heads", "head_dim", "q_lora_rank", "kv_lora_rank",
                            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}) {
      if (cfg.has(key)) cfg.fail(key, "needs num_attention_heads (the attention is not described without it)");
    }
    model.attention = AttentionKind::kMha;
    model.num_key_value_heads = model.head_dim = 0;
    model.q_lora_rank = model.kv_lora_rank = model.qk_nope_head_dim = model.qk_rope_head_dim = model.v_head_dim = 0;
    return;
  }

  // An mha base stays mha when its head count changes; a gqa base keeps its key-value heads.
  const bool kv_was_derived = !has_base || base.num_key_value_heads == base.num_attention_heads;
  const int kv_fallback = (kv_was_derived || is_mla) ? heads : base.num_key_value_heads;
  model.num_key_value_heads = static_cast<int>(cfg.integer("num_key_value_heads", kv_fallback, 1, kMaxInt));

  if (is_mla) {
    model.attention = AttentionKind::kMla;
    if (cfg.has("head_dim")) {
      cfg.fail("head_dim",
               "mla has no single head_dim (its shape is qk_nope_head_dim, qk_rope_head_dim and "
               "v_head_dim)");
    }
    model.head_dim = 0;
    return;
  }
  for (const char* key : {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}) {
    if (cfg.has(key) && cfg.integer(key) > 0) {
      cfg.fail(key, std::string("applies to mla attention only (") +
                        (stated ? std::string("attention is ") + attention_kind_name(*stated)
                                : std::string("kv_lora_rank > 0 or attention: mla selects it")) +
                        "), got " + str(cfg.integer(key)));
    }
  }
  model.q_lora_rank = model.kv_lora_rank = model.qk_nope_head_dim = model.qk_rope_head_dim = model.v_head_dim = 0;

  // An mla base has no head_dim (0) to keep.
  const bool head_dim_was_derived = !has_base || base.num_attention_heads == 0 || base.head_dim == 0 ||
                                    base.head_dim * base.num_attention_heads == base.hidden_size;
  if (cfg.has("head_dim")) {
    model.head_dim = static_cast<int>(cfg.integer("head_dim", std::nullopt, 1, kMaxInt));
  } else if (head_dim_was_derived) {
    model.head_dim = derived_head_dim(cfg, KeyNames{}, "head_dim", model.hidden_size, heads);
  } else {
    model.head_dim = base.head_dim;
  }

  const int kv_heads = model.num_key_value_heads;
  model.attention = kv_heads < heads ? AttentionKind::kGqa : AttentionKind::kMha;
  if (stated == AttentionKind::kMha && kv_heads != heads) {
    cfg.fail("attention", "mha needs num_key_value_heads = num_attention_heads (" + str(heads) + "), got " +
                              str(kv_heads) + " (that is gqa)");
  }
  if (stated == AttentionKind::kGqa && kv_heads >= heads) {
    cfg.fail("attention", "gqa needs num_key_value_heads < num_attention_heads (" + str(heads) + "), got " +
                              str(kv_heads) + " (that is mha)");
  }
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFp8:
      return "fp8";
    case DType::kBf16:
      return "bf16";
    case DType::kFp16:
      return "fp16";
    case DType::kFp32:
      return "fp32";
  }
  return "?";
}

int dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::kFp8:
      return 1;
    case DType::kBf16:
    case DType::kFp16:
      return 2;
    case DType::kFp32:
      return 4;
  }
  return 0;
}

const char* attention_kind_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kMha:
      return "mha";
    case AttentionKind::kGqa:
      return "gqa";
    case AttentionKind::kMla:
      return "mla";
  }
  return "?";
}

const char* router_scoring_name(RouterScoring scoring) {
  switch (scoring) {
    case RouterScoring::kSoftmax:
      return "softmax";
    case RouterScoring::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

double MoeModel::dispatch_bytes_per_token() const {
  double bytes = static_cast<double>(hidden_size) * dtype_bytes(dispatch_dtype);
  if (dispatch_dtype == DType::kFp8 && dispatch_scale_block > 0) {
    const int num_scales = (hidden_size + dispatch_scale_block - 1) / dispatch_scale_block;
    bytes += static_cast<double>(num_scales) * kScaleBytes;
  }
  return bytes;
}

double MoeModel::combine_bytes_per_token() const {
  return static_cast<double>(hidden_size) * dtype_bytes(combine_dtype);
}

bool MoeModel::is_moe_layer(int layer_idx) const {
  return layer_idx >= first_k_dense && layer_idx < num_layers && moe_layer_period > 0 &&
         (layer_idx - first_k_dense) % moe_layer_period == 0;
}

int MoeModel::num_moe_layers() const {
  if (first_k_dense >= num_layers || moe_layer_period < 1) return 0;
  return (num_layers - 1 - first_k_dense) / moe_layer_period + 1;
}

int MoeModel::qk_head_dim() const {
  return attention == AttentionKind::kMla ? qk_nope_head_dim + qk_rope_head_dim : head_dim;
}

int MoeModel::value_head_dim() const {
  return attention == AttentionKind::kMla ? v_head_dim : head_dim;
}

namespace {

// Parameter counts need the parts of the model that the All-to-All never did; a model file may leave them out.
void require(const MoeModel& m, int value, const char* key, const char* what) {
  if (value < 1) {
    throw std::invalid_argument(m.source + ": " + key + ": not given, and " + what +
                                " needs it (set it, or start "
                                "from a preset with base:)");
  }
}

std::int64_t ffn_params(const MoeModel& m, int width) {
  const std::int64_t num_matrices = m.gated_ffn ? 3 : 2;
  return num_matrices * m.hidden_size * width;
}

}  // namespace

std::int64_t MoeModel::kv_cache_elements_per_token() const {
  require(*this, num_attention_heads, "num_attention_heads", "the KV cache");
  if (attention == AttentionKind::kMla) return static_cast<std::int64_t>(kv_lora_rank) + qk_rope_head_dim;
  return std::int64_t{2} * num_key_value_heads * head_dim;
}

std::int64_t MoeModel::num_attention_params() const {
  require(*this, num_attention_heads, "num_attention_heads", "the attention's parameter count");
  const std::int64_t hidden = hidden_size;
  const std::int64_t heads = num_attention_heads;
  if (attention != AttentionKind::kMla) {
    const std::int64_t qkv = hidden * (heads + 2 * std::int64_t{num_key_value_heads}) * head_dim;
    return qkv + heads * head_dim * hidden;
  }
  const std::int64_t qk_dim = qk_head_dim();
  const std::int64_t query =
      q_lora_rank > 0 ? hidden * q_lora_rank + q_lora_rank + q_lora_rank * heads * qk_dim : hidden * heads * qk_dim;
  const std::int64_t key_value = hidden * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank +
                                 static_cast<std::int64_t>(kv_lora_rank) * heads * (qk_nope_head_dim + v_head_dim);
  return query + key_value + heads * v_head_dim * hidden;
}

std::int64_t MoeModel::num_expert_params() const {
  return ffn_params(*this, moe_intermediate_size);
}

std::int64_t MoeModel::num_shared_expert_params() const {
  return num_shared_experts * ffn_params(*this, shared_expert_intermediate_size);
}

std::int64_t MoeModel::num_router_params() const {
  return static_cast<std::int64_t>(hidden_size) * num_experts;
}

std::int64_t MoeModel::num_dense_ffn_params() const {
  return ffn_params(*this, intermediate_size);
}

std::int64_t MoeModel::num_dense_layer_params() const {
  return num_attention_params() + num_dense_ffn_params() + std::int64_t{kNormsPerLayer} * hidden_size;
}

std::int64_t MoeModel::num_moe_layer_params() const {
  return num_attention_params() + num_experts * num_expert_params() + num_shared_expert_params() + num_router_params() +
         std::int64_t{kNormsPerLayer} * hidden_size;
}

std::int64_t MoeModel::num_activated_moe_layer_params() const {
  return num_attention_params() + num_topk * num_expert_params() + num_shared_expert_params() + num_router_params() +
         std::int64_t{kNormsPerLayer} * hidden_size;
}

std::int64_t MoeModel::num_embedding_params() const {
  require(*this, vocab_size, "vocab_size", "the embedding's parameter count");
  return static_cast<std::int64_t>(vocab_size) * hidden_size;
}

std::int64_t MoeModel::num_head_params() const {
  return tie_word_embeddings ? 0 : num_embedding_params();
}

// The embedding first, then the layers: a model missing both is refused for its attention, whichever order the
// compiler evaluates a sum in.
std::int64_t MoeModel::num_params() const {
  const std::int64_t layers = num_dense_layers() * num_dense_layer_params() + num_moe_layers() * num_moe_layer_params();
  return layers + hidden_size + num_embedding_params() + num_head_params();
}

std::int64_t MoeModel::num_activated_params() const {
  const std::int64_t layers =
      num_dense_layers() * num_dense_layer_params() + num_moe_layers() * num_activated_moe_layer_params();
  return layers + hidden_size + num_embedding_params() + num_head_params();
}

std::int64_t MoeModel::num_mtp_params() const {
  if (num_mtp_layers == 0) return 0;
  const std::int64_t hidden = hidden_size;
  const std::int64_t projection = 2 * hidden * hidden;  // [normed hidden state; normed embedding] -> hidden
  return num_mtp_layers * (num_moe_layer_params() + projection + kMtpNorms * hidden);
}

std::vector<ModelPresetInfo> model_presets() {
  std::vector<ModelPresetInfo> out;
  for (const auto& preset : presets()) {
    const MoeModel& m = preset.model;
    std::string summary = "hidden " + std::to_string(m.hidden_size) + ", " + std::to_string(m.num_experts) +
                          " experts, top-" + std::to_string(m.num_topk) + ", " + std::to_string(m.num_shared_experts) +
                          " shared, " + attention_kind_name(m.attention) + ", " + dtype_name(m.dispatch_dtype) + "/" +
                          dtype_name(m.combine_dtype) + " (" + preset.origin + ")";
    out.push_back({m.name, std::move(summary)});
  }
  return out;
}

MoeModel parse_model(const YAML::Node& node, const std::string& source) {
  const ConfigMap cfg(node, source);
  const std::string base_name = cfg.choice("base", preset_names(), "");
  const bool has_base = !base_name.empty();
  const MoeModel base = has_base ? *find_preset(base_name) : MoeModel{};
  MoeModel model = base;
  model.source = source;

  // With a base every key is an override; without one the shape of the model must be stated.
  auto integer = [&](const char* key, int current, std::int64_t min, std::optional<std::int64_t> fallback) {
    if (has_base) fallback = current;
    return static_cast<int>(cfg.integer(key, fallback, min, kMaxInt));
  };
  model.name = cfg.string("name", has_base ? base_name + " (" + source + ")" : source);
  model.hidden_size = integer("hidden_size", model.hidden_size, 1, std::nullopt);
  model.num_experts = integer("num_experts", model.num_experts, 1, std::nullopt);
  model.num_topk = integer("num_topk", model.num_topk, 1, std::nullopt);
  model.num_shared_experts = integer("num_shared_experts", model.num_shared_experts, 0, 0);
  model.moe_intermediate_size = integer("moe_intermediate_size", model.moe_intermediate_size, 1, std::nullopt);
  model.num_layers = integer("num_layers", model.num_layers, 1, std::nullopt);
  if (cfg.has("tokens_per_rank")) model.tokens_per_rank = cfg.integer("tokens_per_rank", std::nullopt, 0, 1LL << 40);

  if (model.num_topk > model.num_experts) {
    const std::string topk = std::to_string(model.num_topk);
    const std::string experts = std::to_string(model.num_experts);
    if (cfg.has("num_topk")) cfg.fail("num_topk", "must be <= num_experts (" + experts + "), got " + topk);
    cfg.fail("num_experts", "must be >= num_topk (" + topk + ", from base " + base_name + "), got " + experts);
  }

  const bool shared_size_was_derived = !has_base || base.shared_expert_intermediate_size == base.moe_intermediate_size;
  model.shared_expert_intermediate_size = static_cast<int>(cfg.integer(
      "shared_expert_intermediate_size",
      shared_size_was_derived ? model.moe_intermediate_size : base.shared_expert_intermediate_size, 1, kMaxInt));
  model.first_k_dense = integer("first_k_dense", model.first_k_dense, 0, 0);
  model.moe_layer_period = integer("moe_layer_period", model.moe_layer_period, 1, 1);
  model.intermediate_size = integer("intermediate_size", model.intermediate_size, 0, 0);
  model.gated_ffn = cfg.boolean("gated_ffn", model.gated_ffn);
  parse_attention_keys(cfg, base, has_base, model);
  model.vocab_size = integer("vocab_size", model.vocab_size, 0, 0);
  model.tie_word_embeddings = cfg.boolean("tie_word_embeddings", model.tie_word_embeddings);
  model.max_position_embeddings = integer("max_position_embeddings", model.max_position_embeddings, 0, 0);
  model.num_mtp_layers = integer("num_mtp_layers", model.num_mtp_layers, 0, 0);
  model.router_scoring =
      parse_scoring(cfg.choice("router_scoring", scoring_names(), router_scoring_name(model.router_scoring)));
  model.num_expert_groups = integer("num_expert_groups", model.num_expert_groups, 0, 0);
  model.num_topk_groups = integer("num_topk_groups", model.num_topk_groups, 0, 0);

  model.dispatch_dtype =
      parse_dtype(cfg.choice("dispatch_dtype", dtype_names(), std::string(dtype_name(model.dispatch_dtype))));
  model.combine_dtype =
      parse_dtype(cfg.choice("combine_dtype", dtype_names(), std::string(dtype_name(model.combine_dtype))));
  if (cfg.has("dispatch_scale_block")) {
    model.dispatch_scale_block = static_cast<int>(cfg.integer("dispatch_scale_block", std::nullopt, 0, kMaxInt));
    if (model.dispatch_scale_block > 0 && model.dispatch_dtype != DType::kFp8) {
      cfg.fail("dispatch_scale_block", std::string("applies to fp8 dispatch only (dispatch_dtype is ") +
                                           dtype_name(model.dispatch_dtype) + "), got " +
                                           std::to_string(model.dispatch_scale_block));
    }
  } else {
    cfg.raw("dispatch_scale_block");
    // Overriding a base's fp8 dispatch with another dtype drops the base's scales with it.
    if (model.dispatch_dtype != DType::kFp8) model.dispatch_scale_block = 0;
  }
  // Unknown keys first: a misspelt key would otherwise surface as a broken relation between the keys it missed.
  cfg.reject_unknown();
  check_architecture(model, cfg, KeyNames{});
  return model;
}

MoeModel load_model(const std::string& name_or_path) {
  if (auto preset = find_preset(name_or_path)) return *preset;
  std::error_code error;
  if (!std::filesystem::is_regular_file(name_or_path, error)) {
    throw std::invalid_argument("unknown model '" + name_or_path + "': not a preset (" + join(preset_names()) +
                                ") and no such file");
  }
  if (ends_with(name_or_path, ".json")) return parse_hf_config(name_or_path);
  return parse_model(load_yaml_file(name_or_path), name_or_path);
}

}  // namespace moesim::workloads
