#include "sim/capacity.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "reports/writers.hpp"
#include "workloads/model.hpp"

namespace moesim::sim {
namespace {

using workloads::CapacityPolicy;

std::vector<std::int64_t> as_vector(const google::protobuf::RepeatedField<std::int64_t>& field) {
  return {field.begin(), field.end()};
}

// Mixtral (8 experts, top-2) on one EP group of 8 GPUs, two layers of Zipf(1.2)-skewed routing: small and skewed
// enough that every capacity factor below 4 drops something.
CapacityConfig mixtral(CapacityPolicy policy, std::vector<double> factors) {
  CapacityConfig config;
  config.model = workloads::load_model("mixtral-8x7b");
  config.ep = 8;
  config.tokens_per_rank = 512;
  config.routing = workloads::parse_routing("zipf:1.2");
  config.policy = policy;
  config.factors = std::move(factors);
  config.layers = {0, 1};
  return config;
}

std::string message_of(const CapacityConfig& config) {
  try {
    run_capacity(config);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Capacity, EveryFactorSeesTheSameRouting) {
  // The choices do not depend on capacity: every row's routed counts per expert are the capacity-free ones, for
  // every policy, including reroute (which reads past the top-k) and drop-score (which draws scores).
  for (const auto policy : {CapacityPolicy::kDropPosition, CapacityPolicy::kDropScore, CapacityPolicy::kReroute,
                            CapacityPolicy::kPadded, CapacityPolicy::kDropless}) {
    const reports::CapacityResult r = run_capacity(mixtral(policy, {0.5, 1.0, 1.25, 2.0}));
    ASSERT_EQ(r.rows_size(), 4);
    ASSERT_EQ(r.routed_size(), 2);
    for (const reports::CapacityRow& row : r.rows()) {
      ASSERT_EQ(row.layers_size(), 2);
      for (int l = 0; l < 2; ++l) {
        EXPECT_EQ(as_vector(row.layers(l).routed_per_expert()), as_vector(r.routed(l).routed_per_expert()))
            << workloads::capacity_policy_name(policy) << " F " << row.capacity_factor() << " layer " << l;
      }
    }
  }
}

TEST(Capacity, LayersHaveTheirOwnPopularity) {
  const reports::CapacityResult r = run_capacity(mixtral(CapacityPolicy::kDropPosition, {1.0}));
  EXPECT_NE(as_vector(r.routed(0).routed_per_expert()), as_vector(r.routed(1).routed_per_expert()));
}

TEST(Capacity, DropPositionDropsNoMoreAsTheFactorGrows) {
  // Each (rank, expert) keeps min(copies, C) and C grows with F, so drops never grow; at F = E / k = 4, C equals
  // the tokens per rank, which no expert can exceed (a token picks an expert at most once): nothing is dropped.
  const std::vector<double> factors = {0.5, 0.75, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0};
  const reports::CapacityResult r = run_capacity(mixtral(CapacityPolicy::kDropPosition, factors));
  ASSERT_EQ(r.rows_size(), static_cast<int>(factors.size()));
  EXPECT_GT(r.rows(0).dropped_fraction(), 0.0);
  for (int f = 1; f < r.rows_size(); ++f) {
    EXPECT_LE(r.rows(f).dropped_fraction(), r.rows(f - 1).dropped_fraction()) << "F " << factors[f];
    EXPECT_GE(r.rows(f).capacity(), r.rows(f - 1).capacity());
    for (int l = 0; l < 2; ++l) {
      EXPECT_LE(r.rows(f).layers(l).dropped(), r.rows(f - 1).layers(l).dropped()) << "F " << factors[f];
    }
  }
  EXPECT_EQ(r.rows().rbegin()->capacity(), 512);
  EXPECT_EQ(r.rows().rbegin()->dropped(), 0);
  // Conservation: without rerouting, each expert keeps what was routed to it minus what it dropped.
  for (const reports::CapacityRow& row : r.rows()) {
    for (const reports::LayerCapacity& layer : row.layers()) {
      EXPECT_EQ(layer.kept() + layer.dropped(), layer.routed());
      for (int e = 0; e < layer.kept_per_expert_size(); ++e) {
        EXPECT_EQ(layer.kept_per_expert(e) + layer.dropped_per_expert(e), layer.routed_per_expert(e));
      }
    }
  }
}

TEST(Capacity, DroplessDropsNothing) {
  const reports::CapacityResult r = run_capacity(mixtral(CapacityPolicy::kDropless, {1.0, 1.25}));
  for (const reports::CapacityRow& row : r.rows()) {
    EXPECT_EQ(row.capacity(), 0);
    EXPECT_EQ(row.dropped(), 0);
    EXPECT_EQ(row.padded_slots(), 0);
    EXPECT_EQ(row.kept(), row.routed());
    // Nothing limits the experts, so their loads are the routed loads.
    EXPECT_DOUBLE_EQ(row.expert_load().max_over_mean(), r.routed_expert_load().max_over_mean());
    for (int l = 0; l < row.layers_size(); ++l) {
      EXPECT_EQ(as_vector(row.layers(l).kept_per_expert()), as_vector(r.routed(l).routed_per_expert()));
    }
  }
}

TEST(Capacity, PaddedBuffersHoldCapacitySlotsPerRankAndExpert) {
  // Two EP groups of 8 on 16 GPUs: every rank sends each expert a buffer of exactly C slots, so the padding is
  // C x experts x ranks - kept, and the padding fraction is that over the C x experts x ranks slots sent.
  CapacityConfig config = mixtral(CapacityPolicy::kPadded, {0.75, 1.0, 1.5});
  config.node_of_gpu = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  const reports::CapacityResult r = run_capacity(config);
  EXPECT_EQ(r.inputs().num_ep_groups(), 2);
  EXPECT_EQ(r.inputs().num_nodes(), 2);
  for (const reports::CapacityRow& row : r.rows()) {
    const std::int64_t slots = row.capacity() * 8 * 16;
    for (const reports::LayerCapacity& layer : row.layers()) {
      EXPECT_EQ(layer.padded_slots(), slots - layer.kept()) << "F " << row.capacity_factor();
      EXPECT_DOUBLE_EQ(layer.padding_fraction(),
                       static_cast<double>(slots - layer.kept()) / static_cast<double>(slots));
      EXPECT_EQ(layer.rank_load().count(), 16);
      // Every rank receives C slots from each of the 8 ranks of its group for each of its one expert.
      EXPECT_DOUBLE_EQ(layer.rank_load().max(), static_cast<double>(row.capacity() * 8));
    }
  }
}

TEST(Capacity, RowsSumTheirLayersAndNameTheWorst) {
  const reports::CapacityResult r = run_capacity(mixtral(CapacityPolicy::kDropPosition, {1.0}));
  const reports::CapacityRow& row = r.rows(0);
  EXPECT_EQ(row.dropped(), row.layers(0).dropped() + row.layers(1).dropped());
  EXPECT_EQ(row.routed(), 2 * 8 * 512 * 2);  // layers x ranks x tokens x top-k
  const int worst = row.layers(0).dropped_fraction() >= row.layers(1).dropped_fraction() ? 0 : 1;
  EXPECT_EQ(row.worst_layer(), worst);
  EXPECT_DOUBLE_EQ(row.worst_layer_dropped_fraction(), row.layers(worst).dropped_fraction());
  EXPECT_DOUBLE_EQ(row.expert_load().cv(), (row.layers(0).expert_load().cv() + row.layers(1).expert_load().cv()) / 2);
  EXPECT_EQ(row.layers(0).expert_histogram().counts_size(), 20);
}

TEST(Capacity, BiasBalancingEvensTheExpertLoad) {
  // DeepSeek-V3's balancing moves each expert's bias toward the mean load; over 30 steps of Zipf(1.2) routing the
  // settled imbalance (mean of the last 10 steps) must fall below that of the same steps without it.
  CapacityConfig config;
  config.model = workloads::load_model("qwen3-30b-a3b");
  config.tokens_per_rank = 256;
  config.routing = workloads::parse_routing("zipf:1.2");
  config.factors = {1.25};
  config.layers = {0};
  config.balancing_steps = 30;
  config.bias_rate = 0.1;
  const reports::CapacityResult r = run_capacity(config);
  ASSERT_TRUE(r.has_balancing());
  const reports::BiasBalancing& b = r.balancing();
  ASSERT_EQ(b.steps_size(), 30);
  EXPECT_EQ(b.num_settled_steps(), 10);
  std::printf("settled expert max/mean: balanced %.3f, baseline %.3f; dropped %.4f vs %.4f\n",
              b.settled_expert_max_over_mean(), b.baseline_settled_expert_max_over_mean(), b.settled_dropped_fraction(),
              b.baseline_settled_dropped_fraction());
  EXPECT_LT(b.settled_expert_max_over_mean(), b.baseline_settled_expert_max_over_mean());
  EXPECT_LT(b.settled_dropped_fraction(), b.baseline_settled_dropped_fraction());
  // Step 0 runs unbiased in both, on the same tokens.
  EXPECT_DOUBLE_EQ(b.steps(0).expert_load().max_over_mean(), b.steps(0).baseline_expert_load().max_over_mean());
  EXPECT_EQ(b.steps(0).bias_size(), 128);
}

TEST(Capacity, SameInputsGiveByteIdenticalJson) {
  CapacityConfig config = mixtral(CapacityPolicy::kReroute, {1.0, 1.5});
  config.balancing_steps = 3;
  config.bias_rate = 0.05;
  const std::string a = reports::to_json(run_capacity(config));
  const std::string b = reports::to_json(run_capacity(config));
  EXPECT_EQ(a, b);
  config.seed = 2;
  EXPECT_NE(a, reports::to_json(run_capacity(config)));
}

TEST(Capacity, ReplayingTheRecordedRoutingGivesTheSameCounts) {
  for (const auto policy : {CapacityPolicy::kDropPosition, CapacityPolicy::kDropScore, CapacityPolicy::kPadded}) {
    CapacityConfig config = mixtral(policy, {0.75, 1.25});
    workloads::RecordedRouting routing;
    const reports::CapacityResult sampled = run_capacity(config, &routing);
    ASSERT_EQ(routing.layers.size(), 2u);
    EXPECT_TRUE(routing.has_scores);
    EXPECT_EQ(routing.layers[1].layer, 1);
    EXPECT_EQ(routing.layers[0].num_tokens, 8 * 512);
    config.replay = std::make_shared<const workloads::RecordedRouting>(std::move(routing));
    config.layers.clear();  // the file's layers
    const reports::CapacityResult replayed = run_capacity(config);
    EXPECT_EQ(replayed.inputs().routing(), "replay");
    ASSERT_EQ(replayed.rows_size(), 2);
    for (int f = 0; f < 2; ++f) {
      ASSERT_EQ(replayed.rows(f).layers_size(), 2);
      for (int l = 0; l < 2; ++l) {
        EXPECT_EQ(as_vector(replayed.rows(f).layers(l).dropped_per_expert()),
                  as_vector(sampled.rows(f).layers(l).dropped_per_expert()))
            << workloads::capacity_policy_name(policy);
        EXPECT_EQ(as_vector(replayed.rows(f).layers(l).kept_per_expert()),
                  as_vector(sampled.rows(f).layers(l).kept_per_expert()));
      }
    }
  }
}

TEST(Capacity, DefaultsFollowTheShape) {
  // Without a cluster: one EP group of gcd(experts, 64) GPUs on nodes of 8, every MoE layer of the model (all 32 of
  // Mixtral's layers are MoE; a model with dense layers, like DeepSeek-V3, has fewer MoE layers than layers).
  CapacityConfig config;
  config.model = workloads::load_model("mixtral-8x7b");
  config.tokens_per_rank = 16;
  config.factors = {1.0};
  const reports::CapacityResult r = run_capacity(config);
  EXPECT_EQ(r.inputs().ep(), 8);
  EXPECT_EQ(r.inputs().num_gpus(), 8);
  EXPECT_EQ(r.inputs().num_nodes(), 1);
  EXPECT_EQ(r.inputs().layers_size(), config.model.num_moe_layers());
  EXPECT_EQ(r.inputs().capacity_policy(), "drop-position");

  // With a cluster: all its GPUs, EP gcd(GPUs, experts), so 2 nodes of dgx-h100 hold two groups of 8.
  ScenarioSpec spec;
  spec.cluster = "dgx-h100";
  spec.nodes = 2;
  spec.model = "mixtral-8x7b";
  spec.tokens_per_rank = 16;
  CapacityConfig resolved = resolve_capacity(spec);
  resolved.layers = {3};
  const reports::CapacityResult c = run_capacity(resolved);
  EXPECT_EQ(c.inputs().cluster(), "dgx-h100");
  EXPECT_EQ(c.inputs().num_gpus(), 16);
  EXPECT_EQ(c.inputs().ep(), 8);
  EXPECT_EQ(c.inputs().num_ep_groups(), 2);
  EXPECT_EQ(c.routed(0).layer(), 3);
  EXPECT_EQ(c.routed(0).rank_load().count(), 16);
}

TEST(Capacity, DefaultLayersAreTheMoeLayers) {
  // DeepSeek-V3 has 61 layers, of which the first 3 are dense: the default analyses its 58 MoE layers, numbered
  // as MoE layers 0 .. 57 (the ids routing draws each layer's popularity from), not 61 layer ids.
  CapacityConfig config;
  config.model = workloads::load_model("deepseek-v3");
  config.tokens_per_rank = 1;
  config.factors = {1.0};
  const reports::CapacityResult r = run_capacity(config);
  ASSERT_EQ(r.inputs().layers_size(), 58);
  EXPECT_EQ(r.inputs().layers(0), 0);
  EXPECT_EQ(r.inputs().layers(57), 57);
}

TEST(Capacity, BadInputNamesTheKey) {
  EXPECT_NE(message_of(mixtral(CapacityPolicy::kDropPosition, {1.0, 0.0})).find("capacity_factor"), std::string::npos);
  EXPECT_NE(message_of(mixtral(CapacityPolicy::kDropPosition, {})).find("capacity_factor"), std::string::npos);
  CapacityConfig bad_ep = mixtral(CapacityPolicy::kDropPosition, {1.0});
  bad_ep.ep = 3;
  EXPECT_NE(message_of(bad_ep).find("ep"), std::string::npos);
  CapacityConfig bad_bins = mixtral(CapacityPolicy::kDropPosition, {1.0});
  bad_bins.histogram_bins = 0;
  EXPECT_NE(message_of(bad_bins).find("histogram_bins"), std::string::npos);

  ScenarioSpec no_model;
  EXPECT_THROW(resolve_capacity(no_model), std::invalid_argument);
  ScenarioSpec nodes_without_cluster;
  nodes_without_cluster.model = "mixtral-8x7b";
  nodes_without_cluster.nodes = 4;
  EXPECT_THROW(resolve_capacity(nodes_without_cluster), std::invalid_argument);
}

TEST(Capacity, TextShowsOneRowPerFactor) {
  const std::string text = reports::capacity_text(run_capacity(mixtral(CapacityPolicy::kDropPosition, {1.0, 1.25})));
  EXPECT_NE(text.find("moesim capacity: mixtral-8x7b"), std::string::npos) << text;
  EXPECT_NE(text.find("\n  1.00 "), std::string::npos) << text;
  EXPECT_NE(text.find("\n  1.25 "), std::string::npos) << text;
  EXPECT_NE(text.find("routed load"), std::string::npos) << text;
}

}  // namespace
}  // namespace moesim::sim
