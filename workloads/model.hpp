// An MoE model, as far as one MoE layer's communication needs it (later issues add the rest of the layer).
//
// Presets carry the values of the published configs (Hugging Face config.json of each model, or the paper);
// custom models come from a model YAML or directly from a Hugging Face config.json.
//
//   name: my-moe
//   hidden_size: 4096
//   num_experts: 64            # routed experts per MoE layer
//   num_topk: 6                # experts per token
//   num_shared_experts: 2
//   moe_intermediate_size: 1408
//   num_layers: 28
//   dispatch_dtype: fp8        # fp8 | bf16 | fp16 | fp32
//   dispatch_scale_block: 128  # fp8 only: one fp32 scale per this many channels (0: none)
//   combine_dtype: bf16
//   tokens_per_rank: 8192      # optional: the workload's tokens per rank, used unless a scenario or flag says
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

struct MoeModel {
  std::string source;  // preset name or file, for messages
  std::string name;
  int hidden_size = 0;
  int num_experts = 0;
  int num_topk = 0;
  int num_shared_experts = 0;
  int moe_intermediate_size = 0;
  int num_layers = 0;
  DType dispatch_dtype = DType::kBf16;
  int dispatch_scale_block = 0;  // channels per fp32 scale for fp8 dispatch; 0 = no scales
  DType combine_dtype = DType::kBf16;
  std::optional<std::int64_t> tokens_per_rank;  // a model file's default workload size; presets leave it unset

  // Bytes of one token copy on the wire: hidden x element size, plus scales for fp8 dispatch.
  double dispatch_bytes_per_token() const;
  double combine_bytes_per_token() const;
};

struct ModelPresetInfo {
  std::string name;
  std::string summary;  // "hidden 7168, 256 experts, top-8, 1 shared (DeepSeek-V3 config.json)"
};

// mixtral-8x7b, deepseek-v3, qwen3-30b-a3b, switch-base-128.
std::vector<ModelPresetInfo> model_presets();

// A preset name, a model YAML, or a Hugging Face config.json (recognised by the .json extension). Throws
// std::invalid_argument naming the file, the key and what was expected.
MoeModel load_model(const std::string& name_or_path);
// Reads and validates a model mapping (a file's content or an inline `model:` mapping of a scenario).
MoeModel parse_model(const YAML::Node& node, const std::string& source);

}  // namespace moesim::workloads
