#include "workloads/model.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

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
  EXPECT_EQ(switch_base.num_layers, 12);
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

}  // namespace
}  // namespace moesim::workloads
