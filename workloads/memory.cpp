// GPU memory per pipeline stage: the formulas of memory.hpp, term by term.
//
// Why per-token byte terms: each published formula (Korthikanti's s b h (34 + 5 a s / h)) is a sum of tensors, each
// "tokens x channels x bytes". Writing every tensor as bytes per token of the micro-batch keeps GQA's smaller K and
// V, MLA's latents, SwiGLU's extra intermediate and MoE's routed copies visible one by one, and lets one function
// serve training (s b tokens, s keys) and inference (any token and key counts).
#include "workloads/memory.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace moesim::workloads {
namespace {

constexpr int kVocabMultiple = 128;     // Megatron's --make-vocab-size-divisible-by default
constexpr int kNormsPerLayer = 2;       // before attention and before the FFN
constexpr int kMtpNorms = 3;            // an MTP module's two input norms and its output norm
constexpr double kActivationBytes = 2;  // Korthikanti: 16-bit activations
constexpr double kMaskBytes = 1;        // ... and 1-byte dropout masks
constexpr double kScoreBytes = 5;       // softmax output 2 + dropout mask 1 + dropout output 2, per score
constexpr double kRouterProbBytes = 4;  // fp32 router probabilities
constexpr double kLogitBytes = 4;       // fp32 logits for the cross entropy (Korthikanti sec. 4.3)
constexpr double kMasterBytes = 4;      // fp32 master weights

[[noreturn]] void fail(const std::string& key, const std::string& expected) {
  throw std::invalid_argument("memory: " + key + ": " + expected);
}

// Everything the formulas read from the layout, as doubles.
struct Split {
  double t;    // tp
  double tsp;  // tp with sequence parallelism, 1 without (the divisor of h-wide per-token tensors)
  double e;    // etp
  double ep;
  double dp;
  double edp;
};

Split split_of(const ParallelLayout& layout, const MemoryOptions& options) {
  return {static_cast<double>(layout.tp),  options.sequence_parallel ? static_cast<double>(layout.tp) : 1.0,
          static_cast<double>(layout.etp), static_cast<double>(layout.ep),
          static_cast<double>(layout.dp),  static_cast<double>(layout.edp())};
}

// KV heads on one TP rank: split when tp divides them, one replicated head otherwise (validate_layout allows only
// kv | tp then).
double kv_heads_per_rank(const MoeModel& model, int tp) {
  const int kv = model.num_key_value_heads;
  return kv >= tp ? static_cast<double>(kv) / tp : 1.0;
}

double padded_vocab(const MoeModel& model, int tp) {
  const std::int64_t multiple = static_cast<std::int64_t>(kVocabMultiple) * tp;
  const std::int64_t rows = (model.vocab_size + multiple - 1) / multiple;  // rounded up, in whole multiples
  return static_cast<double>(rows * multiple);
}

// Parameter counts per GPU (memory.hpp, "Parameters per GPU").
double attention_params(const MoeModel& model, const Split& sp, int tp) {
  const double h = model.hidden_size;
  const double a = model.num_attention_heads;
  const double qk = model.qk_head_dim();
  const double vd = model.value_head_dim();
  if (model.attention != AttentionKind::kMla) {
    const double g = kv_heads_per_rank(model, tp);
    return h * a * qk / sp.t + h * g * (qk + vd) + a * vd * h / sp.t;
  }
  const double q_lora = model.q_lora_rank;
  const double kv_lora = model.kv_lora_rank;
  const double rope = model.qk_rope_head_dim;
  const double whole = (q_lora > 0 ? h * q_lora + q_lora : 0) + h * (kv_lora + rope) + kv_lora;
  const double query_up = q_lora > 0 ? q_lora * a * qk : h * a * qk;
  const double kv_up = kv_lora * a * (model.qk_nope_head_dim + model.v_head_dim);
  return whole + (query_up + kv_up + a * vd * model.hidden_size) / sp.t;
}

struct Params {
  double dense = 0;
  double expert = 0;
  double sum() const { return dense + expert; }
};

Params layer_params(const MoeModel& model, const Split& sp, int tp, bool is_moe) {
  const double norms = static_cast<double>(kNormsPerLayer) * model.hidden_size;
  Params p;
  p.dense = attention_params(model, sp, tp) + norms;
  if (!is_moe) {
    p.dense += static_cast<double>(model.num_dense_ffn_params()) / sp.t;
    return p;
  }
  p.dense +=
      static_cast<double>(model.num_router_params()) + static_cast<double>(model.num_shared_expert_params()) / sp.t;
  p.expert = model.num_experts / sp.ep * static_cast<double>(model.num_expert_params()) / sp.e;
  return p;
}

Params mtp_module_params(const MoeModel& model, const Split& sp, int tp) {
  const double h = model.hidden_size;
  Params p = layer_params(model, sp, tp, true);
  p.dense += 2 * h * h / sp.t + kMtpNorms * h;
  return p;
}

// Activation bytes per token of one layer on one GPU (memory.hpp, "Activations"). `keys`: tokens each query
// attends to (s in training); `with_scores`: the 5 a s / t term is kept.
double attention_bytes_per_token(const MoeModel& model, const Split& sp, int tp, double keys, bool with_scores) {
  const double h = model.hidden_size;
  const double a = model.num_attention_heads;
  const double qk = model.qk_head_dim();
  const double vd = model.value_head_dim();
  // norm input, projection input, dropout mask, output projection input
  double bytes = 2 * kActivationBytes * h / sp.tsp + kMaskBytes * h / sp.tsp + kActivationBytes * a * vd / sp.t;
  if (model.attention != AttentionKind::kMla) {
    const double g = kv_heads_per_rank(model, tp);
    bytes += kActivationBytes * (a * qk / sp.t + g * qk + g * vd);
  } else {
    bytes += kActivationBytes * (2 * a * qk + a * vd) / sp.t;
    bytes += kActivationBytes * (2.0 * model.q_lora_rank + 2.0 * model.kv_lora_rank + model.qk_rope_head_dim);
  }
  if (with_scores) bytes += kScoreBytes * a * keys / sp.t;
  return bytes;
}

// c f: the FFN's intermediates in bytes per token for width f (gated: gate and up outputs and the down input).
double ffn_intermediate_bytes(const MoeModel& model, double width) {
  return (model.gated_ffn ? 3 : 2) * kActivationBytes * width;
}

double ffn_bytes_per_token(const MoeModel& model, const Split& sp, bool is_moe, double imbalance) {
  const double h = model.hidden_size;
  const double in_and_mask = 2 * kActivationBytes * h / sp.tsp + kMaskBytes * h / sp.tsp;
  if (!is_moe) return in_and_mask + ffn_intermediate_bytes(model, model.intermediate_size) / sp.t;
  const double router = kRouterProbBytes * model.num_experts / sp.tsp;
  const double shared = model.num_shared_experts * ffn_intermediate_bytes(model, model.shared_expert_intermediate_size);
  const double per_copy = 2 * kActivationBytes * h * sp.e + ffn_intermediate_bytes(model, model.moe_intermediate_size);
  const double routed = imbalance * model.num_topk * per_copy / sp.tsp;
  return in_and_mask + router + shared / sp.t + routed;
}

double layer_bytes_per_token(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options,
                             bool is_moe, double keys) {
  const Split sp = split_of(layout, options);
  if (options.mode == StepMode::kTrain && options.recompute == Recompute::kFull) {
    return kActivationBytes * model.hidden_size / sp.tsp;
  }
  const bool with_scores = options.recompute == Recompute::kNone;
  return attention_bytes_per_token(model, sp, layout.tp, keys, with_scores) +
         ffn_bytes_per_token(model, sp, is_moe, options.moe_load_imbalance);
}

// The last stage's final norm and output layer (Korthikanti sec. 4.3: 4 s b h / t (1 + v / h)), per token.
double output_layer_bytes_per_token(const MoeModel& model, const Split& sp, int tp) {
  return 2 * kActivationBytes * model.hidden_size / sp.tsp + kLogitBytes * padded_vocab(model, tp) / sp.t;
}

}  // namespace

const char* recompute_name(Recompute recompute) {
  switch (recompute) {
    case Recompute::kNone:
      return "none";
    case Recompute::kSelective:
      return "selective";
    case Recompute::kFull:
      return "full";
  }
  return "?";
}

Recompute parse_recompute(const std::string& name) {
  for (const Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    if (name == recompute_name(r)) return r;
  }
  throw std::invalid_argument("recompute: expected none, selective or full, got '" + name + "'");
}

const char* step_mode_name(StepMode mode) {
  switch (mode) {
    case StepMode::kTrain:
      return "train";
    case StepMode::kPrefill:
      return "prefill";
    case StepMode::kDecode:
      return "decode";
  }
  return "?";
}

StepMode parse_step_mode(const std::string& name) {
  for (const StepMode m : {StepMode::kTrain, StepMode::kPrefill, StepMode::kDecode}) {
    if (name == step_mode_name(m)) return m;
  }
  throw std::invalid_argument("mode: expected train, prefill or decode, got '" + name + "'");
}

void validate_memory_options(const MemoryOptions& options) {
  auto num = [](double value) {
    std::string text = std::to_string(value);
    text.erase(text.find_last_not_of('0') + 1);
    if (!text.empty() && text.back() == '.') text.pop_back();
    return text;
  };
  if (options.zero_stage < 0 || options.zero_stage > 3) {
    fail("zero_stage", "must be 0, 1, 2 or 3, got " + std::to_string(options.zero_stage));
  }
  if (options.seq_length < 1) fail("seq_length", "must be >= 1, got " + std::to_string(options.seq_length));
  if (options.optimizer_states < 0) {
    fail("optimizer_states", "must be >= 0, got " + std::to_string(options.optimizer_states));
  }
  if (!(options.moe_load_imbalance >= 1) || !std::isfinite(options.moe_load_imbalance)) {
    fail("moe_load_imbalance", "must be finite and >= 1, got " + num(options.moe_load_imbalance));
  }
  if (!(options.in_flight_microbatches >= 0) || !std::isfinite(options.in_flight_microbatches)) {
    fail("in_flight_microbatches", "must be finite and >= 0, got " + num(options.in_flight_microbatches));
  }
  if (options.inference_batch < 1) {
    fail("inference_batch", "must be >= 1, got " + std::to_string(options.inference_batch));
  }
  if (options.context_length < 0) {
    fail("context_length", "must be >= 0, got " + std::to_string(options.context_length));
  }
  if (!(options.reserve_bytes >= 0) || !std::isfinite(options.reserve_bytes)) {
    fail("reserve_bytes", "must be finite and >= 0, got " + num(options.reserve_bytes));
  }
}

double layer_activation_bytes(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options,
                              bool is_moe_layer) {
  MemoryOptions train = options;
  train.mode = StepMode::kTrain;
  const double tokens = static_cast<double>(options.seq_length) * layout.mbs;
  return tokens * layer_bytes_per_token(model, layout, train, is_moe_layer, static_cast<double>(options.seq_length));
}

double in_flight_microbatches(const ParallelLayout& layout, int pp_idx) {
  const double m = static_cast<double>(num_microbatches(layout));
  const double pp = layout.pp;
  const double behind = pp - pp_idx;  // this stage and those after it
  if (layout.vpp == 1) return std::min(behind, m);
  const double vpp = layout.vpp;
  const double chunks = std::min(2 * (behind - 1) + (vpp - 1) * pp + 1, m * vpp);
  return chunks / vpp;
}

HeldParameters layer_params_per_gpu(const MoeModel& model, const ParallelLayout& layout, int layer) {
  const Params p = layer_params(model, split_of(layout, MemoryOptions{}), layout.tp, model.is_moe_layer(layer));
  return {p.dense, p.expert};
}

double embedding_params_per_gpu(const MoeModel& model, const ParallelLayout& layout) {
  return padded_vocab(model, layout.tp) * model.hidden_size / layout.tp;
}

MemoryBreakdown memory_of_stage(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options,
                                int pp_idx) {
  validate_layout(layout, model, layout.num_gpus());
  validate_memory_options(options);
  // The model's own counts refuse, naming the missing key, a model whose attention or vocabulary is not described;
  // the per-GPU formulas below would silently count such parts as zero.
  if (model.num_params() < 1) throw std::invalid_argument(model.source + ": the model has no parameters");
  if (pp_idx < 0 || pp_idx >= layout.pp) {
    throw std::invalid_argument("pipeline stage " + std::to_string(pp_idx) + ": must be in [0, " +
                                std::to_string(layout.pp) + ")");
  }
  const Split sp = split_of(layout, options);
  const bool train = options.mode == StepMode::kTrain;
  const bool first = pp_idx == 0;
  const bool last = pp_idx == layout.pp - 1;
  const int mtp_modules = train && last ? model.num_mtp_layers : 0;
  const auto layers = stage_layer_indices(model, layout, pp_idx);
  bool has_moe = mtp_modules > 0;
  for (const int layer : layers) has_moe = has_moe || model.is_moe_layer(layer);

  // Parameters, and the largest module a ZeRO-3 step gathers whole.
  Params params;
  double largest = 0;
  auto add = [&](const Params& p) {
    params.dense += p.dense;
    params.expert += p.expert;
    largest = std::max(largest, p.sum());
  };
  for (const int layer : layers) add(layer_params(model, sp, layout.tp, model.is_moe_layer(layer)));
  const double table = padded_vocab(model, layout.tp) * model.hidden_size / sp.t;
  const bool embedding_copy_on_last = layout.pp > 1 && (model.tie_word_embeddings || mtp_modules > 0);
  if (first || (last && embedding_copy_on_last)) add({table, 0});
  if (last) {
    if (!model.tie_word_embeddings) add({table, 0});
    params.dense += model.hidden_size;  // final norm
  }
  for (int i = 0; i < mtp_modules; ++i) add(mtp_module_params(model, sp, layout.tp));

  MemoryBreakdown out;
  out.pp_idx = pp_idx;
  const double param_bytes = dtype_bytes(options.param_dtype);
  if (train) {
    auto sharded = [&](int stage) {
      return options.zero_stage >= stage ? params.dense / sp.dp + params.expert / sp.edp : params.sum();
    };
    const bool mixed = options.param_dtype != DType::kFp32;
    const double master = options.master_weights && mixed ? kMasterBytes : 0;
    const double states = options.optimizer_states * static_cast<double>(dtype_bytes(options.optimizer_state_dtype));
    out.parameters = param_bytes * sharded(3) + (options.zero_stage >= 3 ? param_bytes * largest : 0);
    out.gradients = dtype_bytes(options.grad_dtype) * sharded(2);
    out.optimizer_states = (master + states) * sharded(1);
  } else {
    out.parameters = param_bytes * params.sum();
  }

  const double h = model.hidden_size;
  const double s = static_cast<double>(options.seq_length);
  if (train) {
    const double tokens = s * layout.mbs;
    double per_microbatch = 0;
    for (const int layer : layers) {
      per_microbatch += layer_activation_bytes(model, layout, options, model.is_moe_layer(layer));
    }
    if (first) per_microbatch += tokens * kMaskBytes * h / sp.tsp;  // the embedding's dropout mask
    if (last) per_microbatch += tokens * output_layer_bytes_per_token(model, sp, layout.tp);
    for (int i = 0; i < mtp_modules; ++i) {
      per_microbatch +=
          layer_activation_bytes(model, layout, options, true) +
          tokens * (2 * kActivationBytes * h / sp.tsp + output_layer_bytes_per_token(model, sp, layout.tp));
    }
    out.in_flight_microbatches =
        options.in_flight_microbatches > 0 ? options.in_flight_microbatches : in_flight_microbatches(layout, pp_idx);
    out.activations = out.in_flight_microbatches * per_microbatch;
  } else {
    const bool prefill = options.mode == StepMode::kPrefill;
    const double batch = static_cast<double>(options.inference_batch);
    const double tokens = batch * (prefill ? s : 1);
    const double keys = prefill || options.context_length == 0 ? s : static_cast<double>(options.context_length);
    double largest_layer = 0;
    for (const int layer : layers) {
      largest_layer = std::max(largest_layer,
                               tokens * layer_bytes_per_token(model, layout, options, model.is_moe_layer(layer), keys));
    }
    out.activations = largest_layer + (last ? tokens * output_layer_bytes_per_token(model, sp, layout.tp) : 0);
    const double kv_per_token = static_cast<double>(model.kv_cache_elements_per_token());
    const double kv_share =
        model.attention == AttentionKind::kMla ? 1.0 : kv_heads_per_rank(model, layout.tp) / model.num_key_value_heads;
    out.kv_cache = static_cast<double>(layers.size()) * batch * keys * dtype_bytes(options.kv_cache_dtype) *
                   kv_per_token * kv_share;
  }

  if (layout.ep > 1 && has_moe) {
    const double tokens =
        train ? s * layout.mbs
              : static_cast<double>(options.inference_batch) * (options.mode == StepMode::kPrefill ? s : 1);
    const double copies = tokens / sp.tsp * model.num_topk;
    out.a2a_buffers = copies * (1 + options.moe_load_imbalance) *
                      (model.dispatch_bytes_per_token() + model.combine_bytes_per_token());
  }
  out.total = out.parameters + out.gradients + out.optimizer_states + out.activations + out.a2a_buffers + out.kv_cache;
  return out;
}

MemoryBreakdown memory_per_gpu(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options) {
  MemoryBreakdown busiest = memory_of_stage(model, layout, options, 0);
  for (int stage = 1; stage < layout.pp; ++stage) {
    MemoryBreakdown candidate = memory_of_stage(model, layout, options, stage);
    if (candidate.total > busiest.total) busiest = candidate;
  }
  return busiest;
}

bool fits(const MoeModel& model, const ParallelLayout& layout, const MemoryOptions& options,
          double gpu_capacity_bytes) {
  return memory_per_gpu(model, layout, options).total + options.reserve_bytes <= gpu_capacity_bytes;
}

}  // namespace moesim::workloads
