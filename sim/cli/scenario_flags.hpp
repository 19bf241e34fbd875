// The command-line flags that build a scenario, shared by the commands that run one (a2a, capacity): declared
// once, with their help, and applied over a scenario file in one place.
#pragma once

#include "sim/cli/args.hpp"
#include "sim/scenario.hpp"

namespace moesim::sim::cli {

// --scenario, --cluster, --nodes, --model, --tokens-per-rank, --ep, --placement, the routing flags (--routing,
// --routing-file, --node-limit, --device-limit, --expert-groups, --group-limit, --drift, --layer, --step) and the
// capacity flags (--policy, --min-capacity, --replica-slots).
void declare_scenario_flags(Args& args);
// --algorithm, --token-dedup, --bytes-per-rank, --epsilon. (--capacity-factor is a command's own: one value for
// a2a, a list for capacity.)
void declare_network_flags(Args& args);

// The scenario the flags describe: the embedded default when `allow_default` and nothing names a cluster, model,
// scenario or size; otherwise --scenario's file (if any) over neutral defaults, then each flag given. Flags that
// were not declared are simply absent. Throws std::invalid_argument naming the flag.
ScenarioSpec scenario_from_flags(const Args& args, bool allow_default);

}  // namespace moesim::sim::cli
