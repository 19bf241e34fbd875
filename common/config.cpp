#include "common/config.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moesim {
namespace {

std::string shortest(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::string describe(const YAML::Node& value) {
  if (!value.IsDefined() || value.IsNull()) return "nothing";
  if (value.IsScalar()) return "'" + value.Scalar() + "'";
  if (value.IsSequence()) return "a list";
  return "a mapping";
}

}  // namespace

YAML::Node load_yaml_text(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(source + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
}

YAML::Node copy_without_marks(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return YAML::Node(node.Scalar());
    case YAML::NodeType::Sequence: {
      YAML::Node out(YAML::NodeType::Sequence);
      for (const auto& item : node) out.push_back(copy_without_marks(item));
      return out;
    }
    case YAML::NodeType::Map: {
      YAML::Node out(YAML::NodeType::Map);
      for (const auto& entry : node) out[entry.first.Scalar()] = copy_without_marks(entry.second);
      return out;
    }
    default:
      return YAML::Node();
  }
}

void merge_into(YAML::Node target, const YAML::Node& over, std::string_view skip_key) {
  for (const auto& entry : over) {
    const std::string key = entry.first.Scalar();
    if (key == skip_key) continue;
    YAML::Node current = target[key];
    if (current.IsMap() && entry.second.IsMap()) {
      merge_into(current, entry.second);
    } else {
      target[key] = entry.second;
    }
  }
}

YAML::Node load_yaml_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot read file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return load_yaml_text(buffer.str(), path);
}

ConfigMap::ConfigMap(const YAML::Node& node, std::string file, std::string path)
    : node_(node), file_(std::move(file)), path_(std::move(path)) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    throw std::invalid_argument(where() + ": expected a mapping of keys, got " + describe(node_));
  }
}

std::string ConfigMap::where(std::string_view key) const {
  YAML::Node at = node_;
  if (!key.empty() && node_.IsMap()) {
    const YAML::Node child = node_[std::string(key)];
    // reset(), not assignment: assigning a YAML::Node overwrites the node it refers to in the caller's tree.
    if (child.IsDefined()) at.reset(child);
  }
  std::string out = file_;
  if (at.IsDefined() && at.Mark().line >= 0) out += ":" + std::to_string(at.Mark().line + 1);
  std::string full = path_;
  if (!key.empty()) full += (full.empty() ? "" : ".") + std::string(key);
  if (!full.empty()) out += ": " + full;
  return out;
}

void ConfigMap::fail(std::string_view key, const std::string& expected) const {
  throw std::invalid_argument(where(key) + ": " + expected);
}

bool ConfigMap::has(std::string_view key) const {
  read_.emplace(key);  // asking about a key makes it a known one, even when it is null (YAML for absent)
  return node_.IsMap() && node_[std::string(key)].IsDefined() && !node_[std::string(key)].IsNull();
}

YAML::Node ConfigMap::get(std::string_view key) const {
  read_.emplace(key);
  if (!node_.IsMap()) return YAML::Node();
  YAML::Node value = node_[std::string(key)];
  return value;
}

YAML::Node ConfigMap::raw(std::string_view key) const {
  return get(key);
}

std::optional<std::string> ConfigMap::text(std::string_view key, std::string_view what, bool required) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (required) fail(key, "missing (expected " + std::string(what) + ")");
    return std::nullopt;
  }
  if (!value.IsScalar()) fail(key, "expected " + std::string(what) + ", got " + describe(value));
  return value.Scalar();
}

std::string ConfigMap::string(std::string_view key, std::optional<std::string> fallback) const {
  const auto value = text(key, "a string", !fallback);
  return value ? *value : *fallback;
}

std::string ConfigMap::choice(std::string_view key, const std::vector<std::string>& allowed,
                              std::optional<std::string> fallback) const {
  std::string names;
  for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
  const auto value = text(key, "one of " + names, !fallback);
  if (!value) return *fallback;
  for (const auto& a : allowed) {
    if (a == *value) return *value;
  }
  fail(key, "expected one of " + names + ", got '" + *value + "'");
}

double ConfigMap::number(std::string_view key, std::optional<double> fallback, double min, double max) const {
  const auto value = text(key, "a number", !fallback);
  if (!value) return *fallback;
  double parsed = 0.0;
  std::size_t used = 0;
  try {
    parsed = std::stod(*value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value->size() || !std::isfinite(parsed)) {
    fail(key, "expected a number, got '" + *value + "'");
  }
  if (parsed < min) fail(key, "must be >= " + shortest(min) + ", got " + *value);
  if (parsed > max) fail(key, "must be <= " + shortest(max) + ", got " + *value);
  return parsed;
}

std::int64_t ConfigMap::integer(std::string_view key, std::optional<std::int64_t> fallback, std::int64_t min,
                                std::int64_t max) const {
  const auto value = text(key, "an integer", !fallback);
  if (!value) return *fallback;
  std::int64_t parsed = 0;
  std::size_t used = 0;
  try {
    parsed = std::stoll(*value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value->size()) fail(key, "expected an integer, got '" + *value + "'");
  if (parsed < min) fail(key, "must be >= " + std::to_string(min) + ", got " + *value);
  if (parsed > max) fail(key, "must be <= " + std::to_string(max) + ", got " + *value);
  return parsed;
}

bool ConfigMap::boolean(std::string_view key, std::optional<bool> fallback) const {
  const auto value = text(key, "true or false", !fallback);
  if (!value) return *fallback;
  if (*value == "true") return true;
  if (*value == "false") return false;
  fail(key, "expected true or false, got '" + *value + "'");
}

// Quantities with units share one shape: read the text, parse it, and turn the parser's complaint into an
// error that names the key.
template <class Parse>
auto ConfigMap::quantity(std::string_view key, std::string_view what, bool required, Parse parse) const
    -> std::optional<decltype(parse(std::string_view{}))> {
  const auto value = text(key, what, required);
  if (!value) return std::nullopt;
  try {
    return parse(*value);
  } catch (const std::invalid_argument& e) {
    fail(key, e.what());
  }
}

double ConfigMap::bandwidth(std::string_view key, std::optional<double> fallback) const {
  const auto value = quantity(key, "a bandwidth such as '400 Gb/s'", !fallback, parse_bandwidth);
  if (!value) return *fallback;
  if (*value <= 0.0) fail(key, "must be > 0, got '" + *text(key, "", true) + "'");
  return *value;
}

TimePs ConfigMap::duration(std::string_view key, std::optional<TimePs> fallback) const {
  return quantity(key, "a duration such as '1 us'", !fallback, parse_duration).value_or(fallback.value_or(0));
}

double ConfigMap::size(std::string_view key, std::optional<double> fallback) const {
  return quantity(key, "a size such as '64 MiB'", !fallback, parse_size).value_or(fallback.value_or(0.0));
}

ConfigMap ConfigMap::map(std::string_view key) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) fail(key, "missing (expected a mapping)");
  if (!value.IsMap()) fail(key, "expected a mapping, got " + describe(value));
  return ConfigMap(value, file_, path_.empty() ? std::string(key) : path_ + "." + std::string(key));
}

std::optional<ConfigMap> ConfigMap::optional_map(std::string_view key) const {
  if (!has(key)) {
    read_.emplace(key);
    return std::nullopt;
  }
  return map(key);
}

void ConfigMap::reject_unknown() const {
  if (!node_.IsMap()) return;
  for (const auto& entry : node_) {
    const std::string key = entry.first.as<std::string>();
    if (read_.find(key) == read_.end()) {
      std::string known;
      for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
      fail(key, "unknown key (expected one of: " + known + ")");
    }
  }
}

}  // namespace moesim
