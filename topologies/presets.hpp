// The shipped cluster presets as YAML text (cluster_presets() in cluster_config.hpp lists them for users).
//
// Presets are written in the cluster file schema and go through parse_cluster like any file, so every preset
// exercises the parser and a preset can serve as the `base:` of a user's file.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moesim::topologies {

// The YAML text of preset `name` (exact match), or nothing if `name` is not a preset.
std::optional<std::string_view> preset_yaml(std::string_view name);

// The preset names in listing order: dgx-h100, dgx-a100, h800, gb200-nvl72.
std::vector<std::string> preset_names();

// How messages name a preset: "preset dgx-h100".
std::string preset_source(std::string_view name);

}  // namespace moesim::topologies
