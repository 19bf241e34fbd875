#include "sim/cli/args.hpp"

#include <cmath>
#include <stdexcept>

namespace moesim::sim::cli {

void Args::option(const std::string& name, const std::string& value_name, const std::string& help) {
  decls_.push_back(Decl{name, value_name, help});
}

void Args::flag(const std::string& name, const std::string& help) {
  decls_.push_back(Decl{name, "", help});
}

void Args::positionals(const std::string& name, const std::string& help) {
  positional_name_ = name;
  positional_help_ = help;
}

const Args::Decl* Args::find(const std::string& name) const {
  for (const Decl& d : decls_) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

void Args::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      if (positional_name_.empty()) throw std::invalid_argument("unexpected argument '" + arg + "' (see --help)");
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Decl* decl = find(name);
    if (decl == nullptr) throw std::invalid_argument("unknown option --" + name + " (see --help)");
    if (decl->value_name.empty()) {
      if (inline_value) throw std::invalid_argument("--" + name + ": takes no value");
      values_[name] = "";
      continue;
    }
    if (inline_value) {
      values_[name] = *inline_value;
    } else if (i + 1 < argc) {
      values_[name] = argv[++i];
    } else {
      throw std::invalid_argument("--" + name + ": missing value (expected " + decl->value_name + ")");
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::optional<long long> Args::get_int(const std::string& name, long long min, long long max) const {
  const auto text = get(name);
  if (!text) return std::nullopt;
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text->size())
    throw std::invalid_argument("--" + name + ": expected an integer, got '" + *text + "'");
  if (value < min || value > max) {
    throw std::invalid_argument("--" + name + ": must be in [" + std::to_string(min) + ", " + std::to_string(max) +
                                "], got " + *text);
  }
  return value;
}

std::optional<double> Args::get_double(const std::string& name, double min, double max) const {
  const auto text = get(name);
  if (!text) return std::nullopt;
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text->size() || !std::isfinite(value)) {
    throw std::invalid_argument("--" + name + ": expected a number, got '" + *text + "'");
  }
  if (value < min || value > max) {
    throw std::invalid_argument("--" + name + ": must be in [" + std::to_string(min) + ", " + std::to_string(max) +
                                "], got " + *text);
  }
  return value;
}

std::string Args::help() const {
  std::string out = "usage: " + usage_ + "\n\n" + summary_ + "\n\noptions:\n";
  if (!positional_name_.empty())
    out += "  " + positional_name_ + std::string(28 - std::min<std::size_t>(26, positional_name_.size()), ' ') +
           positional_help_ + "\n";
  for (const Decl& d : decls_) {
    std::string left = "--" + d.name + (d.value_name.empty() ? "" : " " + d.value_name);
    if (left.size() < 26) left += std::string(26 - left.size(), ' ');
    out += "  " + left + "  ";
    // Continuation lines of the help align under its first line.
    for (char c : d.help) {
      out += c;
      if (c == '\n') out += std::string(30, ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace moesim::sim::cli
