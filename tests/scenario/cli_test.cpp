// Runs the moesim binary as a user would: exit codes, one-line errors for bad input, no partial output files,
// and reproducible output.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

namespace {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

CliRun moesim(const std::string& args) {
  // CTest runs test cases in parallel processes: each run gets its own stderr file.
  static int counter = 0;
  const std::string err_file = ::testing::TempDir() + "moesim_stderr_" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
                               std::to_string(++counter) + ".txt";
  const std::string command = std::string(MOESIM_BIN) + " " + args + " 2>" + err_file;
  CliRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) run.out.append(buffer.data(), n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_file);
  std::stringstream ss;
  ss << err.rdbuf();
  run.err = ss.str();
  std::filesystem::remove(err_file);
  return run;
}

std::string data(const std::string& name) {
  return std::string(MOESIM_SOURCE_DIR) + "/tests/scenario/data/" + name;
}

int count_lines(const std::string& s) {
  int lines = 0;
  for (char c : s) lines += c == '\n' ? 1 : 0;
  return lines;
}

// A bad input: exit code 2 and one line on stderr that contains `needle`.
void expect_bad_input(const std::string& args, const std::string& needle) {
  const CliRun r = moesim(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

TEST(Cli, PresetsListsEveryShippedClusterAndModel) {
  const CliRun r = moesim("presets");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* name : {"dgx-h100", "dgx-a100", "h800", "gb200-nvl72", "mixtral-8x7b", "deepseek-v3",
                           "qwen3-30b-a3b", "switch-base-128"}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  }
}

TEST(Cli, JsonOutputsParse) {
  // JSON is a subset of YAML, so yaml-cpp reads what moesim writes.
  const CliRun presets = moesim("presets --format json");
  ASSERT_EQ(presets.exit_code, 0);
  const YAML::Node p = YAML::Load(presets.out);
  EXPECT_EQ(p["clusters"].size(), 4u);
  EXPECT_EQ(p["models"].size(), 4u);
  const CliRun a2a = moesim("a2a --scenario " + data("small.yaml") + " --format json");
  ASSERT_EQ(a2a.exit_code, 0);
  const YAML::Node r = YAML::Load(a2a.out);
  EXPECT_EQ(r["collectives"].size(), 2u);
  EXPECT_EQ(r["collectives"][0]["busiest_links"].size(), 5u);
  EXPECT_GE(r["collectives"][0]["sim_over_bound"].as<double>(), 1.0);
}

TEST(Cli, ScenarioRunsAndReportsDispatchAndCombine) {
  const CliRun r = moesim("a2a --scenario " + data("small.yaml"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("dispatch"), std::string::npos);
  EXPECT_NE(r.out.find("combine"), std::string::npos);
  EXPECT_NE(r.out.find("busiest links"), std::string::npos);
}

TEST(Cli, JsonEchoesTheResolvedInputsAndFlagsOverrideTheScenario) {
  const CliRun r = moesim("a2a --scenario " + data("small.yaml") + " --algorithm direct --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* key : {"\"num_gpus\": \"16\"", "\"tokens_per_rank\": \"256\"", "\"algorithm\": \"direct\"",
                          "\"routing\": \"zipf:1.2\"", "\"seed\": \"7\"", "\"dispatch_bytes_per_token\": 8192"}) {
    EXPECT_NE(r.out.find(key), std::string::npos) << key << "\n" << r.out.substr(0, 2000);
  }
}

TEST(Cli, SameSeedWritesByteIdenticalFiles) {
  const std::string a = ::testing::TempDir() + "moesim_same_seed_a.json";
  const std::string b = ::testing::TempDir() + "moesim_same_seed_b.json";
  ASSERT_EQ(moesim("a2a --scenario " + data("small.yaml") + " --format json --out " + a).exit_code, 0);
  ASSERT_EQ(moesim("a2a --scenario " + data("small.yaml") + " --format json --out " + b).exit_code, 0);
  std::ifstream fa(a), fb(b);
  std::stringstream sa, sb;
  sa << fa.rdbuf();
  sb << fb.rdbuf();
  EXPECT_FALSE(sa.str().empty());
  EXPECT_EQ(sa.str(), sb.str());
}

TEST(Cli, BadInputGetsOneLineAndExitCodeTwo) {
  expect_bad_input("a2a --scenario " + data("bad_syntax.yaml"), "bad_syntax.yaml:");
  expect_bad_input("a2a --scenario " + data("unknown_key.yaml"), "tokens_per_rnak");
  expect_bad_input("a2a --scenario " + data("bad_model.yaml"), "num_topk");
  expect_bad_input("a2a --scenario /nonexistent/scenario.yaml", "/nonexistent/scenario.yaml");
  expect_bad_input("a2a --cluster dgx-h900", "dgx-h900");
  expect_bad_input("a2a --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --ep 3", "ep");
  expect_bad_input("a2a --cluster dgx-h100 --nodes 1 --bytes-per-rank -5", "bytes-per-rank");
  expect_bad_input("a2a --routing zipf:-1", "routing");
  expect_bad_input("a2a --algorithm ring", "algorithm");
  expect_bad_input("a2a --frobnicate", "--frobnicate");
  expect_bad_input("launch", "launch");
}

TEST(Cli, FailedRunLeavesNoOutputFile) {
  const std::string out = ::testing::TempDir() + "moesim_should_not_exist.json";
  std::filesystem::remove(out);
  EXPECT_EQ(moesim("a2a --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --ep 3 --out " + out).exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
