#include "workloads/model.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim::workloads {
namespace {

using test::error_of;

// A file under the temp directory, removed when the test ends. The name carries the process id, because
// CTest may run the cases of this binary as parallel processes.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& content) {
    static int counter = 0;
    path_ = (std::filesystem::temp_directory_path() /
             ("moesim_model_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name))
                .string();
    std::ofstream(path_) << content;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

MoeModel parse_text(const std::string& yaml, const std::string& source = "model.yaml") {
  return parse_model(YAML::Load(yaml), source);
}

TEST(DType, NamesAndSizes) {
  EXPECT_STREQ(dtype_name(DType::kFp8), "fp8");
  EXPECT_STREQ(dtype_name(DType::kBf16), "bf16");
  EXPECT_EQ(dtype_bytes(DType::kFp8), 1);
  EXPECT_EQ(dtype_bytes(DType::kBf16), 2);
  EXPECT_EQ(dtype_bytes(DType::kFp16), 2);
  EXPECT_EQ(dtype_bytes(DType::kFp32), 4);
}

TEST(ModelPresets, AllFourLoadByName) {
  const auto presets = model_presets();
  ASSERT_EQ(presets.size(), 4u);
  for (const auto& info : presets) {
    const MoeModel model = load_model(info.name);
    EXPECT_EQ(model.name, info.name);
    EXPECT_EQ(model.source, info.name);
    EXPECT_GE(model.num_experts, model.num_topk);
    EXPECT_NE(info.summary.find("top-" + std::to_string(model.num_topk)), std::string::npos) << info.summary;
  }
}

TEST(ModelPresets, ShapesFromThePublishedConfigs) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  EXPECT_EQ(mixtral.hidden_size, 4096);
  EXPECT_EQ(mixtral.num_experts, 8);
  EXPECT_EQ(mixtral.num_topk, 2);
  EXPECT_EQ(mixtral.num_shared_experts, 0);
  EXPECT_EQ(mixtral.moe_intermediate_size, 14336);
  EXPECT_EQ(mixtral.num_layers, 32);

  const MoeModel deepseek = load_model("deepseek-v3");
  EXPECT_EQ(deepseek.hidden_size, 7168);
  EXPECT_EQ(deepseek.num_experts, 256);
  EXPECT_EQ(deepseek.num_topk, 8);
  EXPECT_EQ(deepseek.num_shared_experts, 1);
  EXPECT_EQ(deepseek.moe_intermediate_size, 2048);
  EXPECT_EQ(deepseek.num_layers, 61);

  const MoeModel qwen = load_model("qwen3-30b-a3b");
  EXPECT_EQ(qwen.hidden_size, 2048);
  EXPECT_EQ(qwen.num_experts, 128);
  EXPECT_EQ(qwen.num_topk, 8);
  EXPECT_EQ(qwen.moe_intermediate_size, 768);
  EXPECT_EQ(qwen.num_layers, 48);

  const MoeModel switch_base = load_model("switch-base-128");
  EXPECT_EQ(switch_base.hidden_size, 768);
  EXPECT_EQ(switch_base.num_experts, 128);
  EXPECT_EQ(switch_base.num_topk, 1);
  EXPECT_EQ(switch_base.moe_intermediate_size, 3072);
  // 12 encoder + 12 decoder layers, described as one decoder-only stack of 24 (of which 12 are MoE, as before the
  // preset described the rest of the architecture: it used to say 12 layers, all MoE).
  EXPECT_EQ(switch_base.num_layers, 24);
  EXPECT_EQ(switch_base.num_moe_layers(), 12);
}

TEST(ModelPresets, BytesPerToken) {
  // DeepSeek-V3 dispatches 1-byte FP8 values plus one 4-byte FP32 scale per 128 channels, and combines in BF16.
  const int deepseek_hidden = 7168;
  const int num_scales = (deepseek_hidden + 127) / 128;
  const double deepseek_dispatch = deepseek_hidden * 1.0 + num_scales * 4.0;
  const double deepseek_combine = deepseek_hidden * 2.0;
  const MoeModel deepseek = load_model("deepseek-v3");
  EXPECT_EQ(deepseek.dispatch_dtype, DType::kFp8);
  EXPECT_EQ(deepseek.dispatch_scale_block, 128);
  EXPECT_DOUBLE_EQ(deepseek.dispatch_bytes_per_token(), deepseek_dispatch);
  EXPECT_DOUBLE_EQ(deepseek.combine_bytes_per_token(), deepseek_combine);

  // The others move BF16 both ways: two bytes per channel.
  for (const char* name : {"mixtral-8x7b", "qwen3-30b-a3b", "switch-base-128"}) {
    const MoeModel model = load_model(name);
    EXPECT_DOUBLE_EQ(model.dispatch_bytes_per_token(), model.hidden_size * 2.0) << name;
    EXPECT_DOUBLE_EQ(model.combine_bytes_per_token(), model.hidden_size * 2.0) << name;
  }
}

TEST(ModelBytes, ScaleCountRoundsUp) {
  // 100 channels in blocks of 32 need 4 scales (the last block is partial).
  MoeModel model;
  model.hidden_size = 100;
  model.dispatch_dtype = DType::kFp8;
  model.dispatch_scale_block = 32;
  EXPECT_DOUBLE_EQ(model.dispatch_bytes_per_token(), 100.0 + 4 * 4.0);
  // Without a scale block, FP8 is one byte per channel and nothing else.
  model.dispatch_scale_block = 0;
  EXPECT_DOUBLE_EQ(model.dispatch_bytes_per_token(), 100.0);
  // Scales belong to FP8 only.
  model.dispatch_dtype = DType::kFp32;
  model.dispatch_scale_block = 32;
  EXPECT_DOUBLE_EQ(model.dispatch_bytes_per_token(), 400.0);
}

TEST(ParseModel, FullMapping) {
  const MoeModel model = parse_text(R"(
name: my-moe
hidden_size: 4096
num_experts: 64
num_topk: 6
num_shared_experts: 2
moe_intermediate_size: 1408
num_layers: 28
dispatch_dtype: fp8
dispatch_scale_block: 128
combine_dtype: bf16
)");
  EXPECT_EQ(model.name, "my-moe");
  EXPECT_EQ(model.source, "model.yaml");
  EXPECT_EQ(model.hidden_size, 4096);
  EXPECT_EQ(model.num_experts, 64);
  EXPECT_EQ(model.num_topk, 6);
  EXPECT_EQ(model.num_shared_experts, 2);
  EXPECT_EQ(model.moe_intermediate_size, 1408);
  EXPECT_EQ(model.num_layers, 28);
  EXPECT_EQ(model.dispatch_dtype, DType::kFp8);
  EXPECT_EQ(model.dispatch_scale_block, 128);
  EXPECT_EQ(model.combine_dtype, DType::kBf16);
}

TEST(ParseModel, DefaultsAreBf16AndNoSharedExperts) {
  const MoeModel model =
      parse_text("hidden_size: 1024\nnum_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n");
  EXPECT_EQ(model.num_shared_experts, 0);
  EXPECT_EQ(model.dispatch_dtype, DType::kBf16);
  EXPECT_EQ(model.combine_dtype, DType::kBf16);
  EXPECT_EQ(model.dispatch_scale_block, 0);
  EXPECT_EQ(model.name, "model.yaml");
}

TEST(ParseModel, BaseOverridesOnlyTheGivenKeys) {
  const MoeModel model = parse_text("base: deepseek-v3\nnum_topk: 4\nname: ds-top4\n");
  const MoeModel deepseek = load_model("deepseek-v3");
  EXPECT_EQ(model.name, "ds-top4");
  EXPECT_EQ(model.num_topk, 4);
  EXPECT_EQ(model.hidden_size, deepseek.hidden_size);
  EXPECT_EQ(model.num_experts, deepseek.num_experts);
  EXPECT_EQ(model.num_layers, deepseek.num_layers);
  EXPECT_DOUBLE_EQ(model.dispatch_bytes_per_token(), deepseek.dispatch_bytes_per_token());
}

TEST(ParseModel, BaseWithAnotherDispatchDtypeDropsTheScales) {
  // BF16 dispatch carries no FP8 scales, so the base's scale block must not survive the override.
  const MoeModel model = parse_text("base: deepseek-v3\ndispatch_dtype: bf16\n");
  EXPECT_EQ(model.dispatch_scale_block, 0);
  EXPECT_DOUBLE_EQ(model.dispatch_bytes_per_token(), 7168 * 2.0);
}

TEST(ParseModel, UnknownKeyNamesFileAndKey) {
  const std::string error = error_of([] {
    parse_text(
        "hidden_size: 1024\nnum_expert: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n"
        "num_experts: 16\n",
        "custom.yaml");
  });
  EXPECT_NE(error.find("custom.yaml:2: num_expert: unknown key"), std::string::npos) << error;
}

TEST(ParseModel, TopkAboveExpertsIsRejected) {
  const std::string error = error_of([] {
    parse_text("hidden_size: 1024\nnum_experts: 8\nnum_topk: 9\nmoe_intermediate_size: 512\nnum_layers: 4\n",
               "custom.yaml");
  });
  EXPECT_NE(error.find("custom.yaml:3: num_topk: must be <= num_experts (8), got 9"), std::string::npos) << error;
}

TEST(ParseModel, ExpertsBelowTheBaseTopkBlameNumExperts) {
  // num_topk is not in the file, so the message points at the key that is.
  const std::string error = error_of([] { parse_text("base: mixtral-8x7b\nnum_experts: 1\n", "custom.yaml"); });
  EXPECT_NE(error.find("custom.yaml:2: num_experts: must be >= num_topk (2, from base mixtral-8x7b), got 1"),
            std::string::npos)
      << error;
}

TEST(ParseModel, BadDtypeListsTheChoices) {
  const std::string error = error_of([] { parse_text("base: mixtral-8x7b\ndispatch_dtype: fp6\n", "custom.yaml"); });
  EXPECT_NE(error.find("custom.yaml:2: dispatch_dtype: expected one of fp8, bf16, fp16, fp32, got 'fp6'"),
            std::string::npos)
      << error;
}

TEST(ParseModel, ScaleBlockNeedsFp8) {
  const std::string error =
      error_of([] { parse_text("base: mixtral-8x7b\ndispatch_scale_block: 128\n", "custom.yaml"); });
  EXPECT_NE(error.find("dispatch_scale_block: applies to fp8 dispatch only"), std::string::npos) << error;
}

TEST(ParseModel, MissingKeyIsNamed) {
  const std::string error = error_of(
      [] { parse_text("num_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n", "custom.yaml"); });
  EXPECT_NE(error.find("custom.yaml"), std::string::npos) << error;
  EXPECT_NE(error.find("hidden_size: missing"), std::string::npos) << error;
}

TEST(ParseModel, RangesAreChecked) {
  EXPECT_NE(error_of([] { parse_text("base: mixtral-8x7b\nhidden_size: 0\n"); }).find("hidden_size: must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_text("base: mixtral-8x7b\nnum_topk: 0\n"); }).find("num_topk: must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_text("base: mixtral-8x7b\nnum_shared_experts: -1\n");
            }).find("num_shared_experts: must be >= 0"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_text("base: no-such-model\n"); }).find("base: expected one of mixtral-8x7b"),
            std::string::npos);
}

TEST(LoadModel, YamlFile) {
  const TempFile file("model.yaml", "base: qwen3-30b-a3b\nnum_layers: 2\n");
  const MoeModel model = load_model(file.path());
  EXPECT_EQ(model.source, file.path());
  EXPECT_EQ(model.num_layers, 2);
  EXPECT_EQ(model.num_experts, 128);
}

TEST(LoadModel, YamlFileErrorsNameTheFile) {
  const TempFile file("bad.yaml", "base: qwen3-30b-a3b\nnum_topk: 200\n");
  const std::string error = error_of([&] { load_model(file.path()); });
  EXPECT_EQ(error.rfind(file.path() + ":2: num_topk: must be <= num_experts (128), got 200", 0), 0u) << error;
}

TEST(LoadModel, UnknownNameListsThePresets) {
  const std::string error = error_of([] { load_model("mixtral"); });
  EXPECT_EQ(error,
            "unknown model 'mixtral': not a preset (mixtral-8x7b, deepseek-v3, qwen3-30b-a3b, "
            "switch-base-128) and no such file");
}

TEST(LoadModel, HuggingFaceMixtralConfig) {
  // Abridged from Mixtral-8x7B's config.json; keys that are not ours (rope_theta, ...) are ignored.
  const TempFile file("config.json", R"({
  "architectures": ["MixtralForCausalLM"],
  "hidden_size": 4096,
  "intermediate_size": 14336,
  "model_type": "mixtral",
  "num_experts_per_tok": 2,
  "num_hidden_layers": 32,
  "num_local_experts": 8,
  "rope_theta": 1e6,
  "router_aux_loss_coef": 0.02,
  "sliding_window": null,
  "torch_dtype": "bfloat16"
})");
  const MoeModel model = load_model(file.path());
  EXPECT_EQ(model.source, file.path());
  EXPECT_EQ(model.hidden_size, 4096);
  EXPECT_EQ(model.num_experts, 8);
  EXPECT_EQ(model.num_topk, 2);
  EXPECT_EQ(model.num_shared_experts, 0);
  EXPECT_EQ(model.moe_intermediate_size, 14336);
  EXPECT_EQ(model.num_layers, 32);
  EXPECT_EQ(model.dispatch_dtype, DType::kBf16);
}

TEST(LoadModel, HuggingFaceDeepSeekConfig) {
  // DeepSeek spells the expert count n_routed_experts and has both intermediate sizes: the MoE one wins.
  const TempFile file("config.json", R"({
  "hidden_size": 7168,
  "intermediate_size": 18432,
  "moe_intermediate_size": 2048,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "quantization_config": {"fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
})");
  const MoeModel model = load_model(file.path());
  EXPECT_EQ(model.hidden_size, 7168);
  EXPECT_EQ(model.num_experts, 256);
  EXPECT_EQ(model.num_topk, 8);
  EXPECT_EQ(model.num_shared_experts, 1);
  EXPECT_EQ(model.moe_intermediate_size, 2048);
  EXPECT_EQ(model.num_layers, 61);
}

TEST(LoadModel, HuggingFaceQwenSharedExpertBySize) {
  // Qwen2-MoE has no shared-expert count, only the shared expert's size: a positive size means one.
  const TempFile file("config.json", R"({"hidden_size": 2048, "num_experts": 60, "num_experts_per_tok": 4,
    "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_hidden_layers": 24})");
  const MoeModel model = load_model(file.path());
  EXPECT_EQ(model.num_experts, 60);
  EXPECT_EQ(model.num_shared_experts, 1);
}

TEST(LoadModel, HuggingFaceSwitchConfigIsTop1) {
  // Switch configs name no top-k: Switch routing is top-1, recognised by num_experts with router_* keys.
  const TempFile file("config.json", R"({"d_model": 768, "d_ff": 3072, "num_experts": 128, "num_layers": 12,
    "router_jitter_noise": 0.01, "router_z_loss_coef": 0.001, "expert_capacity": 64})");
  const MoeModel model = load_model(file.path());
  EXPECT_EQ(model.hidden_size, 768);
  EXPECT_EQ(model.num_experts, 128);
  EXPECT_EQ(model.num_topk, 1);
  EXPECT_EQ(model.moe_intermediate_size, 3072);
  EXPECT_EQ(model.num_layers, 12);
}

TEST(LoadModel, HuggingFaceMissingKeysAreNamed) {
  const TempFile no_hidden("config.json", R"({"num_local_experts": 8, "num_experts_per_tok": 2,
    "intermediate_size": 14336, "num_hidden_layers": 32})");
  EXPECT_EQ(error_of([&] { load_model(no_hidden.path()); }),
            no_hidden.path() + ": expected one of hidden_size, d_model");

  const TempFile no_topk("config.json", R"({"hidden_size": 64, "num_experts": 8, "intermediate_size": 128,
    "num_hidden_layers": 2})");
  EXPECT_NE(error_of([&] { load_model(no_topk.path()); }).find(": expected one of num_experts_per_tok"),
            std::string::npos);

  const TempFile dense("config.json", R"({"hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32})");
  EXPECT_EQ(error_of([&] { load_model(dense.path()); }),
            dense.path() + ": expected one of num_local_experts, n_routed_experts, num_experts");
}

TEST(LoadModel, HuggingFaceTopkAboveExperts) {
  const TempFile file("config.json", R"({"hidden_size": 64, "num_local_experts": 4, "num_experts_per_tok": 5,
    "intermediate_size": 128, "num_hidden_layers": 2})");
  const std::string error = error_of([&] { load_model(file.path()); });
  EXPECT_NE(error.find("num_experts_per_tok: must be <= 4"), std::string::npos) << error;
}

// Every architecture field, so that two descriptions of one model (a preset and its config.json) can be compared.
void expect_same_architecture(const MoeModel& a, const MoeModel& b) {
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.num_experts, b.num_experts);
  EXPECT_EQ(a.num_topk, b.num_topk);
  EXPECT_EQ(a.num_shared_experts, b.num_shared_experts);
  EXPECT_EQ(a.moe_intermediate_size, b.moe_intermediate_size);
  EXPECT_EQ(a.shared_expert_intermediate_size, b.shared_expert_intermediate_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.first_k_dense, b.first_k_dense);
  EXPECT_EQ(a.moe_layer_period, b.moe_layer_period);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.gated_ffn, b.gated_ffn);
  EXPECT_EQ(a.attention, b.attention);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(a.kv_lora_rank, b.kv_lora_rank);
  EXPECT_EQ(a.qk_nope_head_dim, b.qk_nope_head_dim);
  EXPECT_EQ(a.qk_rope_head_dim, b.qk_rope_head_dim);
  EXPECT_EQ(a.v_head_dim, b.v_head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.num_mtp_layers, b.num_mtp_layers);
  EXPECT_EQ(a.router_scoring, b.router_scoring);
  EXPECT_EQ(a.num_expert_groups, b.num_expert_groups);
  EXPECT_EQ(a.num_topk_groups, b.num_topk_groups);
}

TEST(ModelPresets, ArchitectureFromThePublishedConfigs) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  EXPECT_EQ(mixtral.attention, AttentionKind::kGqa);
  EXPECT_EQ(mixtral.num_attention_heads, 32);
  EXPECT_EQ(mixtral.num_key_value_heads, 8);
  EXPECT_EQ(mixtral.head_dim, 128);
  EXPECT_EQ(mixtral.intermediate_size, 14336);
  EXPECT_EQ(mixtral.num_moe_layers(), 32);
  EXPECT_EQ(mixtral.vocab_size, 32000);
  EXPECT_EQ(mixtral.max_position_embeddings, 32768);
  EXPECT_FALSE(mixtral.tie_word_embeddings);
  EXPECT_TRUE(mixtral.gated_ffn);
  EXPECT_EQ(mixtral.router_scoring, RouterScoring::kSoftmax);
  EXPECT_EQ(mixtral.num_mtp_layers, 0);
  EXPECT_EQ(mixtral.num_expert_groups, 0);

  const MoeModel deepseek = load_model("deepseek-v3");
  EXPECT_EQ(deepseek.attention, AttentionKind::kMla);
  EXPECT_EQ(deepseek.num_attention_heads, 128);
  EXPECT_EQ(deepseek.num_key_value_heads, 128);
  EXPECT_EQ(deepseek.q_lora_rank, 1536);
  EXPECT_EQ(deepseek.kv_lora_rank, 512);
  EXPECT_EQ(deepseek.qk_nope_head_dim, 128);
  EXPECT_EQ(deepseek.qk_rope_head_dim, 64);
  EXPECT_EQ(deepseek.v_head_dim, 128);
  EXPECT_EQ(deepseek.qk_head_dim(), 192);
  EXPECT_EQ(deepseek.value_head_dim(), 128);
  EXPECT_EQ(deepseek.intermediate_size, 18432);
  EXPECT_EQ(deepseek.shared_expert_intermediate_size, 2048);
  EXPECT_EQ(deepseek.first_k_dense, 3);
  EXPECT_EQ(deepseek.moe_layer_period, 1);
  EXPECT_EQ(deepseek.num_moe_layers(), 58);
  EXPECT_EQ(deepseek.vocab_size, 129280);
  EXPECT_EQ(deepseek.max_position_embeddings, 163840);
  EXPECT_FALSE(deepseek.tie_word_embeddings);
  EXPECT_EQ(deepseek.num_mtp_layers, 1);
  EXPECT_EQ(deepseek.router_scoring, RouterScoring::kSigmoid);
  EXPECT_EQ(deepseek.num_expert_groups, 8);
  EXPECT_EQ(deepseek.num_topk_groups, 4);

  const MoeModel qwen = load_model("qwen3-30b-a3b");
  EXPECT_EQ(qwen.attention, AttentionKind::kGqa);
  EXPECT_EQ(qwen.num_attention_heads, 32);
  EXPECT_EQ(qwen.num_key_value_heads, 4);
  EXPECT_EQ(qwen.head_dim, 128);  // stated in its config: not 2048 / 32
  EXPECT_EQ(qwen.intermediate_size, 6144);
  EXPECT_EQ(qwen.num_moe_layers(), 48);
  EXPECT_EQ(qwen.vocab_size, 151936);
  EXPECT_EQ(qwen.max_position_embeddings, 40960);
  EXPECT_FALSE(qwen.tie_word_embeddings);
  EXPECT_EQ(qwen.router_scoring, RouterScoring::kSoftmax);

  const MoeModel switch_base = load_model("switch-base-128");
  EXPECT_EQ(switch_base.attention, AttentionKind::kMha);
  EXPECT_EQ(switch_base.num_attention_heads, 12);
  EXPECT_EQ(switch_base.num_key_value_heads, 12);
  EXPECT_EQ(switch_base.head_dim, 64);
  EXPECT_EQ(switch_base.intermediate_size, 3072);
  EXPECT_FALSE(switch_base.gated_ffn);
  EXPECT_EQ(switch_base.first_k_dense, 1);
  EXPECT_EQ(switch_base.moe_layer_period, 2);
  EXPECT_EQ(switch_base.vocab_size, 32128);
  EXPECT_TRUE(switch_base.tie_word_embeddings);
  EXPECT_EQ(switch_base.max_position_embeddings, 0);
}

TEST(ModelPresets, SummaryNamesTheAttention) {
  for (const auto& info : model_presets()) {
    const MoeModel model = load_model(info.name);
    EXPECT_NE(info.summary.find(std::string(", ") + attention_kind_name(model.attention) + ", "), std::string::npos)
        << info.summary;
  }
}

TEST(ModelLayers, FirstKDenseThenEveryPeriodthLayer) {
  // 10 layers, the first MoE layer at 1, then every third: 1, 4, 7 are MoE; the other seven are dense.
  MoeModel model;
  model.num_layers = 10;
  model.first_k_dense = 1;
  model.moe_layer_period = 3;
  std::vector<int> moe;
  for (int i = -1; i <= 10; ++i) {
    if (model.is_moe_layer(i)) moe.push_back(i);
  }
  EXPECT_EQ(moe, (std::vector<int>{1, 4, 7}));
  EXPECT_EQ(model.num_moe_layers(), 3);
  EXPECT_EQ(model.num_dense_layers(), 7);

  // The defaults make every layer MoE; a first MoE layer at the last layer leaves one.
  model.first_k_dense = 0;
  model.moe_layer_period = 1;
  EXPECT_EQ(model.num_moe_layers(), 10);
  model.first_k_dense = 9;
  EXPECT_EQ(model.num_moe_layers(), 1);
  EXPECT_TRUE(model.is_moe_layer(9));
  model.first_k_dense = 10;
  EXPECT_EQ(model.num_moe_layers(), 0);
}

// hidden 64, 4 heads of 16 (derived), 2 key-value heads; 8 experts of 32, top-2, one shared expert of 48; 5 layers
// of which 1 and 3 are MoE (first_k_dense 1, period 2) and 0, 2, 4 dense FFNs of 128; vocab 100, untied; one MTP.
MoeModel small_gqa() {
  return parse_text(R"(
hidden_size: 64
num_experts: 8
num_topk: 2
num_shared_experts: 1
shared_expert_intermediate_size: 48
moe_intermediate_size: 32
num_layers: 5
first_k_dense: 1
moe_layer_period: 2
intermediate_size: 128
num_attention_heads: 4
num_key_value_heads: 2
vocab_size: 100
num_mtp_layers: 1
)");
}

TEST(ModelParams, GqaByHand) {
  const MoeModel m = small_gqa();
  EXPECT_EQ(m.attention, AttentionKind::kGqa);
  EXPECT_EQ(m.head_dim, 16);
  // q 64 x 64, k and v 64 x (2 x 16) each, o 64 x 64.
  EXPECT_EQ(m.num_attention_params(), 4096 + 2048 + 2048 + 4096);
  // Gated: gate, up and down, each 64 x 32.
  EXPECT_EQ(m.num_expert_params(), 3 * 64 * 32);
  EXPECT_EQ(m.num_shared_expert_params(), 3 * 64 * 48);
  EXPECT_EQ(m.num_router_params(), 64 * 8);
  EXPECT_EQ(m.num_dense_ffn_params(), 3 * 64 * 128);
  // Layers add two norms of 64.
  EXPECT_EQ(m.num_dense_layer_params(), 12288 + 24576 + 128);
  EXPECT_EQ(m.num_moe_layer_params(), 12288 + 8 * 6144 + 9216 + 512 + 128);
  EXPECT_EQ(m.num_activated_moe_layer_params(), 12288 + 2 * 6144 + 9216 + 512 + 128);
  EXPECT_EQ(m.num_embedding_params(), 6400);
  EXPECT_EQ(m.num_head_params(), 6400);
  // Three dense layers, two MoE layers, the final norm, the embedding and the head.
  EXPECT_EQ(m.num_params(), 3 * 36992 + 2 * 71296 + 64 + 2 * 6400);
  EXPECT_EQ(m.num_params(), 266432);
  EXPECT_EQ(m.num_activated_params(), 3 * 36992 + 2 * 34432 + 64 + 2 * 6400);
  // An MTP module: one MoE layer, the 2 x 64 -> 64 projection and three norms.
  EXPECT_EQ(m.num_mtp_params(), 71296 + 2 * 64 * 64 + 3 * 64);
  // Keys and values of 2 heads of 16.
  EXPECT_EQ(m.kv_cache_elements_per_token(), 2 * 2 * 16);
}

TEST(ModelParams, MhaUngatedAndTied) {
  // Switch-style: two FFN matrices (in, out), and the head reuses the embedding.
  const MoeModel m = parse_text(R"(
hidden_size: 64
num_experts: 4
num_topk: 1
moe_intermediate_size: 32
num_layers: 2
num_attention_heads: 4
gated_ffn: false
vocab_size: 100
tie_word_embeddings: true
)");
  EXPECT_EQ(m.attention, AttentionKind::kMha);
  EXPECT_EQ(m.num_key_value_heads, 4);
  EXPECT_EQ(m.num_attention_params(), 4 * 64 * 64);
  EXPECT_EQ(m.num_expert_params(), 2 * 64 * 32);
  EXPECT_EQ(m.num_head_params(), 0);
  EXPECT_EQ(m.num_params(), 2 * (16384 + 4 * 4096 + 256 + 128) + 64 + 6400);
  EXPECT_EQ(m.num_activated_params(), 2 * (16384 + 4096 + 256 + 128) + 64 + 6400);
  EXPECT_EQ(m.num_mtp_params(), 0);
}

TEST(ModelParams, MlaByHand) {
  // hidden 64, 4 heads; query latent 32, key-value latent 16, 8 + 4 query/key channels per head, 8 value channels.
  MoeModel m = parse_text(R"(
hidden_size: 64
num_experts: 4
num_topk: 1
moe_intermediate_size: 32
num_layers: 1
num_attention_heads: 4
q_lora_rank: 32
kv_lora_rank: 16
qk_nope_head_dim: 8
qk_rope_head_dim: 4
v_head_dim: 8
)");
  EXPECT_EQ(m.attention, AttentionKind::kMla);
  EXPECT_EQ(m.num_key_value_heads, 4);
  EXPECT_EQ(m.head_dim, 0);
  EXPECT_EQ(m.qk_head_dim(), 12);
  EXPECT_EQ(m.value_head_dim(), 8);
  // Query: down 64 x 32, its norm 32, up 32 x 4 x 12.
  const std::int64_t query = 2048 + 32 + 1536;
  // Key-value: down 64 x (16 + 4) (latent and shared RoPE key), its norm 16, up 16 x 4 x (8 + 8).
  const std::int64_t key_value = 1280 + 16 + 1024;
  // Output: 4 x 8 -> 64.
  const std::int64_t output = 2048;
  EXPECT_EQ(m.num_attention_params(), query + key_value + output);
  EXPECT_EQ(m.num_attention_params(), 7984);
  // The cache holds the latent and the RoPE key: 16 + 4.
  EXPECT_EQ(m.kv_cache_elements_per_token(), 20);

  // Without query compression the query is one 64 x 4 x 12 projection.
  m.q_lora_rank = 0;
  EXPECT_EQ(m.num_attention_params(), 3072 + key_value + output);
}

TEST(ModelParams, NeedTheAttentionAndTheVocabulary) {
  // A model that describes only its MoE layers still works for the All-to-All, but cannot be counted.
  const MoeModel a2a_only =
      parse_text("hidden_size: 64\nnum_experts: 4\nnum_topk: 1\nmoe_intermediate_size: 32\nnum_layers: 2\n", "m.yaml");
  EXPECT_EQ(a2a_only.num_expert_params(), 3 * 64 * 32);  // needs neither
  EXPECT_EQ(error_of([&] { (void)a2a_only.num_params(); }),
            "m.yaml: num_attention_heads: not given, and the attention's parameter count needs it (set it, or start "
            "from a preset with base:)");
  EXPECT_NE(error_of([&] { (void)a2a_only.kv_cache_elements_per_token(); }).find("num_attention_heads"),
            std::string::npos);
  const MoeModel no_vocab = parse_text(
      "hidden_size: 64\nnum_experts: 4\nnum_topk: 1\nmoe_intermediate_size: 32\nnum_layers: 2\n"
      "num_attention_heads: 4\n",
      "m.yaml");
  EXPECT_NE(error_of([&] { (void)no_vocab.num_params(); }).find("m.yaml: vocab_size: not given"), std::string::npos);
}

TEST(ParseModel, EveryArchitectureKey) {
  const MoeModel m = parse_text(R"(
hidden_size: 2048
num_experts: 64
num_topk: 6
num_shared_experts: 2
moe_intermediate_size: 1408
shared_expert_intermediate_size: 2816
num_layers: 27
first_k_dense: 1
moe_layer_period: 1
intermediate_size: 10944
gated_ffn: true
attention: gqa
num_attention_heads: 16
num_key_value_heads: 4
head_dim: 192
vocab_size: 102400
tie_word_embeddings: true
max_position_embeddings: 163840
num_mtp_layers: 2
router_scoring: sigmoid
num_expert_groups: 8
num_topk_groups: 3
)");
  EXPECT_EQ(m.shared_expert_intermediate_size, 2816);
  EXPECT_EQ(m.first_k_dense, 1);
  EXPECT_EQ(m.moe_layer_period, 1);
  EXPECT_EQ(m.num_moe_layers(), 26);
  EXPECT_EQ(m.intermediate_size, 10944);
  EXPECT_TRUE(m.gated_ffn);
  EXPECT_EQ(m.attention, AttentionKind::kGqa);
  EXPECT_EQ(m.num_attention_heads, 16);
  EXPECT_EQ(m.num_key_value_heads, 4);
  EXPECT_EQ(m.head_dim, 192);
  EXPECT_EQ(m.vocab_size, 102400);
  EXPECT_TRUE(m.tie_word_embeddings);
  EXPECT_EQ(m.max_position_embeddings, 163840);
  EXPECT_EQ(m.num_mtp_layers, 2);
  EXPECT_EQ(m.router_scoring, RouterScoring::kSigmoid);
  EXPECT_EQ(m.num_expert_groups, 8);
  EXPECT_EQ(m.num_topk_groups, 3);

  const MoeModel mla = parse_text(R"(
hidden_size: 2048
num_experts: 64
num_topk: 6
moe_intermediate_size: 1408
num_layers: 27
attention: mla
num_attention_heads: 16
q_lora_rank: 0
kv_lora_rank: 512
qk_nope_head_dim: 128
qk_rope_head_dim: 64
v_head_dim: 128
)");
  EXPECT_EQ(mla.attention, AttentionKind::kMla);
  EXPECT_EQ(mla.num_key_value_heads, 16);
  EXPECT_EQ(mla.q_lora_rank, 0);
  EXPECT_EQ(mla.kv_lora_rank, 512);
  EXPECT_EQ(mla.qk_nope_head_dim, 128);
  EXPECT_EQ(mla.qk_rope_head_dim, 64);
  EXPECT_EQ(mla.v_head_dim, 128);
}

TEST(ParseModel, ArchitectureDefaults) {
  // Only the All-to-All's keys: every MoE layer, no dense FFN, no attention or vocabulary described, gated,
  // untied, softmax, no groups, no MTP; the shared experts as wide as the routed ones.
  const MoeModel m =
      parse_text("hidden_size: 1024\nnum_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n");
  EXPECT_EQ(m.shared_expert_intermediate_size, 512);
  EXPECT_EQ(m.first_k_dense, 0);
  EXPECT_EQ(m.moe_layer_period, 1);
  EXPECT_EQ(m.num_moe_layers(), 4);
  EXPECT_EQ(m.intermediate_size, 0);
  EXPECT_TRUE(m.gated_ffn);
  EXPECT_EQ(m.attention, AttentionKind::kMha);
  EXPECT_EQ(m.num_attention_heads, 0);
  EXPECT_EQ(m.num_key_value_heads, 0);
  EXPECT_EQ(m.head_dim, 0);
  EXPECT_EQ(m.kv_lora_rank, 0);
  EXPECT_EQ(m.vocab_size, 0);
  EXPECT_FALSE(m.tie_word_embeddings);
  EXPECT_EQ(m.max_position_embeddings, 0);
  EXPECT_EQ(m.num_mtp_layers, 0);
  EXPECT_EQ(m.router_scoring, RouterScoring::kSoftmax);
  EXPECT_EQ(m.num_expert_groups, 0);
  EXPECT_EQ(m.num_topk_groups, 0);

  // With heads alone: mha, head_dim = hidden / heads.
  const MoeModel heads = parse_text(
      "hidden_size: 1024\nnum_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n"
      "num_attention_heads: 8\n");
  EXPECT_EQ(heads.attention, AttentionKind::kMha);
  EXPECT_EQ(heads.num_key_value_heads, 8);
  EXPECT_EQ(heads.head_dim, 128);
}

TEST(ParseModel, AttentionKindIsDerived) {
  const std::string moe =
      "hidden_size: 1024\nnum_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n";
  EXPECT_EQ(parse_text(moe + "num_attention_heads: 8\nnum_key_value_heads: 8\n").attention, AttentionKind::kMha);
  EXPECT_EQ(parse_text(moe + "num_attention_heads: 8\nnum_key_value_heads: 1\n").attention, AttentionKind::kGqa);
  EXPECT_EQ(
      parse_text(moe + "num_attention_heads: 8\nkv_lora_rank: 64\nqk_rope_head_dim: 16\nv_head_dim: 32\n").attention,
      AttentionKind::kMla);
}

TEST(ParseModel, BaseKeepsItsArchitecture) {
  const MoeModel model = parse_text("base: deepseek-v3\nnum_topk: 4\n");
  const MoeModel deepseek = load_model("deepseek-v3");
  MoeModel expected = deepseek;
  expected.num_topk = 4;
  expect_same_architecture(model, expected);
}

TEST(ParseModel, BaseDerivedDefaultsFollowTheirInputs) {
  // Mixtral's head_dim is hidden / heads (its config has no head_dim key), so it follows a new hidden size;
  // Qwen3 states its head_dim, which stays.
  EXPECT_EQ(parse_text("base: mixtral-8x7b\nhidden_size: 8192\n").head_dim, 256);
  EXPECT_EQ(parse_text("base: qwen3-30b-a3b\nhidden_size: 1024\n").head_dim, 128);
  // An mha base stays mha with more heads; a gqa base keeps its key-value heads.
  const MoeModel switch16 = parse_text("base: switch-base-128\nnum_attention_heads: 16\n");
  EXPECT_EQ(switch16.attention, AttentionKind::kMha);
  EXPECT_EQ(switch16.num_key_value_heads, 16);
  EXPECT_EQ(switch16.head_dim, 48);
  const MoeModel mixtral64 = parse_text("base: mixtral-8x7b\nnum_attention_heads: 64\n");
  EXPECT_EQ(mixtral64.num_key_value_heads, 8);
  EXPECT_EQ(mixtral64.head_dim, 64);
  // DeepSeek's shared expert is as wide as a routed one, and stays so.
  EXPECT_EQ(parse_text("base: deepseek-v3\nmoe_intermediate_size: 1024\n").shared_expert_intermediate_size, 1024);
}

TEST(ParseModel, BaseMlaToGqaDropsTheLatents) {
  const MoeModel model = parse_text("base: deepseek-v3\nattention: gqa\nnum_key_value_heads: 8\n");
  EXPECT_EQ(model.attention, AttentionKind::kGqa);
  EXPECT_EQ(model.num_key_value_heads, 8);
  EXPECT_EQ(model.head_dim, 7168 / 128);
  EXPECT_EQ(model.q_lora_rank, 0);
  EXPECT_EQ(model.kv_lora_rank, 0);
  EXPECT_EQ(model.qk_nope_head_dim, 0);
  EXPECT_EQ(model.qk_rope_head_dim, 0);
  EXPECT_EQ(model.v_head_dim, 0);
  // Setting the latent to 0 says the same without naming the kind.
  EXPECT_EQ(parse_text("base: deepseek-v3\nkv_lora_rank: 0\n").attention, AttentionKind::kMha);
}

// The error that parsing `yaml` as custom.yaml throws.
std::string yaml_error(const std::string& yaml) {
  return error_of([&] { parse_text(yaml, "custom.yaml"); });
}

TEST(ParseModel, ArchitectureErrorsNameFileLineAndKey) {
  const std::string moe =
      "hidden_size: 1024\nnum_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n";
  // Line 6 and on are the key under test.
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nnum_key_value_heads: 3\n"),
            "custom.yaml:7: num_key_value_heads: num_key_value_heads (3) must divide num_attention_heads (8)");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nnum_key_value_heads: 16\n"),
            "custom.yaml:7: num_key_value_heads: num_key_value_heads (16) must divide num_attention_heads (8)");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nnum_key_value_heads: 2\nattention: mha\n"),
            "custom.yaml:8: attention: mha needs num_key_value_heads = num_attention_heads (8), got 2 (that is gqa)");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nattention: gqa\n"),
            "custom.yaml:7: attention: gqa needs num_key_value_heads < num_attention_heads (8), got 8 (that is mha)");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nnum_key_value_heads: 2\nqk_rope_head_dim: 64\n"),
            "custom.yaml:8: qk_rope_head_dim: applies to mla attention only (kv_lora_rank > 0 or attention: mla "
            "selects it), got 64");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nattention: mha\nkv_lora_rank: 64\n"),
            "custom.yaml:8: kv_lora_rank: applies to mla attention only (attention is mha), got 64");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nattention: mla\nqk_rope_head_dim: 64\nv_head_dim: 64\n"),
            "custom.yaml:7: attention: mla needs kv_lora_rank >= 1, got 0");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nkv_lora_rank: 64\nv_head_dim: 64\n"),
            "custom.yaml:1: qk_rope_head_dim: mla needs qk_nope_head_dim + qk_rope_head_dim >= 1, got 0");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nkv_lora_rank: 64\nqk_rope_head_dim: 8\nv_head_dim: 8\n"
                             "num_key_value_heads: 2\n"),
            "custom.yaml:10: num_key_value_heads: mla has one key-value head per query head: must equal "
            "num_attention_heads (8), got 2");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nkv_lora_rank: 64\nqk_rope_head_dim: 8\nv_head_dim: 8\n"
                             "head_dim: 64\n"),
            "custom.yaml:10: head_dim: mla has no single head_dim (its shape is qk_nope_head_dim, qk_rope_head_dim "
            "and v_head_dim)");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 6\n"),
            "custom.yaml:1: head_dim: missing: needed when hidden_size (1024) is not a multiple of num_attention_heads "
            "(6)");
  EXPECT_EQ(yaml_error(moe + "num_key_value_heads: 2\n"),
            "custom.yaml:6: num_key_value_heads: needs num_attention_heads (the attention is not described without "
            "it)");
  EXPECT_EQ(yaml_error(moe + "num_attention_heads: 8\nhead_dim: 0\n"), "custom.yaml:7: head_dim: must be >= 1, got 0");
}

TEST(ParseModel, LayerAndRoutingErrorsNameFileLineAndKey) {
  const std::string moe =
      "hidden_size: 1024\nnum_experts: 16\nnum_topk: 2\nmoe_intermediate_size: 512\nnum_layers: 4\n";
  EXPECT_EQ(yaml_error(moe + "first_k_dense: 4\nintermediate_size: 64\n"),
            "custom.yaml:6: first_k_dense: leaves no MoE layer: the first MoE layer (4) must be < num_layers (4)");
  EXPECT_EQ(yaml_error(moe + "first_k_dense: 1\n"),
            "custom.yaml:6: first_k_dense: the dense layers' FFN size must be >= 1: 1 of the 4 layers are dense "
            "(first MoE layer 1, moe_layer_period 1), got intermediate_size 0");
  EXPECT_EQ(yaml_error(moe + "moe_layer_period: 0\n"), "custom.yaml:6: moe_layer_period: must be >= 1, got 0");
  EXPECT_EQ(yaml_error(moe + "router_scoring: sparsemax\n"),
            "custom.yaml:6: router_scoring: expected one of softmax, sigmoid, got 'sparsemax'");
  EXPECT_EQ(yaml_error(moe + "num_expert_groups: 3\nnum_topk_groups: 1\n"),
            "custom.yaml:6: num_expert_groups: num_expert_groups (3) must divide num_experts (16)");
  EXPECT_EQ(yaml_error(moe + "num_expert_groups: 4\nnum_topk_groups: 5\n"),
            "custom.yaml:7: num_topk_groups: num_topk_groups must be in [1, 4] with 4 expert groups, got 5");
  EXPECT_EQ(yaml_error(moe + "num_expert_groups: 4\n"),
            "custom.yaml:6: num_expert_groups: num_topk_groups must be in [1, 4] with 4 expert groups, got 0");
  EXPECT_EQ(yaml_error(moe + "num_topk_groups: 2\n"),
            "custom.yaml:6: num_topk_groups: needs num_expert_groups > 0, got 2 without expert groups");
  EXPECT_EQ(yaml_error("hidden_size: 1024\nnum_experts: 16\nnum_topk: 6\nmoe_intermediate_size: 512\nnum_layers: 4\n"
                       "num_expert_groups: 8\nnum_topk_groups: 2\n"),
            "custom.yaml:7: num_topk_groups: num_topk_groups (2) groups of 2 experts hold fewer than num_topk (6) "
            "experts");
  EXPECT_EQ(yaml_error(moe + "tie_word_embeddings: maybe\n"),
            "custom.yaml:6: tie_word_embeddings: expected true or false, got 'maybe'");
  // With a base, a relation broken by an override blames the key the file gives.
  EXPECT_EQ(yaml_error("base: deepseek-v3\nnum_layers: 3\n"),
            "custom.yaml:2: num_layers: leaves no MoE layer: the first MoE layer (3) must be < num_layers (3)");
  EXPECT_EQ(yaml_error("base: deepseek-v3\nnum_experts: 100\n"),
            "custom.yaml:2: num_experts: num_expert_groups (8) must divide num_experts (100)");
}

TEST(LoadModel, HuggingFaceConfigsMatchThePresets) {
  // The keys of each preset's published config.json that the model reads (abridged: the rest are ignored), read
  // back into the preset's architecture.
  const TempFile mixtral("config.json", R"({"hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "tie_word_embeddings": false, "vocab_size": 32000,
    "hidden_act": "silu", "rope_theta": 1e6, "sliding_window": null})");
  expect_same_architecture(load_model(mixtral.path()), load_model("mixtral-8x7b"));

  const TempFile deepseek("config.json", R"({"first_k_dense_replace": 3, "hidden_size": 7168,
    "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 163840, "moe_intermediate_size": 2048,
    "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": true,
    "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": false, "topk_group": 4,
    "topk_method": "noaux_tc", "v_head_dim": 128, "vocab_size": 129280})");
  expect_same_architecture(load_model(deepseek.path()), load_model("deepseek-v3"));

  const TempFile qwen("config.json", R"({"decoder_sparse_step": 1, "head_dim": 128, "hidden_size": 2048,
    "intermediate_size": 6144, "max_position_embeddings": 40960, "mlp_only_layers": [], "moe_intermediate_size": 768,
    "norm_topk_prob": true, "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 48, "num_key_value_heads": 4, "tie_word_embeddings": false, "vocab_size": 151936})");
  expect_same_architecture(load_model(qwen.path()), load_model("qwen3-30b-a3b"));

  const TempFile switch_base("config.json", R"({"d_ff": 3072, "d_kv": 64, "d_model": 768, "decoder_sparse_step": 2,
    "dense_act_fn": "relu", "encoder_sparse_step": 2, "expert_capacity": 64, "feed_forward_proj": "relu",
    "is_encoder_decoder": true, "is_gated_act": false, "num_decoder_layers": 12, "num_experts": 128,
    "num_heads": 12, "num_layers": 12, "num_selected_experts": 1, "num_sparse_decoder_layers": 6,
    "num_sparse_encoder_layers": 6, "router_jitter_noise": 0.01, "router_z_loss_coef": 0.001,
    "vocab_size": 32128})");
  expect_same_architecture(load_model(switch_base.path()), load_model("switch-base-128"));
}

TEST(LoadModel, HuggingFaceLayerRules) {
  // DeepSeek: MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0; with 3 and 2 the first is layer 4.
  const TempFile freq("config.json", R"({"hidden_size": 64, "n_routed_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "intermediate_size": 128, "num_hidden_layers": 10, "first_k_dense_replace": 3,
    "moe_layer_freq": 2})");
  const MoeModel deepseek = load_model(freq.path());
  EXPECT_EQ(deepseek.first_k_dense, 4);
  EXPECT_EQ(deepseek.moe_layer_period, 2);
  EXPECT_EQ(deepseek.num_moe_layers(), 3);  // 4, 6, 8

  // Qwen: MoE when (i + 1) % decoder_sparse_step == 0: with 2, layers 1, 3, 5, 7.
  const TempFile step("config.json", R"({"hidden_size": 64, "num_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "intermediate_size": 128, "num_hidden_layers": 8, "decoder_sparse_step": 2})");
  const MoeModel qwen = load_model(step.path());
  EXPECT_EQ(qwen.first_k_dense, 1);
  EXPECT_EQ(qwen.moe_layer_period, 2);
  EXPECT_EQ(qwen.num_moe_layers(), 4);

  // Dense layers at listed positions do not fit the rule.
  const TempFile listed("config.json", R"({"hidden_size": 64, "num_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "intermediate_size": 128, "num_hidden_layers": 8,
    "mlp_only_layers": [0, 5]})");
  EXPECT_EQ(error_of([&] { load_model(listed.path()); }),
            listed.path() +
                ":3: mlp_only_layers: not supported: dense layers at listed positions cannot be described by a first "
                "MoE layer and a period (expected an empty list)");

  // An encoder-decoder whose stacks are sparse at different steps has no single decoder-only equivalent.
  const TempFile steps("config.json", R"({"d_model": 64, "num_experts": 8, "d_ff": 128, "num_layers": 4,
    "num_decoder_layers": 4, "num_heads": 4, "d_kv": 16, "router_z_loss_coef": 0.001,
    "encoder_sparse_step": 2,
    "decoder_sparse_step": 0})");
  EXPECT_NE(error_of([&] { load_model(steps.path()); })
                .find(steps.path() + ":4: decoder_sparse_step: not supported: an encoder-decoder is read as one "
                                     "decoder-only stack"),
            std::string::npos);

  // A DeepSeek first_k_dense_replace of every layer leaves no MoE layer.
  const TempFile none("config.json", R"({"hidden_size": 64, "n_routed_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "intermediate_size": 128, "num_hidden_layers": 4,
    "first_k_dense_replace": 4})");
  EXPECT_EQ(
      error_of([&] { load_model(none.path()); }),
      none.path() +
          ":3: first_k_dense_replace: leaves no MoE layer: the first MoE layer (4) must be < num_hidden_layers (4)");
}

TEST(LoadModel, HuggingFaceAttentionAndDefaults) {
  // DeepSeek-V2-Lite spells "no query compression" as a null q_lora_rank; a head_dim beside MLA is ignored.
  const TempFile lite("config.json", R"({"hidden_size": 2048, "n_routed_experts": 64, "num_experts_per_tok": 6,
    "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
    "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "head_dim": 64, "n_group": 1, "topk_group": 1, "scoring_func": "softmax"})");
  const MoeModel mla = load_model(lite.path());
  EXPECT_EQ(mla.attention, AttentionKind::kMla);
  EXPECT_EQ(mla.q_lora_rank, 0);
  EXPECT_EQ(mla.head_dim, 0);
  EXPECT_EQ(mla.qk_head_dim(), 192);
  EXPECT_EQ(mla.num_expert_groups, 1);
  EXPECT_EQ(mla.router_scoring, RouterScoring::kSoftmax);

  // Without head_dim, hidden / heads; without num_key_value_heads, mha; without tie_word_embeddings, untied (the
  // decoder-only families' default); no vocabulary, no positions, no MTP.
  const TempFile plain("config.json", R"({"hidden_size": 1024, "num_local_experts": 8, "num_experts_per_tok": 2,
    "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 8})");
  const MoeModel mha = load_model(plain.path());
  EXPECT_EQ(mha.attention, AttentionKind::kMha);
  EXPECT_EQ(mha.num_key_value_heads, 8);
  EXPECT_EQ(mha.head_dim, 128);
  EXPECT_FALSE(mha.tie_word_embeddings);
  EXPECT_TRUE(mha.gated_ffn);
  EXPECT_EQ(mha.vocab_size, 0);
  EXPECT_EQ(mha.max_position_embeddings, 0);
  EXPECT_EQ(mha.num_mtp_layers, 0);
  EXPECT_EQ(mha.intermediate_size, 2048);

  // A gated T5 feed-forward (feed_forward_proj "gated-gelu") has three matrices; an encoder-decoder ties by default.
  const TempFile gated("config.json", R"({"d_model": 64, "num_experts": 8, "d_ff": 128, "num_layers": 2,
    "num_heads": 4, "router_z_loss_coef": 0.001, "is_encoder_decoder": true, "feed_forward_proj": "gated-gelu"})");
  const MoeModel t5 = load_model(gated.path());
  EXPECT_TRUE(t5.gated_ffn);
  EXPECT_TRUE(t5.tie_word_embeddings);
  EXPECT_EQ(t5.num_layers, 4);  // no num_decoder_layers: as many as the encoder's, as in transformers
  EXPECT_EQ(t5.num_moe_layers(), 4);
}

TEST(LoadModel, HuggingFaceInconsistentFilesNameTheKey) {
  const TempFile kv("config.json", R"({"hidden_size": 1024, "num_local_experts": 8, "num_experts_per_tok": 2,
    "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 3})");
  EXPECT_EQ(error_of([&] { load_model(kv.path()); }),
            kv.path() + ":3: num_key_value_heads: num_key_value_heads (3) must divide num_attention_heads (8)");

  const TempFile head_dim("config.json", R"({"hidden_size": 1000, "num_local_experts": 8, "num_experts_per_tok": 2,
    "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 16})");
  EXPECT_EQ(error_of([&] { load_model(head_dim.path()); }),
            head_dim.path() +
                ":1: head_dim: missing: needed when hidden_size (1000) is not a multiple of num_attention_heads (16)");

  const TempFile groups("config.json", R"({"hidden_size": 64, "n_routed_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "num_hidden_layers": 2,
    "n_group": 3, "topk_group": 1})");
  EXPECT_EQ(error_of([&] { load_model(groups.path()); }),
            groups.path() + ":3: n_group: n_group (3) must divide n_routed_experts (8)");

  const TempFile scoring("config.json", R"({"hidden_size": 64, "n_routed_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "num_hidden_layers": 2, "scoring_func": "softplus"})");
  EXPECT_NE(error_of([&] {
              load_model(scoring.path());
            }).find(":2: scoring_func: expected one of softmax, sigmoid, got 'softplus'"),
            std::string::npos);

  const TempFile dense("config.json", R"({"hidden_size": 64, "n_routed_experts": 8, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "num_hidden_layers": 4,
    "first_k_dense_replace": 1})");
  EXPECT_EQ(error_of([&] { load_model(dense.path()); }),
            dense.path() +
                ":3: first_k_dense_replace: the dense layers' FFN size must be >= 1: 1 of the 4 layers are dense "
                "(first MoE layer 1, moe_layer_period 1), got intermediate_size 0");
}

TEST(LoadModel, YamlFileWithBaseAndArchitectureKeys) {
  const TempFile file("model.yaml", "base: qwen3-30b-a3b\nnum_layers: 4\nfirst_k_dense: 1\nvocab_size: 1000\n");
  const MoeModel model = load_model(file.path());
  EXPECT_EQ(model.num_layers, 4);
  EXPECT_EQ(model.num_moe_layers(), 3);
  EXPECT_EQ(model.intermediate_size, 6144);  // the base's, now used by layer 0
  EXPECT_EQ(model.vocab_size, 1000);
  EXPECT_EQ(model.head_dim, 128);
  // Layer 0 dense, three MoE layers; the untied embedding and head of 1000 x 2048.
  EXPECT_EQ(model.num_params(),
            model.num_dense_layer_params() + 3 * model.num_moe_layer_params() + 2048 + std::int64_t{2} * 1000 * 2048);
}

}  // namespace
}  // namespace moesim::workloads
