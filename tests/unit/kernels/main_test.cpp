// moesim-kernels as a user runs it: exit codes, one-line errors naming the flag, the table, the files bench writes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kernels/backend.hpp"
#include "kernels/config.hpp"
#include "kernels/harness/measurements_io.hpp"

namespace moesim::kernels {
namespace {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string temp(const std::string& name) {
  return ::testing::TempDir() + "kernels_cli_" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
         name;
}

CliRun run(const std::string& args) {
  const std::string err_file = temp("stderr.txt");
  const std::string command = std::string(MOESIM_KERNELS_BIN) + " " + args + " 2>" + err_file;
  CliRun r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.out.append(buffer.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_file);
  std::stringstream ss;
  ss << err.rdbuf();
  r.err = ss.str();
  std::filesystem::remove(err_file);
  return r;
}

int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// Bad input: exit code 2, nothing on stdout, one line on stderr that contains `needle`.
void expect_bad_input(const std::string& args, const std::string& needle) {
  const CliRun r = run(args);
  EXPECT_EQ(r.exit_code, 2) << args;
  EXPECT_EQ(r.out, "") << args;
  EXPECT_EQ(lines(r.err), 1) << args << ": " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << args << ": " << r.err;
}

TEST(KernelsCli, Help) {
  const CliRun r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("usage: moesim-kernels validate"), std::string::npos);
  EXPECT_NE(r.out.find("--backend cpu|cuda"), std::string::npos);
}

TEST(KernelsCli, BadInputNamesTheFlag) {
  expect_bad_input("", "expected a command, validate or bench");
  expect_bad_input("calibrate", "expected a command, validate or bench, got 'calibrate'");
  expect_bad_input("validate --backend tpu", "--backend: expected cpu or cuda, got 'tpu'");
  expect_bad_input("validate --seed x1", "--seed: expected an integer");
  expect_bad_input("validate --threads 0", "--threads: expected an integer in [1, 4096], got '0'");
  expect_bad_input("validate --format yaml", "--format: expected text or json, got 'yaml'");
  expect_bad_input("validate --frobnicate", "--frobnicate: unknown option");
  expect_bad_input("validate --seed", "--seed: expected a value");
  expect_bad_input("validate --ops router", "--ops: only with bench");
  expect_bad_input("bench --ops router,softmax", "--ops: expected a comma-separated list");
  expect_bad_input("bench --out results.csv", "--out: expected a .pb or .json file");
}

TEST(KernelsCli, CudaWithoutAGpuIsBadInput) {
  try {
    make_cuda_backend(0);
    GTEST_SKIP() << "a usable GPU is present";
  } catch (const std::exception&) {
  }
  const CliRun r = run("validate --backend cuda --quick");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind("moesim-kernels: --backend cuda: ", 0), 0u) << r.err;
  if (!has_cuda_backend()) {
    EXPECT_NE(r.err.find("moesim was built without CUDA"), std::string::npos) << r.err;
  }
}

TEST(KernelsCli, ValidateQuickPasses) {
  const CliRun r = run("validate --quick --threads 2");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("validate: backend cpu"), std::string::npos);
  EXPECT_NE(r.out.find("checks passed"), std::string::npos);
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos);
  const CliRun json = run("validate --quick --format json --seed 7");
  EXPECT_EQ(json.exit_code, 0);
  EXPECT_EQ(json.out.rfind("{", 0), 0u);
  EXPECT_NE(json.out.find("\"seed\": 7"), std::string::npos);
  EXPECT_NE(json.out.find("\"passed\": true"), std::string::npos);
}

TEST(KernelsCli, AllToAllOpsAreSkippedWithTheReasonOnTheCpuBackend) {
  // The NCCL ops run only with --backend cuda on 2 or more GPUs: on the CPU backend each is a "skipped" line with
  // the reason, not a measurement, and the exit code stays 0.
  const std::string path = temp("bench.pb");
  const CliRun r = run("bench --quick --ops nccl_alltoall,nccl_alltoallv --out " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string reason = MOESIM_HAVE_NCCL ? "needs --backend cuda" : "built without NCCL";
  EXPECT_NE(r.out.find("skipped nccl_alltoall: " + reason + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped nccl_alltoallv: " + reason + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(0 measurements)"), std::string::npos) << r.out;
  const Measurements ms = harness::read_measurements(path);
  EXPECT_EQ(ms.measurements_size(), 0);
  ASSERT_EQ(ms.skipped_size(), 2);
  EXPECT_EQ(ms.skipped(0).reason(), reason);
  std::filesystem::remove(path);
  std::filesystem::remove(temp("bench.csv"));

  const CliRun validate = run("validate --quick --threads 2");
  EXPECT_EQ(validate.exit_code, 0) << validate.err;
  EXPECT_NE(validate.out.find("skipped  " + reason), std::string::npos) << validate.out;
  EXPECT_NE(validate.out.find("checks passed, 2 skipped"), std::string::npos) << validate.out;
  expect_bad_input("bench --ops nccl_alltoallx", "--ops: expected a comma-separated list of router, permute");
}

TEST(KernelsCli, BenchWritesMeasurementsAndCsv) {
  const std::string path = temp("bench.pb");
  const CliRun r = run("bench --quick --ops unpermute --threads 1 --out " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("unpermute"), std::string::npos);
  EXPECT_NE(r.err.find("[1/"), std::string::npos) << "a progress line on stderr";
  const Measurements ms = harness::read_measurements(path);
  EXPECT_EQ(ms.backend(), "cpu");
  EXPECT_TRUE(ms.quick());
  EXPECT_GT(ms.measurements_size(), 0);
  EXPECT_TRUE(std::filesystem::exists(temp("bench.csv")));
  std::filesystem::remove(path);
  std::filesystem::remove(temp("bench.csv"));
}

}  // namespace
}  // namespace moesim::kernels
