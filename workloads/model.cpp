// MoE model descriptions: presets, model YAML and Hugging Face config.json.
//
// Theory of operation. A model reaches the simulator by one of three doors, all ending in the same MoeModel:
//   - a preset: the values of the model's published Hugging Face config.json, typed in below (the source of
//     each is named beside it) so that no network access is ever needed;
//   - a model YAML (schema in model.hpp), read through ConfigMap so that every key has one type, one default
//     and one range, and unknown keys are errors; `base: <preset>` starts from a preset and overrides keys;
//   - a Hugging Face config.json, read with yaml-cpp (JSON is YAML). That file is not our format: its keys vary
//     between model families, so we map the handful of synonyms we know and ignore every other key, but a
//     missing required value is still an error naming the file and the keys we looked for.
// Bytes per token are derived, never stored, so an override of hidden_size or a dtype cannot leave them stale.
#include "workloads/model.hpp"

#include <filesystem>
#include <initializer_list>
#include <limits>
#include <stdexcept>

#include "common/config.hpp"

namespace moesim::workloads {
namespace {

constexpr std::int64_t kMaxInt = std::numeric_limits<int>::max();
constexpr int kScaleBytes = 4;  // fp8 scales are fp32

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
  model.num_layers = num_layers;
  return model;
}

std::vector<Preset> presets() {
  std::vector<Preset> out;
  // huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json: hidden_size 4096, num_local_experts 8,
  // num_experts_per_tok 2, intermediate_size 14336 (each expert is a full FFN), num_hidden_layers 32.
  out.push_back({make_model("mixtral-8x7b", 4096, 8, 2, 0, 14336, 32), "Mixtral-8x7B config.json"});

  // huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json: hidden_size 7168, n_routed_experts 256,
  // num_experts_per_tok 8, n_shared_experts 1, moe_intermediate_size 2048, num_hidden_layers 61 (of which
  // first_k_dense_replace = 3 are dense). The DeepSeek-V3 technical report (sec. 3.3, and DeepEP) dispatches in
  // FP8 with one FP32 scale per 128 channels and combines in BF16.
  MoeModel deepseek = make_model("deepseek-v3", 7168, 256, 8, 1, 2048, 61);
  deepseek.dispatch_dtype = DType::kFp8;
  deepseek.dispatch_scale_block = 128;
  out.push_back({deepseek, "DeepSeek-V3 config.json, FP8 dispatch per the technical report"});

  // huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json: hidden_size 2048, num_experts 128,
  // num_experts_per_tok 8, moe_intermediate_size 768, num_hidden_layers 48, no shared expert.
  out.push_back({make_model("qwen3-30b-a3b", 2048, 128, 8, 0, 768, 48), "Qwen3-30B-A3B config.json"});

  // huggingface.co/google/switch-base-128/blob/main/config.json: d_model 768, num_experts 128, d_ff 3072,
  // num_layers 12; Switch routing is top-1 (the config has no num_experts_per_tok).
  out.push_back({make_model("switch-base-128", 768, 128, 1, 0, 3072, 12), "switch-base-128 config.json"});
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

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A Hugging Face config.json. Each family spells the same quantity differently; the first key present wins.
MoeModel parse_hf_config(const std::string& path) {
  const YAML::Node root = load_yaml_file(path);
  const ConfigMap cfg(root, path);

  auto first_of = [&](std::initializer_list<const char*> keys, std::int64_t min) -> int {
    std::vector<std::string> names;
    for (const char* key : keys) {
      if (cfg.has(key)) return static_cast<int>(cfg.integer(key, std::nullopt, min, kMaxInt));
      names.emplace_back(key);
    }
    throw std::invalid_argument(path + ": expected one of " + join(names));
  };

  MoeModel model;
  model.source = path;
  model.name = path;
  model.hidden_size = first_of({"hidden_size", "d_model"}, 1);
  model.num_experts = first_of({"num_local_experts", "n_routed_experts", "num_experts"}, 1);
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
  if (cfg.has("n_shared_experts")) {
    model.num_shared_experts = static_cast<int>(cfg.integer("n_shared_experts", std::nullopt, 0, kMaxInt));
  } else if (cfg.has("shared_expert_intermediate_size")) {
    // Qwen2-MoE style: one shared expert, described by its size rather than a count.
    model.num_shared_experts = cfg.integer("shared_expert_intermediate_size", std::nullopt, 0, kMaxInt) > 0 ? 1 : 0;
  }
  model.moe_intermediate_size = first_of({"moe_intermediate_size", "intermediate_size", "d_ff"}, 1);
  model.num_layers = first_of({"num_hidden_layers", "num_layers"}, 1);
  return model;
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

std::vector<ModelPresetInfo> model_presets() {
  std::vector<ModelPresetInfo> out;
  for (const auto& preset : presets()) {
    const MoeModel& m = preset.model;
    std::string summary = "hidden " + std::to_string(m.hidden_size) + ", " + std::to_string(m.num_experts) +
                          " experts, top-" + std::to_string(m.num_topk) + ", " + std::to_string(m.num_shared_experts) +
                          " shared, " + dtype_name(m.dispatch_dtype) + "/" + dtype_name(m.combine_dtype) + " (" +
                          preset.origin + ")";
    out.push_back({m.name, std::move(summary)});
  }
  return out;
}

MoeModel parse_model(const YAML::Node& node, const std::string& source) {
  const ConfigMap cfg(node, source);
  const std::string base_name = cfg.choice("base", preset_names(), "");
  const bool has_base = !base_name.empty();
  MoeModel model = has_base ? *find_preset(base_name) : MoeModel{};
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
  cfg.reject_unknown();
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
