// Runs the moesim binary as a user would: exit codes, one-line errors for bad input, no partial output files,
// and reproducible output.
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream ss;
  ss << file.rdbuf();
  return ss.str();
}

TEST(Cli, CapacityJsonHasOneRowPerFactor) {
  const CliRun r =
      moesim("capacity --model mixtral-8x7b --ep 8 --tokens 512 --layers 2 --capacity-factor 1,1.25 --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node j = YAML::Load(r.out);
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["inputs"]["capacity_policy"].as<std::string>(), "drop-position");  // this command's default
  EXPECT_EQ(j["inputs"]["tokens_per_rank"].as<std::int64_t>(), 512);
  EXPECT_EQ(j["routed"].size(), 2u);
  // C = 512 tokens x top-2 / 8 experts x F: 128 at F 1, 160 at F 1.25.
  EXPECT_EQ(j["rows"][0]["capacity"].as<std::int64_t>(), 128);
  EXPECT_EQ(j["rows"][1]["capacity"].as<std::int64_t>(), 160);
  const YAML::Node layer = j["rows"][0]["layers"][1];
  EXPECT_EQ(layer["layer"].as<std::int64_t>(), 1);
  EXPECT_EQ(layer["dropped_per_expert"].size(), 8u);
  EXPECT_EQ(layer["expert_histogram"]["counts"].size(), 20u);
  EXPECT_GE(layer["expert_load"]["gini"].as<double>(), 0.0);
}

TEST(Cli, CapacityTextShowsTheTableAndTheBalancing) {
  const CliRun r =
      moesim("capacity --model mixtral-8x7b --tokens 256 --layer 3 --routing zipf:1.2 --steps 12 --bias-rate 0.05");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"moesim capacity: mixtral-8x7b", "layer 3", "routed load", "worst layer", "\n  1.25 ",
                           "\n  2.00 ", "bias balancing on layer 3", "settled (mean of the last 10 steps)"}) {
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  }
}

TEST(Cli, CapacityWrittenRoutingReplaysToTheSameCounts) {
  // The routing written by one run, replayed by another with the same model, EP, tokens, factors and policy,
  // gives the same rows, byte for byte (drop-score uses the recorded scores).
  for (const std::string policy : {"drop-position", "drop-score"}) {
    const std::string file = ::testing::TempDir() + "moesim_capacity_routing_" + policy + ".csv";
    const std::string common =
        " --model mixtral-8x7b --ep 8 --tokens 512 --capacity-factor 0.8,1.25 --policy " + policy + " --format json";
    const CliRun sampled = moesim("capacity --layers 2 --routing zipf:1.2 --write-routing " + file + common);
    ASSERT_EQ(sampled.exit_code, 0) << sampled.err;
    EXPECT_EQ(read_file(file).rfind("layer,token,e0,e1,s0,s1\n", 0), 0u);
    const CliRun replayed = moesim("capacity --routing-file " + file + common);
    ASSERT_EQ(replayed.exit_code, 0) << replayed.err;
    const YAML::Node a = YAML::Load(sampled.out), b = YAML::Load(replayed.out);
    EXPECT_EQ(b["inputs"]["routing"].as<std::string>(), "replay");
    EXPECT_GT(a["rows"][0]["dropped"].as<std::int64_t>(), 0);
    EXPECT_EQ(YAML::Dump(a["rows"]), YAML::Dump(b["rows"])) << policy;
    EXPECT_EQ(YAML::Dump(a["routed"]), YAML::Dump(b["routed"])) << policy;
    std::filesystem::remove(file);
  }
}

TEST(Cli, CapacityTakesPolicyFactorAndLayerFromTheScenarioUnlessFlagsSetThem) {
  const std::string scenario = ::testing::TempDir() + "moesim_capacity_scenario.yaml";
  std::ofstream(scenario) << "model: mixtral-8x7b\ntokens_per_rank: 64\ncapacity_policy: padded\n"
                             "capacity_factor: 1.5\nlayer: 2\nalgorithm: rail\n";
  const CliRun r = moesim("capacity --scenario " + scenario + " --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node j = YAML::Load(r.out);
  EXPECT_EQ(j["inputs"]["capacity_policy"].as<std::string>(), "padded");
  ASSERT_EQ(j["inputs"]["capacity_factors"].size(), 1u);
  EXPECT_EQ(j["inputs"]["capacity_factors"][0].as<double>(), 1.5);
  ASSERT_EQ(j["inputs"]["layers"].size(), 1u);
  EXPECT_EQ(j["inputs"]["layers"][0].as<int>(), 2);
  const CliRun flags =
      moesim("capacity --scenario " + scenario + " --policy reroute --capacity-factor 1,2 --layers 3 --format json");
  ASSERT_EQ(flags.exit_code, 0) << flags.err;
  const YAML::Node f = YAML::Load(flags.out);
  EXPECT_EQ(f["inputs"]["capacity_policy"].as<std::string>(), "reroute");
  EXPECT_EQ(f["rows"].size(), 2u);
  EXPECT_EQ(f["inputs"]["layers"].size(), 3u);
  std::filesystem::remove(scenario);
}

TEST(Cli, CapacityBadInputGetsOneLineAndExitCodeTwo) {
  const std::string model = "capacity --model mixtral-8x7b --tokens 64 ";
  expect_bad_input(model + "--capacity-factor 0", "--capacity-factor");
  expect_bad_input(model + "--capacity-factor 1,,2", "--capacity-factor");
  expect_bad_input(model + "--capacity-factor 1,inf", "--capacity-factor");
  expect_bad_input(model + "--policy nope", "nope");
  expect_bad_input(model + "--steps 0 --bias-rate 0.1", "--steps");
  expect_bad_input(model + "--steps 5", "--bias-rate");
  expect_bad_input(model + "--layers 0", "--layers");
  expect_bad_input(model + "--layers 2 --layer 1", "--layers");
  expect_bad_input(model + "--tokens-per-rank 64", "--tokens");
  expect_bad_input(model + "--ep 3", "ep");
  expect_bad_input(model + "--nodes 2", "nodes");
  expect_bad_input(model + "--routing-file /nonexistent/routing.csv", "/nonexistent/routing.csv");
  expect_bad_input("capacity --model mixtral-9x9b", "mixtral-9x9b");
  expect_bad_input("capacity --ep 8", "model");
}

TEST(Cli, BadRoutingFilesNameTheLineAndExitWithTwo) {
  // Mixtral routes top-2 over 8 experts; each file breaks one rule on its third line.
  const std::string a2a = "a2a --cluster dgx-h100 --nodes 1 --model mixtral-8x7b --routing-file ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"layer,token,e0,e1\n0,0,1,2\n0,1,3\n", ":3:"},    // wrong column count
      {"layer,token,e0,e1\n0,0,1,2\n0,1,3,9\n", ":3:"},  // expert id out of range
      {"layer,token,e0,e1\n0,0,1,2\n0,1,4,4\n", ":3:"},  // duplicate ids in a row
      {"layer,token,e0,e1\n0,0,1,2\n0,5,4,3\n", ":3:"},  // token ids skip
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string file = testing::TempDir() + "bad_routing_" + std::to_string(i) + ".csv";
    {
      std::ofstream out(file);
      out << cases[i].first;
    }
    expect_bad_input(a2a + file, file + cases[i].second);
    std::filesystem::remove(file);
  }
}

TEST(Cli, StepReportsTheStepAndWritesATrace) {
  const std::string trace = testing::TempDir() + "step_trace.json";
  const CliRun r = moesim(
      "step --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --layout dp=8,pp=2,ep=8,mbs=1,gbs=16 --seq-len 1024 "
      "--format json --trace " +
      trace);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node j = YAML::Load(r.out);
  EXPECT_GT(j["step_time_ms"].as<double>(), 0.0);
  EXPECT_EQ(j["stages"].size(), 2u);
  EXPECT_GT(j["mfu"].as<double>(), 0.0);
  EXPECT_LT(j["mfu"].as<double>(), 1.0);
  EXPECT_EQ(j["inputs"]["layout"].as<std::string>(), "dp=8,tp=1,pp=2,ep=8,etp=1,vpp=1,mbs=1,gbs=16");
  const YAML::Node t = YAML::LoadFile(trace);
  EXPECT_GT(t["traceEvents"].size(), 100u);
  std::filesystem::remove(trace);
  const CliRun again = moesim(
      "step --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --layout dp=8,pp=2,ep=8,mbs=1,gbs=16 --seq-len 1024 "
      "--format json");
  EXPECT_EQ(again.out, r.out);
}

TEST(Cli, StepBadInputGetsOneLineAndExitCodeTwo) {
  const std::string step = "step --cluster dgx-h100 --nodes 2 --model mixtral-8x7b ";
  expect_bad_input(step, "--layout");
  expect_bad_input(step + "--layout dp=8,pp=2,ep=16", "ep");
  expect_bad_input(step + "--layout dp=8,pp=2,ep=8,bogus=1", "bogus");
  expect_bad_input(step + "--layout dp=8,pp=2,ep=8 --schedule zigzag", "zigzag");
  expect_bad_input(step + "--layout dp=8,pp=2,ep=8 --precision fp4", "--precision");
  expect_bad_input(step + "--layout dp=8,pp=2,ep=8 --zero 4", "--zero");
}

TEST(Cli, PlanRanksLayoutsAndSaysWhyOthersLost) {
  const CliRun r = moesim(
      "plan --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --gbs 16 --seq-len 1024 --top 3 "
      "--format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node j = YAML::Load(r.out);
  EXPECT_EQ(j["ranked"].size(), 3u);
  for (const auto& e : j["others"]) EXPECT_FALSE(e["reason"].as<std::string>().empty());
  expect_bad_input("plan --cluster dgx-h100 --nodes 2 --model mixtral-8x7b", "--gbs");
  expect_bad_input("plan --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --gbs 16 --mbs 0", "--mbs");
  expect_bad_input("plan --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --gbs 16 --recompute some", "some");
}

TEST(Cli, StepAndPlanReadTheirKeysFromTheScenarioAndFlagsOverrideThem) {
  const std::string file = testing::TempDir() + "step_scenario.yaml";
  std::ofstream(file) << "cluster: dgx-h100\nnodes: 2\nmodel: mixtral-8x7b\nseq_len: 1024\n"
                         "layout: dp=8,pp=2,ep=8,mbs=1,gbs=16\nrecompute: selective\nzero: 2\n";
  const CliRun r = moesim("step --scenario " + file + " --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node j = YAML::Load(r.out);
  EXPECT_EQ(j["inputs"]["layout"].as<std::string>(), "dp=8,tp=1,pp=2,ep=8,etp=1,vpp=1,mbs=1,gbs=16");
  EXPECT_EQ(j["inputs"]["seq_len"].as<std::int64_t>(), 1024);
  const CliRun flags = moesim("step --scenario " + file + " --layout dp=16,ep=8,mbs=1,gbs=16 --format json");
  ASSERT_EQ(flags.exit_code, 0) << flags.err;
  EXPECT_EQ(YAML::Load(flags.out)["inputs"]["layout"].as<std::string>(),
            "dp=16,tp=1,pp=1,ep=8,etp=1,vpp=1,mbs=1,gbs=16");
  // The same keys given as flags give the same step, byte for byte.
  const CliRun same = moesim(
      "step --cluster dgx-h100 --nodes 2 --model mixtral-8x7b --seq-len 1024 --layout dp=8,pp=2,ep=8,mbs=1,gbs=16 "
      "--recompute selective --zero 2 --format json");
  EXPECT_EQ(same.out, r.out);

  // Keys a command does not take are errors naming the file, line and key.
  expect_bad_input("step --scenario " + file + " --layout dp=8,pp=2,ep=8,mbs=1,gbs=16 --zero 1 --gbs 4", "--gbs");
  expect_bad_input("plan --scenario " + file + " --gbs 16", "step_scenario.yaml:5: layout: not a key of moesim plan");
  expect_bad_input("a2a --scenario " + file, "step_scenario.yaml:4: seq_len: not a key of moesim a2a");
  expect_bad_input("capacity --scenario " + file, "seq_len: not a key of moesim capacity");
  std::ofstream(file) << "cluster: dgx-h100\nnodes: 2\nmodel: mixtral-8x7b\nlayout: dp=8,pp=2,ep=16\n";
  expect_bad_input("step --scenario " + file, "step_scenario.yaml:4: layout: ");
  std::ofstream(file) << "cluster: dgx-h100\nnodes: 2\nmodel: mixtral-8x7b\ngbs: 16\nmbs: [1, 0]\n";
  expect_bad_input("plan --scenario " + file, "step_scenario.yaml:5: mbs");
  std::ofstream(file) << "cluster: dgx-h100\nnodes: 2\nmodel: mixtral-8x7b\ncomm_sms: 16\nrouting_samples: 2\n";
  expect_bad_input("a2a --scenario " + file, "step_scenario.yaml:4: comm_sms: not a key of moesim a2a");
  expect_bad_input("step --scenario " + file + " --layout dp=16,ep=8 --comm-sms 200", "--comm-sms: must leave");
  std::ofstream(file) << "cluster: dgx-h100\nnodes: 2\nmodel: mixtral-8x7b\ngbs: 16\nmbs: [1, 2]\ntop: 3\n"
                         "seq_len: 1024\n";
  const CliRun plan = moesim("plan --scenario " + file + " --format json");
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_EQ(YAML::Load(plan.out)["ranked"].size(), 3u);
  std::filesystem::remove(file);
}

}  // namespace

TEST(Cli, CalibrateWritesAProfileTheLoaderReads) {
  const std::string profile = ::testing::TempDir() + "cli_calibrated_profile.yaml";
  const CliRun r = moesim("calibrate " + std::string(MOESIM_SOURCE_DIR) +
                          "/kernels/measurements/cpu-xeon-2-threads/cpu_bench.pb --out " + profile + " --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node report = YAML::Load(r.out);
  EXPECT_EQ(report["kinds"].size(), 5u);
  EXPECT_GT(report["held_out"].size(), 0u);
  const YAML::Node written = YAML::LoadFile(profile);
  EXPECT_TRUE(written["devices"]["Intel(R) Xeon(R) Processor"]);
  std::filesystem::remove(profile);
}

TEST(Cli, CalibrateNamesAMalformedMeasurementsFile) {
  const std::string bad = ::testing::TempDir() + "cli_malformed_measurements.pb";
  {
    std::ofstream out(bad, std::ios::binary);
    out << "this is not a protobuf";
  }
  expect_bad_input("calibrate " + bad + " --out " + ::testing::TempDir() + "never_written.yaml", bad);
  EXPECT_FALSE(std::filesystem::exists(::testing::TempDir() + "never_written.yaml"));
  std::filesystem::remove(bad);
  expect_bad_input("calibrate --out x.yaml", "MEASUREMENTS");
}
