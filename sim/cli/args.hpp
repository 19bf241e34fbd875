// Command-line options, declared once with their help text; the help is generated from the declarations and
// anything undeclared is rejected (exit code 2 through std::invalid_argument).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moesim::sim::cli {

class Args {
 public:
  Args(std::string usage, std::string summary) : usage_(std::move(usage)), summary_(std::move(summary)) {}

  // Declares --name VALUE.
  void option(const std::string& name, const std::string& value_name, const std::string& help);
  // Declares --name without a value.
  void flag(const std::string& name, const std::string& help);
  // Declares that positional arguments are accepted (otherwise they are an error).
  void positionals(const std::string& name, const std::string& help);

  // Parses argv[first..argc); throws std::invalid_argument for undeclared options or missing values.
  void parse(int argc, char** argv, int first);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  bool flag_set(const std::string& name) const { return has(name); }
  bool declares(const std::string& name) const { return find(name) != nullptr; }
  const std::vector<std::string>& positional() const { return positional_; }
  // Typed readers with the option named in errors.
  std::optional<long long> get_int(const std::string& name, long long min, long long max) const;
  std::optional<double> get_double(const std::string& name, double min, double max) const;

  std::string help() const;

 private:
  struct Decl {
    std::string name;
    std::string value_name;  // empty for a flag
    std::string help;
  };
  const Decl* find(const std::string& name) const;

  std::string usage_;
  std::string summary_;
  std::vector<Decl> decls_;
  std::string positional_name_;
  std::string positional_help_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace moesim::sim::cli
