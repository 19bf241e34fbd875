#include "common/config.hpp"

#include <functional>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace moesim {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigMap, ReadsTypedValuesWithDefaults) {
  const ConfigMap map(load_yaml_text("a: 3\nb: 2.5\nc: true\nd: 400 Gb/s\ne: {f: 1 us}\n", "t.yaml"), "t.yaml");
  EXPECT_EQ(map.integer("a"), 3);
  EXPECT_DOUBLE_EQ(map.number("b"), 2.5);
  EXPECT_TRUE(map.boolean("c"));
  EXPECT_DOUBLE_EQ(map.bandwidth("d"), 50e9);
  EXPECT_EQ(map.map("e").duration("f"), 1'000'000);
  EXPECT_EQ(map.integer("missing", 42), 42);
}

TEST(ConfigMap, ErrorsNameTheFileTheLineAndTheKeyPath) {
  const ConfigMap map(load_yaml_text("top:\n  leaf:\n    up: -4\n", "cluster.yaml"), "cluster.yaml");
  const std::string message = error_of([&] { map.map("top").map("leaf").integer("up", std::nullopt, 1); });
  EXPECT_EQ(message, "cluster.yaml:3: top.leaf.up: must be >= 1, got -4");
}

TEST(ConfigMap, RejectsKeysNobodyRead) {
  const ConfigMap map(load_yaml_text("nodes: 2\nnodse: 3\n", "c.yaml"), "c.yaml");
  map.integer("nodes");
  const std::string message = error_of([&] { map.reject_unknown(); });
  EXPECT_NE(message.find("c.yaml:2: nodse: unknown key"), std::string::npos) << message;
}

TEST(ConfigMap, SyntaxErrorsNameTheLine) {
  const std::string message = error_of([] { load_yaml_text("a: [1, 2\nb: 3\n", "bad.yaml"); });
  EXPECT_NE(message.find("bad.yaml:"), std::string::npos) << message;
  EXPECT_NE(message.find("YAML syntax error"), std::string::npos) << message;
}

TEST(ConfigMap, RejectsWrongTypes) {
  const ConfigMap map(load_yaml_text("a: [1]\nb: abc\nc: maybe\nd: 400\n", "t.yaml"), "t.yaml");
  EXPECT_NE(error_of([&] { map.integer("a"); }).find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of([&] { map.number("b"); }).find("expected a number"), std::string::npos);
  EXPECT_NE(error_of([&] { map.boolean("c"); }).find("true or false"), std::string::npos);
  EXPECT_NE(error_of([&] { map.bandwidth("d"); }).find("unit"), std::string::npos);
}

}  // namespace
}  // namespace moesim
