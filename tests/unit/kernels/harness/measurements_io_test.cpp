// Measurements written as binary or JSON read back the same; the CSV lands beside them with a row per measurement.
#include "kernels/harness/measurements_io.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/test_support.hpp"

namespace moesim::kernels::harness {
namespace {

Measurements sample() {
  Measurements ms;
  ms.set_tool_version("0.1.0");
  ms.set_backend("cpu");
  ms.set_device_name("Some CPU, with a comma");
  ms.set_threads(2);
  for (const char* op : {"router", "grouped_ffn"}) {
    Measurement* m = ms.add_measurements();
    m->set_op(op);
    m->mutable_shape()->set_tokens(128);
    m->mutable_shape()->set_skew("zipf:1.5");
    m->set_flops(1.5e9);
    m->mutable_timing()->set_median_ms(0.25);
    m->mutable_timing()->add_samples_ms(0.25);
  }
  return ms;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp(const std::string& name) {
  return ::testing::TempDir() + "kernels_io_" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
         name;
}

TEST(MeasurementsIo, BinaryRoundTrips) {
  const std::string path = temp("m.pb");
  write_measurements(sample(), path);
  EXPECT_EQ(read_measurements(path).SerializeAsString(), sample().SerializeAsString());
  const std::string csv = read(temp("m.csv"));
  EXPECT_EQ(csv.rfind("op,tokens,hidden,", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3) << "a header and two rows";
  EXPECT_NE(csv.find("\"Some CPU, with a comma\""), std::string::npos) << "fields with commas are quoted";
  std::filesystem::remove(path);
  std::filesystem::remove(temp("m.csv"));
}

TEST(MeasurementsIo, JsonRoundTrips) {
  const std::string path = temp("m.json");
  write_measurements(sample(), path);
  EXPECT_EQ(read(path).find('{'), 0u);
  EXPECT_NE(read(path).find("\"grouped_ffn\""), std::string::npos);
  EXPECT_EQ(read_measurements(path).SerializeAsString(), sample().SerializeAsString());
  // A JSON file under another name still reads.
  std::filesystem::copy_file(path, temp("renamed.pb"), std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(read_measurements(temp("renamed.pb")).measurements_size(), 2);
  for (const char* f : {"m.json", "m.csv", "renamed.pb"}) std::filesystem::remove(temp(f));
}

TEST(MeasurementsIo, CsvGoesBesideTheFile) {
  EXPECT_EQ(csv_path_for("out/bench.pb"), "out/bench.csv");
  EXPECT_EQ(csv_path_for("bench"), "bench.csv");
  EXPECT_EQ(csv_path_for("bench.json"), "bench.csv");
  EXPECT_TRUE(test::contains(test::error_of([] { csv_path_for("bench.csv"); }), "--out: expected a .pb or .json"));
}

TEST(MeasurementsIo, UnreadableFilesSaySo) {
  EXPECT_THROW(read_measurements(temp("missing.pb")), std::runtime_error);
  const std::string junk = temp("junk.json");
  std::ofstream(junk) << "{ not json";
  EXPECT_THROW(read_measurements(junk), std::runtime_error);
  std::filesystem::remove(junk);
}

}  // namespace
}  // namespace moesim::kernels::harness
