#include "workloads/layout.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

namespace moesim::workloads {
namespace {

using test::error_of;

// The first problem validate_layout reports, or "" for a valid layout.
std::string problem_of(const ParallelLayout& layout, const MoeModel& model, int num_gpus) {
  const auto problems = layout_problems(layout, model, num_gpus);
  return problems.empty() ? "" : problems.front();
}

TEST(ParseLayout, ReadsEveryKey) {
  const ParallelLayout layout = parse_layout("dp=8,tp=2,pp=4,ep=16,etp=1,vpp=2,mbs=2,gbs=512", 64);
  EXPECT_EQ(layout.dp, 8);
  EXPECT_EQ(layout.tp, 2);
  EXPECT_EQ(layout.pp, 4);
  EXPECT_EQ(layout.ep, 16);
  EXPECT_EQ(layout.etp, 1);
  EXPECT_EQ(layout.vpp, 2);
  EXPECT_EQ(layout.mbs, 2);
  EXPECT_EQ(layout.gbs, 512);
  EXPECT_EQ(layout.num_gpus(), 64);
  EXPECT_EQ(layout.edp(), 1);  // dp x tp / (ep x etp) = 16 / 16
}

TEST(ParseLayout, DefaultsDeriveDpAndGbs) {
  // Nothing given: tp = pp = ep = etp = vpp = mbs = 1, dp = all 16 GPUs, gbs = mbs x dp = 16.
  const ParallelLayout all_defaults = parse_layout("", 16);
  EXPECT_EQ(format_layout(all_defaults), "dp=16,tp=1,pp=1,ep=1,etp=1,vpp=1,mbs=1,gbs=16");
  // dp = 64 / (tp 2 x pp 4) = 8; gbs = mbs 2 x dp 8 = 16. Spaces around items are allowed.
  const ParallelLayout derived = parse_layout(" tp=2, pp=4 ,mbs=2", 64);
  EXPECT_EQ(derived.dp, 8);
  EXPECT_EQ(derived.gbs, 16);
  // A given dp is kept even when the GPU count disagrees: validate_layout reports that, naming both.
  EXPECT_EQ(parse_layout("dp=3", 64).dp, 3);
}

TEST(ParseLayout, FormatRoundTrips) {
  const ParallelLayout layout{4, 2, 8, 8, 1, 2, 1, 256};
  EXPECT_EQ(format_layout(layout), "dp=4,tp=2,pp=8,ep=8,etp=1,vpp=2,mbs=1,gbs=256");
  EXPECT_EQ(parse_layout(format_layout(layout), 0), layout);
}

TEST(ParseLayout, ErrorsNameTheKey) {
  EXPECT_EQ(error_of([] { parse_layout("dp=8,zz=2", 8); }),
            "layout: zz: unknown key; expected dp, tp, pp, ep, etp, vpp, mbs or gbs");
  EXPECT_EQ(error_of([] { parse_layout("tp=two", 8); }), "layout: tp: must be an integer >= 1, got 'two'");
  EXPECT_EQ(error_of([] { parse_layout("tp=2.5", 8); }), "layout: tp: must be an integer >= 1, got '2.5'");
  EXPECT_EQ(error_of([] { parse_layout("tp=", 8); }), "layout: tp: must be an integer >= 1, got ''");
  EXPECT_EQ(error_of([] { parse_layout("pp=0", 8); }), "layout: pp: must be an integer >= 1, got '0'");
  EXPECT_EQ(error_of([] { parse_layout("ep=-4", 8); }), "layout: ep: must be an integer >= 1, got '-4'");
  EXPECT_EQ(error_of([] { parse_layout("mbs=99999999999", 8); }),
            "layout: mbs: must be an integer <= 2147483647, got '99999999999'");
  EXPECT_EQ(error_of([] { parse_layout("tp=2,pp=2,tp=4", 8); }), "layout: tp: given twice");
  EXPECT_EQ(error_of([] { parse_layout("tp=2,,pp=2", 8); }),
            "layout: expected key=value items separated by commas, got ''");
  EXPECT_EQ(error_of([] { parse_layout("tp 2", 8); }),
            "layout: expected key=value items separated by commas, got 'tp 2'");
  EXPECT_EQ(error_of([] { parse_layout("tp=4,pp=3", 8); }),
            "layout: dp: not given, and the GPU count (8) is not a multiple of tp x pp (12) to derive it from");
}

TEST(ValidateLayout, AcceptsMegatronStyleLayouts) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  // 64 GPUs: 8 x 2 x 4; ep 8 x etp 1 divides dp x tp = 16; 32 layers on 4 stages; gbs 512 = 32 x (mbs 2 x dp 8).
  EXPECT_NO_THROW(validate_layout(parse_layout("dp=8,tp=2,pp=4,ep=8,mbs=2,gbs=512", 64), mixtral, 64));
  // ep larger than dp: the EP group spans the data x tensor ranks of a stage (2 x 4 = 8 = ep).
  EXPECT_NO_THROW(validate_layout(parse_layout("dp=2,tp=4,pp=1,ep=8", 8), mixtral, 8));
  const MoeModel deepseek = load_model("deepseek-v3");
  EXPECT_NO_THROW(validate_layout(parse_layout("dp=128,tp=1,pp=16,ep=64,mbs=1,gbs=15360", 2048), deepseek, 2048));
}

TEST(ValidateLayout, EachRuleSaysWhatMustDivideWhat) {
  const MoeModel mixtral = load_model("mixtral-8x7b");  // 32 heads, 8 KV heads, 32 layers, 8 experts
  EXPECT_EQ(problem_of(parse_layout("dp=8,tp=2,pp=4", 64), mixtral, 128),
            "dp x tp x pp (8 x 2 x 4 = 64) must equal the number of GPUs (128)");
  EXPECT_EQ(problem_of(parse_layout("tp=3,mbs=1", 3), mixtral, 3), "tp (3) must divide num_attention_heads (32)");
  EXPECT_EQ(problem_of(parse_layout("pp=3", 3), mixtral, 3),
            "pp x vpp (3 x 1 = 3) must divide num_layers (32), or num_layers + 2 + num_mtp_layers (34: the "
            "embedding, the loss and the MTP modules counted as layers)");
  EXPECT_EQ(problem_of(parse_layout("dp=16,ep=16", 16), mixtral, 16), "ep (16) must divide num_experts (8)");
  EXPECT_EQ(problem_of(parse_layout("dp=2,tp=2,ep=8", 4), mixtral, 4),
            "ep x etp (8 x 1 = 8) must divide dp x tp (2 x 2 = 4): expert groups are carved out of a stage's data x "
            "tensor ranks");
  EXPECT_EQ(problem_of(parse_layout("dp=8,gbs=12", 8), mixtral, 8), "mbs x dp (1 x 8 = 8) must divide gbs (12)");

  MoeModel odd = mixtral;
  odd.moe_intermediate_size = 14337;
  EXPECT_EQ(problem_of(parse_layout("dp=2,ep=1,etp=2", 2), odd, 2),
            "etp (2) must divide moe_intermediate_size (14337)");
  odd = load_model("deepseek-v3");
  odd.intermediate_size = 18433;
  EXPECT_EQ(problem_of(parse_layout("tp=2,dp=1", 2), odd, 2), "tp (2) must divide intermediate_size (18433)");
  odd = load_model("deepseek-v3");
  odd.shared_expert_intermediate_size = 2049;
  EXPECT_EQ(problem_of(parse_layout("tp=2,dp=1", 2), odd, 2),
            "tp (2) must divide shared_expert_intermediate_size (2049)");
  // Several problems are all listed, in the header's order; validate_layout throws the first with the layout.
  EXPECT_EQ(layout_problems(parse_layout("dp=16,ep=16,gbs=20", 16), mixtral, 16).size(), 2u);
  EXPECT_EQ(error_of([&] { validate_layout(parse_layout("dp=16,ep=16,gbs=20", 16), mixtral, 16); }),
            "layout dp=16,tp=1,pp=1,ep=16,etp=1,vpp=1,mbs=1,gbs=20: ep (16) must divide num_experts (8)");
}

TEST(ValidateLayout, KvHeadsAreSplitOrReplicated) {
  const MoeModel mixtral = load_model("mixtral-8x7b");                     // 8 KV heads
  EXPECT_EQ(problem_of(parse_layout("tp=4,dp=1", 4), mixtral, 4), "");     // 8 KV heads split 2 per rank
  EXPECT_EQ(problem_of(parse_layout("tp=16,dp=1", 16), mixtral, 16), "");  // each KV head on 2 ranks
  MoeModel gqa = mixtral;
  gqa.num_attention_heads = 24;
  gqa.num_key_value_heads = 4;
  EXPECT_EQ(problem_of(parse_layout("tp=6,dp=1", 6), gqa, 6),
            "tp (6) and num_key_value_heads (4) must divide one another (KV heads split over tp, or replicated when "
            "tp is a multiple)");
}

TEST(ValidateLayout, InterleavingNeedsPipelineAndMicrobatchesDivisibleByPp) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  // 8 GPUs, pp 4, dp 2: gbs 12 gives 6 micro-batches, not a multiple of pp; 16 gives 8, which is.
  EXPECT_EQ(problem_of(parse_layout("pp=4,vpp=2,gbs=12", 8), mixtral, 8),
            "pp (4) must divide the number of micro-batches (6) for the interleaved schedule (vpp 2)");
  EXPECT_EQ(problem_of(parse_layout("pp=4,vpp=2,gbs=16", 8), mixtral, 8), "");
  EXPECT_EQ(problem_of(parse_layout("vpp=2", 8), mixtral, 8),
            "vpp (2) > 1 interleaves pipeline stages, so pp must be >= 2, got 1");
  // 32 layers over pp x vpp = 4 x 8 = 32 virtual stages: one layer each.
  EXPECT_EQ(problem_of(parse_layout("pp=4,vpp=8,gbs=16", 8), mixtral, 8), "");
}

TEST(NumMicrobatches, IsGbsOverMbsTimesDp) {
  EXPECT_EQ(num_microbatches(parse_layout("dp=8,mbs=2,gbs=512", 8)), 32);  // 512 / (2 x 8)
  EXPECT_EQ(num_microbatches(parse_layout("dp=8", 8)), 1);                 // gbs defaults to mbs x dp
  EXPECT_FALSE(error_of([] { num_microbatches(parse_layout("dp=8,gbs=12", 8)); }).empty());
}

TEST(PipelineSplit, EvenWhenPpDividesTheLayers) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  EXPECT_EQ(virtual_stage_layers(mixtral, parse_layout("pp=4", 4)), std::vector<int>(4, 8));
  // Interleaved: 8 virtual stages of 4 layers; rank 1 holds virtual stages 1 and 5, layers 4-7 and 20-23.
  const ParallelLayout interleaved = parse_layout("pp=4,vpp=2,gbs=4", 4);
  EXPECT_EQ(virtual_stage_layers(mixtral, interleaved), std::vector<int>(8, 4));
  EXPECT_EQ(stage_layer_indices(mixtral, interleaved, 1), (std::vector<int>{4, 5, 6, 7, 20, 21, 22, 23}));
}

TEST(PipelineSplit, DeepSeekV3CountsEmbeddingLossAndMtpAsLayers) {
  // 61 layers on 16 stages: 61 + embedding + loss + 1 MTP module = 64 units, 4 a stage. The first stage holds the
  // embedding and layers 0-2, the last the MTP module, the loss and layers 59-60.
  const MoeModel deepseek = load_model("deepseek-v3");
  const ParallelLayout layout = parse_layout("dp=128,pp=16,ep=64", 2048);
  std::vector<int> expected(16, 4);
  expected.front() = 3;
  expected.back() = 2;
  EXPECT_EQ(virtual_stage_layers(deepseek, layout), expected);
  EXPECT_EQ(stage_layer_indices(deepseek, layout, 0), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(stage_layer_indices(deepseek, layout, 1), (std::vector<int>{3, 4, 5, 6}));
  EXPECT_EQ(stage_layer_indices(deepseek, layout, 15), (std::vector<int>{59, 60}));
  EXPECT_FALSE(error_of([&] { virtual_stage_layers(deepseek, parse_layout("pp=3", 3)); }).empty());
}

TEST(RankMapping, MegatronOrderDenseAndExperts) {
  // 8 GPUs, dp 2 x tp 2 x pp 2, ep 4: dense rank = tp + 2 (dp + 2 pp); expert rank = etp + ep (edp = 1).
  const ParallelLayout layout = parse_layout("dp=2,tp=2,pp=2,ep=4", 8);
  const RankCoords c = rank_coords(layout, 5);  // 5 = 1 + 2 x (0 + 2 x 1)
  EXPECT_EQ(c.tp_idx, 1);
  EXPECT_EQ(c.dp_idx, 0);
  EXPECT_EQ(c.pp_idx, 1);
  EXPECT_EQ(c.etp_idx, 0);
  EXPECT_EQ(c.ep_idx, 1);  // 5 - 4 (the stage's first rank)
  EXPECT_EQ(c.edp_idx, 0);
  EXPECT_EQ(group_ranks(layout, ParallelGroup::kTp, 5), (std::vector<int>{4, 5}));
  EXPECT_EQ(group_ranks(layout, ParallelGroup::kDp, 5), (std::vector<int>{5, 7}));
  EXPECT_EQ(group_ranks(layout, ParallelGroup::kPp, 5), (std::vector<int>{1, 5}));
  EXPECT_EQ(group_ranks(layout, ParallelGroup::kEp, 5), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(group_ranks(layout, ParallelGroup::kEtp, 5), (std::vector<int>{5}));
  EXPECT_EQ(group_ranks(layout, ParallelGroup::kEdp, 5), (std::vector<int>{5}));

  // 16 GPUs, dp 4 x tp 2 x pp 2, ep 2 x etp 2, edp = 8 / 4 = 2: rank 13 = etp 1 + 2 (ep 0 + 2 (edp 1 + 2 pp 1)).
  const ParallelLayout etp = parse_layout("dp=4,tp=2,pp=2,ep=2,etp=2", 16);
  const RankCoords e = rank_coords(etp, 13);
  EXPECT_EQ(e.tp_idx, 1);
  EXPECT_EQ(e.dp_idx, 2);
  EXPECT_EQ(e.pp_idx, 1);
  EXPECT_EQ(e.etp_idx, 1);
  EXPECT_EQ(e.ep_idx, 0);
  EXPECT_EQ(e.edp_idx, 1);
  EXPECT_EQ(group_ranks(etp, ParallelGroup::kEtp, 13), (std::vector<int>{12, 13}));
  EXPECT_EQ(group_ranks(etp, ParallelGroup::kEp, 13), (std::vector<int>{13, 15}));
  EXPECT_EQ(group_ranks(etp, ParallelGroup::kEdp, 13), (std::vector<int>{9, 13}));
  EXPECT_EQ(group_ranks(etp, ParallelGroup::kDp, 13), (std::vector<int>{9, 11, 13, 15}));

  EXPECT_EQ(error_of([&] { rank_coords(layout, 8); }), "rank 8: must be in [0, 8)");
  EXPECT_FALSE(error_of([] { rank_coords(ParallelLayout{2, 1, 1, 4, 1, 1, 1, 2}, 0); }).empty());
}

TEST(RankMapping, EveryGroupPartitionsTheRanksAndEpGroupsStayInAStage) {
  const std::vector<std::string> layouts = {"dp=2,tp=2,pp=2,ep=4",        "dp=4,tp=2,pp=2,ep=2,etp=2",
                                            "dp=8,tp=1,pp=4,ep=8",        "dp=4,tp=4,pp=2,ep=2,etp=4",
                                            "dp=16,tp=2,pp=2,ep=4,etp=2", "dp=1,tp=8,pp=3,ep=8"};
  const ParallelGroup kinds[] = {ParallelGroup::kTp, ParallelGroup::kDp,  ParallelGroup::kPp,
                                 ParallelGroup::kEp, ParallelGroup::kEtp, ParallelGroup::kEdp};
  for (const auto& text : layouts) {
    const ParallelLayout layout = parse_layout(text, 0);
    const int n = layout.num_gpus();
    for (const ParallelGroup kind : kinds) {
      const auto groups = all_groups(layout, kind);
      std::vector<int> seen(n, 0);
      for (const auto& group : groups) {
        ASSERT_FALSE(group.empty());
        EXPECT_EQ(group.size(), groups.front().size()) << text << " " << parallel_group_name(kind);
        for (const int rank : group) {
          ++seen[rank];
          // Every member names the same group.
          EXPECT_EQ(group_ranks(layout, kind, rank), group) << text << " " << parallel_group_name(kind);
        }
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n) << text << " " << parallel_group_name(kind);
    }
    for (const auto& group : all_groups(layout, ParallelGroup::kEp)) {
      EXPECT_EQ(group.size(), static_cast<std::size_t>(layout.ep));
      std::set<int> stages;
      std::set<int> ep_indices;
      for (const int rank : group) {
        stages.insert(rank_coords(layout, rank).pp_idx);
        ep_indices.insert(rank_coords(layout, rank).ep_idx);
      }
      EXPECT_EQ(stages.size(), 1u) << text;
      EXPECT_EQ(ep_indices.size(), static_cast<std::size_t>(layout.ep)) << text;
    }
    EXPECT_EQ(all_groups(layout, ParallelGroup::kEdp).front().size(), static_cast<std::size_t>(layout.edp()));
  }
}

TEST(EnumerateLayouts, EveryValidLayoutValidatesAndEveryRejectionSaysWhy) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  EnumerateOptions options;
  options.gbs = 64;
  options.mbs_candidates = {1, 2};
  options.max_tp = 4;
  const LayoutEnumeration result = enumerate_layouts(mixtral, 16, options);
  ASSERT_FALSE(result.valid.empty());
  for (const auto& layout : result.valid) {
    EXPECT_NO_THROW(validate_layout(layout, mixtral, 16)) << format_layout(layout);
    EXPECT_LE(layout.tp, 4);
    EXPECT_EQ(layout.etp, 1);
  }
  for (const auto& rejected : result.rejected) EXPECT_FALSE(rejected.reason.empty()) << format_layout(rejected.layout);

  // The candidate space, counted by hand: for each (tp, pp) with tp pp | 16, ep over the divisors of dp x tp =
  // 16 / pp, times 2 mbs: pp 1 (5 ep: 1..16), 2 (4), 4 (3), 8 (2), 16 (1) for each tp that leaves room.
  // tp 1: pp in {1,2,4,8,16}: 5+4+3+2+1 = 15; tp 2: pp in {1,2,4,8}: 15 - 1 = 14; tp 4: 12; tp 8: 9; tp 16: 5.
  EXPECT_EQ(result.valid.size() + result.rejected.size(), static_cast<std::size_t>((15 + 14 + 12 + 9 + 5) * 2));

  const auto has = [&](const std::string& text) {
    const ParallelLayout wanted = parse_layout(text, 16);
    return std::find(result.valid.begin(), result.valid.end(), wanted) != result.valid.end();
  };
  EXPECT_TRUE(has("dp=8,tp=2,pp=1,ep=8,mbs=2,gbs=64"));
  EXPECT_TRUE(has("dp=4,tp=1,pp=4,ep=4,mbs=1,gbs=64"));
  const auto reason_of = [&](const std::string& text) -> std::string {
    const ParallelLayout wanted = parse_layout(text, 16);
    for (const auto& r : result.rejected) {
      if (r.layout == wanted) return r.reason;
    }
    return "";
  };
  EXPECT_EQ(reason_of("dp=1,tp=8,pp=2,ep=1,mbs=1,gbs=64"), "tp (8) > max_tp (4)");
  EXPECT_EQ(reason_of("dp=16,tp=1,pp=1,ep=16,mbs=1,gbs=64"), "ep (16) must divide num_experts (8)");

  // Deterministic: the same call gives the same lists in the same order.
  const LayoutEnumeration again = enumerate_layouts(mixtral, 16, options);
  EXPECT_EQ(again.valid, result.valid);
  ASSERT_EQ(again.rejected.size(), result.rejected.size());
  for (std::size_t i = 0; i < again.rejected.size(); ++i)
    EXPECT_EQ(again.rejected[i].reason, result.rejected[i].reason);
}

TEST(EnumerateLayouts, ExpertTensorParallelismAndInterleavingWhenAsked) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  EnumerateOptions options;
  options.gbs = 32;
  options.allow_etp = true;
  options.vpp_candidates = {1, 2};
  const LayoutEnumeration result = enumerate_layouts(mixtral, 8, options);
  const auto any_with = [&](auto predicate) {
    return std::any_of(result.valid.begin(), result.valid.end(), predicate);
  };
  EXPECT_TRUE(any_with([](const ParallelLayout& l) { return l.etp > 1; }));
  EXPECT_TRUE(any_with([](const ParallelLayout& l) { return l.vpp == 2 && l.pp >= 2; }));
  EXPECT_FALSE(any_with([](const ParallelLayout& l) { return l.vpp == 2 && l.pp == 1; }));
}

TEST(EnumerateLayouts, RejectsBadOptions) {
  const MoeModel mixtral = load_model("mixtral-8x7b");
  EnumerateOptions options;
  EXPECT_EQ(error_of([&] { enumerate_layouts(mixtral, 8, options); }), "layout enumeration: gbs: must be >= 1, got 0");
  options.gbs = 8;
  options.mbs_candidates = {};
  EXPECT_EQ(error_of([&] { enumerate_layouts(mixtral, 8, options); }),
            "layout enumeration: mbs: expected at least one candidate");
  options.mbs_candidates = {0};
  EXPECT_EQ(error_of([&] { enumerate_layouts(mixtral, 8, options); }), "layout enumeration: mbs: must be >= 1, got 0");
  options.mbs_candidates = {1};
  EXPECT_EQ(error_of([&] { enumerate_layouts(mixtral, 0, options); }),
            "layout enumeration: num_gpus: must be >= 1, got 0");
}

}  // namespace
}  // namespace moesim::workloads
