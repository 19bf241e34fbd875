#include "common/config.hpp"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moesim {
namespace {

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

YAML::Node load_yaml_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot read file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return load_yaml_text(buffer.str(), path);
}

ConfigMap::ConfigMap(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {
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

std::string ConfigMap::scalar(std::string_view key, const YAML::Node& value, std::string_view what) const {
  if (!value.IsScalar()) fail(key, "expected " + std::string(what) + ", got " + describe(value));
  return value.Scalar();
}

std::string ConfigMap::string(std::string_view key, std::optional<std::string> fallback) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected a string)");
    return *fallback;
  }
  return scalar(key, value, "a string");
}

std::string ConfigMap::choice(std::string_view key, const std::vector<std::string>& allowed,
                              std::optional<std::string> fallback) const {
  std::string names;
  for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected one of " + names + ")");
    return *fallback;
  }
  const std::string text = scalar(key, value, "one of " + names);
  for (const auto& a : allowed) {
    if (a == text) return text;
  }
  fail(key, "expected one of " + names + ", got '" + text + "'");
}

double ConfigMap::number(std::string_view key, std::optional<double> fallback, double min, double max) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected a number)");
    return *fallback;
  }
  const std::string text = scalar(key, value, "a number");
  double parsed = 0.0;
  std::size_t used = 0;
  try {
    parsed = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(parsed)) fail(key, "expected a number, got '" + text + "'");
  if (parsed < min) fail(key, "must be >= " + std::to_string(min) + ", got " + text);
  if (parsed > max) fail(key, "must be <= " + std::to_string(max) + ", got " + text);
  return parsed;
}

std::int64_t ConfigMap::integer(std::string_view key, std::optional<std::int64_t> fallback, std::int64_t min,
                                std::int64_t max) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected an integer)");
    return *fallback;
  }
  const std::string text = scalar(key, value, "an integer");
  std::int64_t parsed = 0;
  std::size_t used = 0;
  try {
    parsed = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) fail(key, "expected an integer, got '" + text + "'");
  if (parsed < min) fail(key, "must be >= " + std::to_string(min) + ", got " + text);
  if (parsed > max) fail(key, "must be <= " + std::to_string(max) + ", got " + text);
  return parsed;
}

bool ConfigMap::boolean(std::string_view key, std::optional<bool> fallback) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected true or false)");
    return *fallback;
  }
  const std::string text = scalar(key, value, "true or false");
  if (text == "true") return true;
  if (text == "false") return false;
  fail(key, "expected true or false, got '" + text + "'");
}

double ConfigMap::bandwidth(std::string_view key, std::optional<double> fallback) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected a bandwidth such as '400 Gb/s')");
    return *fallback;
  }
  const std::string text = scalar(key, value, "a bandwidth such as '400 Gb/s'");
  double parsed = 0.0;
  try {
    parsed = parse_bandwidth(text);
  } catch (const std::invalid_argument& e) {
    fail(key, e.what());
  }
  if (parsed <= 0.0) fail(key, "must be > 0, got '" + text + "'");
  return parsed;
}

TimePs ConfigMap::duration(std::string_view key, std::optional<TimePs> fallback) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected a duration such as '1 us')");
    return *fallback;
  }
  const std::string text = scalar(key, value, "a duration such as '1 us'");
  try {
    return parse_duration(text);
  } catch (const std::invalid_argument& e) {
    fail(key, e.what());
  }
}

double ConfigMap::size(std::string_view key, std::optional<double> fallback) const {
  const YAML::Node value = get(key);
  if (!value.IsDefined() || value.IsNull()) {
    if (!fallback) fail(key, "missing (expected a size such as '64 MiB')");
    return *fallback;
  }
  const std::string text = scalar(key, value, "a size such as '64 MiB'");
  try {
    return parse_size(text);
  } catch (const std::invalid_argument& e) {
    fail(key, e.what());
  }
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
