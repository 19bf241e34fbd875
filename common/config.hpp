// Validated reading of YAML configuration.
//
// Every config section is read through a ConfigMap: each key is read once, with its type, default and valid
// range stated at the point of use, and after reading, reject_unknown() turns any key that nobody read into an
// error, so a typo never silently becomes a default. Errors are std::invalid_argument with one line that names
// the file, the line, the key path and what was expected:
//
//   cluster.yaml:12: fabric.leaf.uplinks: must be >= 1, got -4
//
// Library code only throws; the command line turns std::invalid_argument into exit code 2.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/units.hpp"

namespace moesim {

// Parses a YAML file, or throws "FILE:LINE: YAML syntax error: ..." / "FILE: cannot read file".
YAML::Node load_yaml_file(const std::string& path);
// Parses YAML text; `source` names it in messages.
YAML::Node load_yaml_text(const std::string& text, const std::string& source);

// `base:` merging, shared by every schema that starts from a built-in mapping (cluster presets, cost profiles).
// A deep copy whose nodes carry no position: values inherited from built-in text must not be reported at the line
// numbers of that text as if they were lines of the user's file (YAML::Clone would keep them).
YAML::Node copy_without_marks(const YAML::Node& node);
// Mappings merge key by key; anything else in `over` (a scalar, a list, null) replaces what `target` had. A key
// equal to `skip_key` (e.g. "base") is not copied.
void merge_into(YAML::Node target, const YAML::Node& over, std::string_view skip_key = {});

class ConfigMap {
 public:
  // `node` must be a mapping (a null node reads as an empty mapping). `path` is this map's key path.
  ConfigMap(const YAML::Node& node, std::string file, std::string path = "");

  bool has(std::string_view key) const;
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }

  // Typed getters. Without a fallback the key is required.
  std::string string(std::string_view key, std::optional<std::string> fallback = std::nullopt) const;
  std::string choice(std::string_view key, const std::vector<std::string>& allowed,
                     std::optional<std::string> fallback = std::nullopt) const;
  double number(std::string_view key, std::optional<double> fallback = std::nullopt,
                double min = -std::numeric_limits<double>::infinity(),
                double max = std::numeric_limits<double>::infinity()) const;
  std::int64_t integer(std::string_view key, std::optional<std::int64_t> fallback = std::nullopt,
                       std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
  bool boolean(std::string_view key, std::optional<bool> fallback = std::nullopt) const;
  double bandwidth(std::string_view key, std::optional<double> fallback = std::nullopt) const;  // bytes/s, > 0
  TimePs duration(std::string_view key, std::optional<TimePs> fallback = std::nullopt) const;   // >= 0
  double size(std::string_view key, std::optional<double> fallback = std::nullopt) const;       // bytes, >= 0

  ConfigMap map(std::string_view key) const;  // required sub-mapping
  std::optional<ConfigMap> optional_map(std::string_view key) const;
  YAML::Node raw(std::string_view key) const;  // marks the key as read

  // Throws for the first key of this mapping that no getter read.
  void reject_unknown() const;

  // "FILE:LINE: path.key" for messages about `key` (or about this map when key is empty).
  std::string where(std::string_view key = {}) const;
  [[noreturn]] void fail(std::string_view key, const std::string& expected) const;

 private:
  YAML::Node get(std::string_view key) const;  // marks as read; null node if absent
  // The scalar text of `key`; nullopt when absent, which is an error if `required`.
  std::optional<std::string> text(std::string_view key, std::string_view what, bool required) const;
  template <class Parse>
  auto quantity(std::string_view key, std::string_view what, bool required, Parse parse) const
      -> std::optional<decltype(parse(std::string_view{}))>;

  YAML::Node node_;
  std::string file_;
  std::string path_;
  mutable std::set<std::string, std::less<>> read_;
};

}  // namespace moesim
