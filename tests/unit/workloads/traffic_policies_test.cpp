// Capacity policies, scores, group-limited routing, replay, layers, drift, biases and replicas in
// build_layer_traffic (workloads/traffic.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "workloads/capacity.hpp"
#include "workloads/replication.hpp"
#include "workloads/routing_file.hpp"
#include "workloads/traffic.hpp"

namespace moesim::workloads {
namespace {

std::vector<int> shape(int num_nodes, int gpus_per_node) {
  std::vector<int> node_of_gpu(static_cast<std::size_t>(num_nodes * gpus_per_node));
  for (std::size_t g = 0; g < node_of_gpu.size(); ++g) node_of_gpu[g] = static_cast<int>(g) / gpus_per_node;
  return node_of_gpu;
}

TrafficOptions options_for(int ep, std::int64_t tokens, int experts, int topk, const std::string& routing,
                           CapacityPolicy policy = CapacityPolicy::kDropless, double factor = 1.0) {
  TrafficOptions o;
  o.ep = ep;
  o.tokens_per_rank = tokens;
  o.num_experts = experts;
  o.num_topk = topk;
  o.routing = parse_routing(routing);
  o.seed = 7;
  o.capacity.policy = policy;
  o.capacity.factor = factor;
  return o;
}

std::int64_t total(const std::vector<std::int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::int64_t{0});
}

// The matrices and per-expert counts of two runs are equal.
void expect_same_traffic(const LayerTraffic& a, const LayerTraffic& b) {
  ASSERT_EQ(a.groups.size(), b.groups.size());
  for (std::size_t g = 0; g < a.groups.size(); ++g) {
    EXPECT_EQ(a.groups[g].tokens_to_rank, b.groups[g].tokens_to_rank) << "group " << g;
    EXPECT_EQ(a.groups[g].copies_to_rank, b.groups[g].copies_to_rank) << "group " << g;
    EXPECT_EQ(a.groups[g].tokens_to_node, b.groups[g].tokens_to_node) << "group " << g;
    EXPECT_EQ(a.groups[g].copies_to_node, b.groups[g].copies_to_node) << "group " << g;
  }
  EXPECT_EQ(a.tokens_per_expert, b.tokens_per_expert);
  EXPECT_EQ(a.routed_per_expert, b.routed_per_expert);
  EXPECT_EQ(a.dropped_per_expert, b.dropped_per_expert);
  EXPECT_EQ(a.rerouted_per_expert, b.rerouted_per_expert);
  EXPECT_EQ(a.padded_slots, b.padded_slots);
}

const CapacityPolicy kAllPolicies[] = {CapacityPolicy::kDropless, CapacityPolicy::kDropPosition,
                                       CapacityPolicy::kDropScore, CapacityPolicy::kReroute, CapacityPolicy::kPadded};

TEST(CapacityPolicies, ConservationAndCapacityHoldForEveryPolicy) {
  // One expert per rank (E = ep), so copies_to_rank[src][dst] is the copies src sends to expert dst, which no
  // policy but dropless may let exceed C.
  for (const CapacityPolicy policy : kAllPolicies) {
    const TrafficOptions o = options_for(16, 300, 16, 2, "zipf:1.2", policy, 1.0);
    const LayerTraffic t = build_layer_traffic(shape(4, 8), o);
    const std::int64_t capacity = expert_capacity(300, 2, 16, 1.0, 0);  // ceil(300 x 2 / 16) = 38
    ASSERT_EQ(capacity, 38);
    EXPECT_EQ(t.capacity, policy == CapacityPolicy::kDropless ? 0 : capacity) << capacity_policy_name(policy);
    const std::int64_t routed = 32 * 300 * 2;
    EXPECT_EQ(total(t.routed_per_expert), routed) << capacity_policy_name(policy);
    // Conservation: every choice is kept (at its expert, or rerouted to another) or dropped.
    EXPECT_EQ(total(t.tokens_per_expert), routed - total(t.dropped_per_expert)) << capacity_policy_name(policy);
    if (policy == CapacityPolicy::kDropless) {
      EXPECT_EQ(total(t.dropped_per_expert), 0);
    }
    if (policy != CapacityPolicy::kReroute) {
      EXPECT_EQ(total(t.rerouted_per_expert), 0);
    }
    std::int64_t copies = 0;
    for (const EpGroupTraffic& g : t.groups) {
      for (std::size_t i = 0; i < g.copies_to_rank.size(); ++i) {
        copies += g.copies_to_rank[i];
        if (policy == CapacityPolicy::kPadded) {
          EXPECT_EQ(g.copies_to_rank[i], capacity);  // a full buffer per (rank, expert), padding included
        } else if (policy != CapacityPolicy::kDropless) {
          EXPECT_LE(g.copies_to_rank[i], capacity) << capacity_policy_name(policy);
        }
      }
    }
    EXPECT_EQ(copies, total(t.tokens_per_expert) + t.padded_slots) << capacity_policy_name(policy);
  }
}

TEST(CapacityPolicies, SkewedRoutingOverflows) {
  // zipf:1.2 over 16 experts gives the hottest one about 30% of the choices, far above its 1/16 share: every
  // dropping policy must drop something at factor 1.
  const LayerTraffic t =
      build_layer_traffic(shape(4, 8), options_for(16, 300, 16, 2, "zipf:1.2", CapacityPolicy::kDropPosition, 1.0));
  EXPECT_GT(total(t.dropped_per_expert), 0);
  EXPECT_GT(t.tokens_all_dropped, 0);
}

TEST(CapacityPolicies, DropPositionAndDropScoreDropTheSameNumberPerExpert) {
  // Both keep exactly min(n, C) of the n copies a rank has for an expert; they differ only in which ones. The
  // choices are the same draw (scores come from a stream of their own).
  const auto node_of_gpu = shape(2, 8);
  const LayerTraffic by_position =
      build_layer_traffic(node_of_gpu, options_for(16, 500, 64, 4, "zipf:1", CapacityPolicy::kDropPosition, 1.1));
  const LayerTraffic by_score =
      build_layer_traffic(node_of_gpu, options_for(16, 500, 64, 4, "zipf:1", CapacityPolicy::kDropScore, 1.1));
  EXPECT_EQ(by_position.routed_per_expert, by_score.routed_per_expert);
  EXPECT_EQ(by_position.dropped_per_expert, by_score.dropped_per_expert);
  EXPECT_GT(total(by_score.dropped_per_expert), 0);
  // Which tokens lose a copy differs, so the token fan-out differs somewhere.
  bool differs = false;
  for (std::size_t g = 0; g < by_position.groups.size(); ++g) {
    differs = differs || by_position.groups[g].tokens_to_rank != by_score.groups[g].tokens_to_rank;
  }
  EXPECT_TRUE(differs);
}

TEST(CapacityPolicies, RerouteDropsLessThanDropPosition) {
  const auto node_of_gpu = shape(2, 8);
  const LayerTraffic dropped =
      build_layer_traffic(node_of_gpu, options_for(16, 500, 64, 4, "zipf:1", CapacityPolicy::kDropPosition, 1.0));
  const LayerTraffic rerouted =
      build_layer_traffic(node_of_gpu, options_for(16, 500, 64, 4, "zipf:1", CapacityPolicy::kReroute, 1.0));
  EXPECT_EQ(dropped.routed_per_expert, rerouted.routed_per_expert);
  EXPECT_GT(total(rerouted.rerouted_per_expert), 0);
  // At factor 1 there is room for every choice in total (C x E >= T x k), so reroute keeps nearly all of them.
  EXPECT_LT(total(rerouted.dropped_per_expert), total(dropped.dropped_per_expert) / 10);
}

TEST(CapacityPolicies, RerouteWithoutRoomLeftDropsAndTerminates) {
  // Capacity 1 per (rank, expert) for 8 experts, and 64 tokens of top-2 per rank: after 4 tokens every expert is
  // full, so later tokens find no expert with room and are dropped; the continued lists must run out cleanly.
  TrafficOptions o = options_for(8, 64, 8, 2, "uniform", CapacityPolicy::kReroute, 0.01);
  o.capacity.min_capacity = 1;
  const LayerTraffic t = build_layer_traffic(shape(1, 8), o);
  EXPECT_EQ(total(t.tokens_per_expert), 8 * 8);  // 8 ranks x 8 experts x C = 1
  EXPECT_EQ(total(t.tokens_per_expert) + total(t.dropped_per_expert), 8 * 64 * 2);
}

TEST(CapacityPolicies, PaddedPaddingIsCapacityMinusKept) {
  const TrafficOptions o = options_for(8, 256, 32, 2, "zipf:0.8", CapacityPolicy::kPadded, 1.25);
  const LayerTraffic t = build_layer_traffic(shape(2, 8), o);
  const std::int64_t capacity = expert_capacity(256, 2, 32, 1.25, 0);  // ceil(256 x 2 / 32 x 1.25) = 20
  EXPECT_EQ(capacity, 20);
  // Every rank sends C slots to each of the 32 experts: 16 ranks x 32 x 20 slots, of which the kept copies are
  // real and the rest padding.
  EXPECT_EQ(t.padded_slots + total(t.tokens_per_expert), 16 * 32 * 20);
  for (const EpGroupTraffic& g : t.groups) {
    EXPECT_EQ(g.tokens_to_rank, g.copies_to_rank);  // fixed buffers: nothing deduplicated
    EXPECT_EQ(g.tokens_to_node, g.copies_to_node);
  }
}

TEST(CapacityPolicies, HugeFactorDropsNothing) {
  for (const CapacityPolicy policy : kAllPolicies) {
    if (policy == CapacityPolicy::kPadded) continue;  // padding still travels
    const TrafficOptions o = options_for(8, 200, 16, 2, "zipf:1", policy, 100.0);
    const LayerTraffic t = build_layer_traffic(shape(1, 8), o);
    const LayerTraffic dropless = build_layer_traffic(shape(1, 8), options_for(8, 200, 16, 2, "zipf:1"));
    expect_same_traffic(t, dropless);
  }
}

TEST(Scores, TurningScoresOnDoesNotChangeTheChoices) {
  TrafficOptions o = options_for(16, 300, 64, 6, "zipf:1");
  o.routing.node_limit = 2;
  const LayerTraffic plain = build_layer_traffic(shape(2, 8), o);
  o.record_picks = true;  // draws scores too
  o.record_scores = true;
  const LayerTraffic recorded = build_layer_traffic(shape(2, 8), o);
  expect_same_traffic(plain, recorded);
  EXPECT_EQ(recorded.picks.experts.size(), std::size_t{16} * 300 * 6);
  EXPECT_EQ(recorded.picks.scores.size(), recorded.picks.experts.size());
}

TEST(Scores, DescendPerTokenAndExpertsAreDistinct) {
  for (const std::string routing : {"uniform", "zipf:1.5", "hot:4:0.5"}) {
    TrafficOptions o = options_for(8, 400, 32, 4, routing);
    o.record_picks = true;
    o.record_scores = true;
    const LayerTraffic t = build_layer_traffic(shape(1, 8), o);
    for (std::size_t token = 0; token < 8 * 400; ++token) {
      std::set<int> seen;
      for (std::size_t i = 0; i < 4; ++i) {
        const std::size_t slot = token * 4 + i;
        seen.insert(t.picks.experts[slot]);
        if (i > 0) {
          ASSERT_LE(t.picks.scores[slot], t.picks.scores[slot - 1]) << routing << " token " << token;
        }
      }
      ASSERT_EQ(seen.size(), 4u) << routing << " token " << token;
    }
  }
}

TEST(GroupLimitedRouting, TokensStayInTheirBestGroups) {
  // DeepSeek-V3's shape scaled down: 64 experts in 8 groups of 8, top-6 from at most 3 groups.
  TrafficOptions o = options_for(16, 500, 64, 6, "zipf:0.8");
  o.routing.expert_groups = 8;
  o.routing.group_limit = 3;
  o.record_picks = true;
  o.record_scores = true;
  const LayerTraffic t = build_layer_traffic(shape(2, 8), o);
  std::vector<std::int64_t> tokens_per_group_count(9, 0);
  for (std::int64_t token = 0; token < t.picks.num_tokens; ++token) {
    std::set<int> experts;
    std::set<int> groups;
    for (std::size_t i = 0; i < 6; ++i) {
      const std::size_t slot = static_cast<std::size_t>(token) * 6 + i;
      experts.insert(t.picks.experts[slot]);
      groups.insert(t.picks.experts[slot] / 8);
      if (i > 0) {
        ASSERT_LE(t.picks.scores[slot], t.picks.scores[slot - 1]);
      }
    }
    ASSERT_EQ(experts.size(), 6u);
    ASSERT_LE(groups.size(), 3u);
    ++tokens_per_group_count[groups.size()];
  }
  // Six picks from three groups of eight mostly touch all three of them.
  EXPECT_GT(tokens_per_group_count[3], t.picks.num_tokens / 2);
}

TEST(GroupLimitedRouting, ContiguousPlacementWithGroupsOnNodesTouchesAtMostGNodes) {
  // 64 experts over EP 16 on 2 nodes of 8 GPUs: each node holds 32 experts = 2 groups of 16 (4 groups in all).
  // With group_limit 1 every token's experts sit on one node.
  TrafficOptions o = options_for(16, 300, 64, 4, "uniform");
  o.routing.expert_groups = 4;
  o.routing.group_limit = 1;
  const LayerTraffic t = build_layer_traffic(shape(2, 8), o);
  for (const EpGroupTraffic& g : t.groups) {
    for (int src = 0; src < 16; ++src) {
      std::int64_t nodes = 0;
      for (int n = 0; n < g.num_nodes; ++n) nodes += g.tokens_to_node[static_cast<std::size_t>(src * g.num_nodes + n)];
      EXPECT_EQ(nodes, 300);  // one node per token
    }
  }
}

TEST(GroupLimitedRouting, RerouteStaysInTheChosenGroups) {
  TrafficOptions o = options_for(8, 400, 32, 4, "zipf:1", CapacityPolicy::kReroute, 1.0);
  o.routing.expert_groups = 4;
  o.routing.group_limit = 2;
  const LayerTraffic t = build_layer_traffic(shape(1, 8), o);
  EXPECT_GT(total(t.rerouted_per_expert), 0);
  EXPECT_EQ(total(t.tokens_per_expert) + total(t.dropped_per_expert), 8 * 400 * 4);
}

TEST(GroupLimitedRouting, InvalidSettingsAreRejected) {
  const auto node_of_gpu = shape(1, 8);
  auto with_groups = [](int groups, int limit) {
    TrafficOptions o = options_for(8, 10, 32, 4, "uniform");
    o.routing.expert_groups = groups;
    o.routing.group_limit = limit;
    return o;
  };
  EXPECT_THROW(build_layer_traffic(node_of_gpu, with_groups(5, 1)), std::invalid_argument);   // 5 does not divide 32
  EXPECT_THROW(build_layer_traffic(node_of_gpu, with_groups(4, 5)), std::invalid_argument);   // g > G
  EXPECT_THROW(build_layer_traffic(node_of_gpu, with_groups(16, 1)), std::invalid_argument);  // 2 experts < top-4
  EXPECT_THROW(build_layer_traffic(node_of_gpu, with_groups(4, 0)), std::invalid_argument);
  TrafficOptions limited = with_groups(4, 2);
  limited.routing.node_limit = 1;
  EXPECT_THROW(build_layer_traffic(node_of_gpu, limited), std::invalid_argument);
}

// Samples with recorded picks (and scores), writes them as a routing file, reads it back and replays it.
LayerTraffic round_trip(const std::vector<int>& node_of_gpu, TrafficOptions o, RecordedRouting* file) {
  TrafficOptions recording = o;
  recording.record_picks = true;
  recording.record_scores = true;
  recording.capacity.policy = CapacityPolicy::kDropScore;  // any policy with scores
  const LayerTraffic sampled = build_layer_traffic(node_of_gpu, recording);
  RecordedRouting routing;
  routing.num_topk = o.num_topk;
  routing.has_scores = true;
  routing.layers.push_back(sampled.picks);
  std::ostringstream text;
  write_routing(text, routing);
  *file = parse_routing_text(text.str(), "<round trip>", o.num_experts);
  o.replay = file;
  o.routing = RoutingSpec{};
  return build_layer_traffic(node_of_gpu, o);
}

TEST(Replay, SampleWriteReplayGivesIdenticalTraffic) {
  const auto node_of_gpu = shape(2, 8);
  for (const CapacityPolicy policy : {CapacityPolicy::kDropless, CapacityPolicy::kDropPosition,
                                      CapacityPolicy::kDropScore, CapacityPolicy::kPadded}) {
    TrafficOptions o = options_for(16, 200, 64, 4, "zipf:1", policy, 1.0);
    o.routing.node_limit = 1;
    const LayerTraffic sampled = build_layer_traffic(node_of_gpu, o);
    RecordedRouting file;
    const LayerTraffic replayed = round_trip(node_of_gpu, o, &file);
    expect_same_traffic(sampled, replayed);
  }
}

TEST(Replay, ShortFilesWrapAround) {
  // 3 recorded tokens dealt to 8 ranks x 2 tokens: rank u's token t is row (2u + t) mod 3.
  const std::string text = "layer,token,e0\n0,0,1\n0,1,5\n0,2,6\n";
  const RecordedRouting file = parse_routing_text(text, "<short>", 8);
  TrafficOptions o = options_for(8, 2, 8, 1, "uniform");
  o.replay = &file;
  const LayerTraffic t = build_layer_traffic(shape(1, 8), o);
  // 16 tokens: rows 0,1,2,0,1,2,... -> experts 1, 5, 6 taken 6, 5 and 5 times.
  EXPECT_EQ(t.tokens_per_expert, (std::vector<std::int64_t>{0, 6, 0, 0, 0, 5, 5, 0}));
}

TEST(Replay, MismatchesAreRejected) {
  const RecordedRouting no_scores = parse_routing_text("layer,token,e0,e1\n0,0,1,2\n2,0,3,4\n", "r.csv", 8);
  const auto node_of_gpu = shape(1, 8);
  auto replaying = [&](int topk, int layer, CapacityPolicy policy) {
    TrafficOptions o = options_for(8, 4, 8, topk, "uniform", policy, 1.0);
    o.layer = layer;
    o.replay = &no_scores;
    return o;
  };
  auto message = [&](const TrafficOptions& o) {
    try {
      build_layer_traffic(node_of_gpu, o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(replaying(3, 0, CapacityPolicy::kDropless)).find("top-2"), std::string::npos);
  EXPECT_NE(message(replaying(2, 1, CapacityPolicy::kDropless)).find("layers 0, 2"), std::string::npos);
  EXPECT_NE(message(replaying(2, 0, CapacityPolicy::kReroute)).find("reroute"), std::string::npos);
  EXPECT_NE(message(replaying(2, 0, CapacityPolicy::kDropScore)).find("scores"), std::string::npos);
  EXPECT_EQ(message(replaying(2, 2, CapacityPolicy::kDropPosition)), "no error");
}

TEST(Layers, EachLayerHasItsOwnPopularity) {
  TrafficOptions o = options_for(8, 2000, 32, 2, "zipf:1.2");
  const LayerTraffic layer0 = build_layer_traffic(shape(1, 8), o);
  o.layer = 1;
  const LayerTraffic layer1 = build_layer_traffic(shape(1, 8), o);
  const auto hottest = [](const LayerTraffic& t) {
    return std::max_element(t.tokens_per_expert.begin(), t.tokens_per_expert.end()) - t.tokens_per_expert.begin();
  };
  EXPECT_NE(layer0.tokens_per_expert, layer1.tokens_per_expert);
  // With seed 7 the hottest expert moves (a seeded fact, not a law: each layer permutes the ranking anew).
  EXPECT_NE(hottest(layer0), hottest(layer1));
}

TEST(Drift, StepZeroIsTheUndriftedRoutingAndLaterStepsMove) {
  TrafficOptions o = options_for(8, 500, 32, 2, "zipf:1");
  const LayerTraffic still = build_layer_traffic(shape(1, 8), o);
  o.routing.drift = 0.5;
  const LayerTraffic step0 = build_layer_traffic(shape(1, 8), o);
  expect_same_traffic(still, step0);
  o.step = 10;
  const LayerTraffic step10 = build_layer_traffic(shape(1, 8), o);
  EXPECT_NE(step0.tokens_per_expert, step10.tokens_per_expert);
}

TEST(Bias, ABiasRaisesAnExpertsShare) {
  TrafficOptions o = options_for(8, 1000, 16, 1, "uniform");
  const LayerTraffic plain = build_layer_traffic(shape(1, 8), o);
  o.expert_bias.assign(16, 0.0);
  o.expert_bias[3] = std::log(4.0);  // weight x4: share 4/19 instead of 1/16
  const LayerTraffic biased = build_layer_traffic(shape(1, 8), o);
  const double share = static_cast<double>(biased.tokens_per_expert[3]) / 8000.0;
  EXPECT_NEAR(share, 4.0 / 19.0, 5 * std::sqrt(4.0 / 19.0 * 15.0 / 19.0 / 8000.0));
  EXPECT_LT(plain.tokens_per_expert[3], biased.tokens_per_expert[3]);
  o.expert_bias.resize(3);
  EXPECT_THROW(build_layer_traffic(shape(1, 8), o), std::invalid_argument);
}

TEST(Replicas, OneReplicaPerExpertChangesNothing) {
  TrafficOptions o = options_for(16, 300, 64, 4, "zipf:1", CapacityPolicy::kDropPosition, 1.0);
  const LayerTraffic plain = build_layer_traffic(shape(2, 8), o);
  const ExpertReplicas single = single_replicas(place_experts(o.placement, 64, 16));
  o.replicas = &single;
  expect_same_traffic(plain, build_layer_traffic(shape(2, 8), o));
}

TEST(Replicas, CopiesAreSplitEvenlyAmongReplicas) {
  // 8 experts on 8 ranks (one each); the hot expert h gets a second replica on rank (h + 4) mod 8.
  TrafficOptions o = options_for(8, 1001, 8, 1, "hot:1:0.5");
  const int hot = hot_experts(o.routing, 8, o.seed).front();
  const int other = (hot + 4) % 8;
  ExpertReplicas replicas;
  for (int e = 0; e < 8; ++e) {
    replicas.begin.push_back(static_cast<int>(replicas.rank.size()));
    replicas.rank.push_back(e);
    if (e == hot) replicas.rank.push_back(other);
  }
  replicas.begin.push_back(static_cast<int>(replicas.rank.size()));
  const LayerTraffic plain = build_layer_traffic(shape(1, 8), o);
  o.replicas = &replicas;
  const LayerTraffic split = build_layer_traffic(shape(1, 8), o);
  const EpGroupTraffic& before = plain.groups[0];
  const EpGroupTraffic& after = split.groups[0];
  for (int src = 0; src < 8; ++src) {
    const auto row = static_cast<std::size_t>(src) * 8;
    const std::int64_t to_hot = before.copies_to_rank[row + static_cast<std::size_t>(hot)];
    EXPECT_GT(to_hot, 400);  // about half of 1001 tokens
    // The j-th copy goes to replica j mod 2: the home rank gets ceil(n / 2), the other rank the rest on top of
    // its own expert's copies.
    EXPECT_EQ(after.copies_to_rank[row + static_cast<std::size_t>(hot)], (to_hot + 1) / 2);
    EXPECT_EQ(after.copies_to_rank[row + static_cast<std::size_t>(other)],
              before.copies_to_rank[row + static_cast<std::size_t>(other)] + to_hot / 2);
  }
  EXPECT_EQ(plain.tokens_per_expert, split.tokens_per_expert);  // replicas move copies, not choices
}

}  // namespace
}  // namespace moesim::workloads
