#include "workloads/routing_file.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <locale>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim::workloads {
namespace {

using test::error_of;

// A file under the temp directory, removed when the test ends. The name carries the process id, because
// CTest may run the cases of this binary as parallel processes.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& content) {
    static int counter = 0;
    path_ = (std::filesystem::temp_directory_path() /
             ("moesim_routing_file_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name))
                .string();
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

RecordedRouting parse(const std::string& text, int num_experts = 16) {
  return parse_routing_text(text, "r.csv", num_experts);
}

std::string parse_error(const std::string& text, int num_experts = 16) {
  return error_of([&] { parse(text, num_experts); });
}

std::string write(const RecordedRouting& routing) {
  std::ostringstream out;
  write_routing(out, routing);
  return out.str();
}

// "layer,token,e0,...,e{k-1}" plus the s columns when asked.
std::string header(int num_topk, bool with_scores) {
  std::string out = "layer,token";
  for (int i = 0; i < num_topk; ++i) out += ",e" + std::to_string(i);
  for (int i = 0; with_scores && i < num_topk; ++i) out += ",s" + std::to_string(i);
  return out + "\n";
}

// `num_tokens` random rows per layer with distinct experts (and random finite scores when asked), for round trips.
RecordedRouting random_routing(const std::vector<int>& layer_ids, int num_topk, int num_experts, bool with_scores,
                               std::int64_t num_tokens) {
  std::mt19937_64 rng(42);
  RecordedRouting routing;
  routing.num_topk = num_topk;
  routing.has_scores = with_scores;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(num_experts));
  for (int layer_id : layer_ids) {
    RecordedLayer layer;
    layer.layer = layer_id;
    layer.num_tokens = num_tokens;
    for (std::int64_t t = 0; t < num_tokens; ++t) {
      for (int e = 0; e < num_experts; ++e) ids[static_cast<std::size_t>(e)] = e;
      std::shuffle(ids.begin(), ids.end(), rng);
      layer.experts.insert(layer.experts.end(), ids.begin(), ids.begin() + num_topk);
      for (int i = 0; with_scores && i < num_topk; ++i) {
        // Any finite float: random bit patterns cover every exponent, subnormals included.
        float score = 0.0f;
        do {
          score = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
        } while (!std::isfinite(score));
        layer.scores.push_back(score);
      }
    }
    routing.layers.push_back(std::move(layer));
  }
  return routing;
}

void expect_same(const RecordedRouting& a, const RecordedRouting& b) {
  EXPECT_EQ(a.num_topk, b.num_topk);
  EXPECT_EQ(a.has_scores, b.has_scores);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].layer, b.layers[l].layer);
    EXPECT_EQ(a.layers[l].num_tokens, b.layers[l].num_tokens);
    EXPECT_EQ(a.layers[l].experts, b.layers[l].experts);
    ASSERT_EQ(a.layers[l].scores.size(), b.layers[l].scores.size());
    for (std::size_t i = 0; i < a.layers[l].scores.size(); ++i) {
      // Bit-identical, so -0 stays -0 and every subnormal survives.
      ASSERT_EQ(std::bit_cast<std::uint32_t>(a.layers[l].scores[i]),
                std::bit_cast<std::uint32_t>(b.layers[l].scores[i]))
          << "layer " << a.layers[l].layer << " score " << i << ": " << a.layers[l].scores[i] << " vs "
          << b.layers[l].scores[i];
    }
  }
}

TEST(RoutingFile, ParsesExpertsAndScores) {
  const RecordedRouting routing = parse(
      "layer,token,e0,e1,s0,s1\n"
      "0,0,3,1,0.75,0.25\n"
      "0,1,15,0,2.5,-1e-3\n");
  EXPECT_EQ(routing.source, "r.csv");
  EXPECT_EQ(routing.num_topk, 2);
  EXPECT_TRUE(routing.has_scores);
  ASSERT_EQ(routing.layers.size(), 1u);
  EXPECT_EQ(routing.layers[0].layer, 0);
  EXPECT_EQ(routing.layers[0].num_tokens, 2);
  EXPECT_EQ(routing.layers[0].experts, (std::vector<std::int32_t>{3, 1, 15, 0}));
  EXPECT_EQ(routing.layers[0].scores, (std::vector<float>{0.75f, 0.25f, 2.5f, -1e-3f}));
}

TEST(RoutingFile, InterleavedLayersAreGatheredAndSorted) {
  // Rows of layers 3 and 1 alternate; each layer numbers its own tokens from 0.
  const RecordedRouting routing = parse(
      "layer,token,e0\n"
      "3,0,7\n"
      "1,0,2\n"
      "3,1,8\n"
      "3,2,9\n"
      "1,1,4\n");
  EXPECT_FALSE(routing.has_scores);
  ASSERT_EQ(routing.layers.size(), 2u);
  EXPECT_EQ(routing.layers[0].layer, 1);
  EXPECT_EQ(routing.layers[0].experts, (std::vector<std::int32_t>{2, 4}));
  EXPECT_TRUE(routing.layers[0].scores.empty());
  EXPECT_EQ(routing.layers[1].layer, 3);
  EXPECT_EQ(routing.layers[1].num_tokens, 3);
  EXPECT_EQ(routing.layers[1].experts, (std::vector<std::int32_t>{7, 8, 9}));
  ASSERT_NE(routing.find(3), nullptr);
  EXPECT_EQ(routing.find(3)->num_tokens, 3);
  EXPECT_EQ(routing.find(1)->num_tokens, 2);
  EXPECT_EQ(routing.find(2), nullptr);
  EXPECT_EQ(routing.find(0), nullptr);
  EXPECT_EQ(routing.find(4), nullptr);
}

TEST(RoutingFile, CommentsBlankLinesCrlfAndSpacesAreAccepted) {
  const std::string expected_experts_text =
      "layer,token,e0,e1\n"
      "0,0,1,2\n"
      "0,1,3,4\n";
  const RecordedRouting plain = parse(expected_experts_text);
  const RecordedRouting decorated = parse(
      "\xEF\xBB\xBF# recorded by a test\r\n"
      "\r\n"
      "  layer , token ,e0,\te1 \r\n"
      "   \t\r\n"
      "  # an indented comment\r\n"
      " 0 , 0 ,\t1 , 2\t\r\n"
      "0,1,3,4");  // no line end after the last row
  expect_same(plain, decorated);
}

TEST(RoutingFile, LineNumbersCountCommentsAndCrlf) {
  // The bad row is the 5th line: comments, blank lines and CR characters must not shift the count.
  EXPECT_EQ(parse_error("# c\r\nlayer,token,e0\r\n\r\n0,0,1\r\n0,1,99\r\n"),
            "r.csv:5: e0: expected an expert id in [0, 16), got '99'");
}

TEST(RoutingFile, RoundTripWithScores) {
  RecordedRouting routing = random_routing({0, 2, 5, 7}, 8, 64, true, 200);
  // The hard cases, spelled out: signed zero, the smallest subnormal and normal, the largest float, 0.1.
  auto& scores = routing.layers[0].scores;
  const float special[] = {-0.0f,
                           0.0f,
                           std::numeric_limits<float>::denorm_min(),
                           -std::numeric_limits<float>::denorm_min(),
                           std::numeric_limits<float>::min(),
                           std::numeric_limits<float>::max(),
                           -std::numeric_limits<float>::max(),
                           0.1f,
                           1.0f / 3.0f};
  std::copy(std::begin(special), std::end(special), scores.begin());

  const std::string text = write(routing);
  expect_same(routing, parse(text, 64));

  TempFile file("scores.csv", text);
  const RecordedRouting read = read_routing_file(file.path(), 64);
  EXPECT_EQ(read.source, file.path());
  expect_same(routing, read);
}

TEST(RoutingFile, RoundTripWithoutScores) {
  const RecordedRouting routing = random_routing({1, 4, 9}, 6, 32, false, 300);
  const std::string text = write(routing);
  EXPECT_EQ(text.substr(0, text.find('\n') + 1), header(6, false));
  expect_same(routing, parse(text, 32));
}

TEST(RoutingFile, RoundTripTopkEqualToNumExperts) {
  // Every expert in every row: the degenerate top-k = number of experts (and the sorted duplicate check, k > 32).
  const RecordedRouting routing = random_routing({0}, 40, 40, true, 20);
  expect_same(routing, parse(write(routing), 40));
}

TEST(RoutingFile, WriterPrintsNineSignificantDigits) {
  RecordedRouting routing;
  routing.num_topk = 2;
  routing.has_scores = true;
  routing.layers.push_back({.layer = 0, .num_tokens = 1, .experts = {3, 1}, .scores = {0.5f, 0.1f}});
  routing.layers.push_back({.layer = 2, .num_tokens = 2, .experts = {0, 1, 1, 0}, .scores = {1e-3f, 1234567.f, -2, 0}});
  // 0.1f is 0.100000001490116...; 9 significant digits are what a float needs to read back the same.
  EXPECT_EQ(write(routing),
            "layer,token,e0,e1,s0,s1\n"
            "0,0,3,1,0.5,0.100000001\n"
            "2,0,0,1,0.00100000005,1234567\n"
            "2,1,1,0,-2,0\n");
}

// A numpunct that would print 1234567 as "1.234.567" and 0.5 as "0,5" if the writer went through the locale.
class GermanPunct : public std::numpunct<char> {
 protected:
  char do_decimal_point() const override { return ','; }
  char do_thousands_sep() const override { return '.'; }
  std::string do_grouping() const override { return "\3"; }
};

TEST(RoutingFile, WriterIgnoresTheStreamLocale) {
  RecordedRouting routing;
  routing.num_topk = 1;
  routing.has_scores = true;
  routing.layers.push_back({.layer = 1234, .num_tokens = 1, .experts = {5}, .scores = {0.5f}});
  std::ostringstream out;
  out.imbue(std::locale(std::locale::classic(), new GermanPunct));
  write_routing(out, routing);
  EXPECT_EQ(out.str(), "layer,token,e0,s0\n1234,0,5,0.5\n");
}

TEST(RoutingFile, WriterRejectsInconsistentLayers) {
  RecordedRouting routing;
  routing.num_topk = 2;
  routing.layers.push_back({.layer = 3, .num_tokens = 2, .experts = {0, 1, 2}, .scores = {}});
  EXPECT_EQ(error_of([&] { write(routing); }),
            "write_routing: layer 3: expected 4 experts (num_tokens x num_topk), got 3");
}

TEST(RoutingFile, TinyScoresReadAsZeroOrSubnormal) {
  // 1e-50 is below the float range; only the order of scores matters, so it reads as 0 rather than failing.
  const RecordedRouting routing = parse("layer,token,e0,s0\n0,0,1,1e-50\n0,1,2,1e-40\n");
  EXPECT_EQ(routing.layers[0].scores[0], 0.0f);
  EXPECT_GT(routing.layers[0].scores[1], 0.0f);  // a subnormal float
}

TEST(RoutingFile, BadHeader) {
  const std::string expected = "header: expected layer,token,e0,...,e{k-1} (k >= 1), optionally followed by s0,...";
  auto check = [&](const std::string& text, const std::string& tail) {
    const std::string message = parse_error(text);
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    EXPECT_NE(message.find(tail), std::string::npos) << message;
  };
  check("layer,tok,e0\n0,0,1\n", "r.csv:1: header: ");
  check("layer,tok,e0\n0,0,1\n", "column 2 is 'tok', expected 'token'");
  check("token,layer,e0\n", "column 1 is 'token', expected 'layer'");
  check("layer\n", "got only 'layer'");
  check("layer,token\n0,0\n", "got no expert columns");
  check("layer,token,e1\n", "column 3 is 'e1', expected 'e0'");
  check("layer,token,e0,e2\n", "column 4 is 'e2', expected 'e1' or 's0'");
  check("layer,token,e0,e1,s0,s2\n", "column 6 is 's2', expected 's1'");
  check("layer,token,e0,e1,\n", "column 5 is '', expected 'e2' or 's0'");
  check("# a comment first\n\nlayer,token,x\n", "r.csv:3: header: ");
  EXPECT_EQ(parse_error("layer,token,e0,e1,s0\n0,0,1,2,0.5\n"),
            "r.csv:1: header: expected s0,...,s1 (one score per expert column), got s0");
  EXPECT_EQ(parse_error("layer,token,e0,e1,s0,s1,s2\n"),
            "r.csv:1: header: expected s0,...,s1 (one score per expert column), got s0..s2");
  EXPECT_EQ(parse_error(header(3, false), 2),
            "r.csv:1: header: 3 expert columns, but a row's experts must be distinct and there are only 2 experts");
}

TEST(RoutingFile, WrongColumnCount) {
  EXPECT_EQ(parse_error(header(8, false) + "0,0,1,2,3,4,5,6,7,8\n0,1,1,2,3,4,5,6,7\n"),
            "r.csv:3: expected 10 columns (layer,token,e0..e7), got 9");
  EXPECT_EQ(parse_error(header(8, true) + "0,0,1,2,3,4,5,6,7,8,1,1,1,1,1,1,1,1,1\n"),
            "r.csv:2: expected 18 columns (layer,token,e0..e7,s0..s7), got 19");
  EXPECT_EQ(parse_error(header(1, false) + "0,0,1,\n"), "r.csv:2: expected 3 columns (layer,token,e0), got 4");
}

TEST(RoutingFile, BadLayer) {
  const std::string expected = "layer: expected an integer in [0, 2147483647], got ";
  EXPECT_EQ(parse_error("layer,token,e0\n0,0,1\n-1,0,1\n"), "r.csv:3: " + expected + "'-1'");
  EXPECT_EQ(parse_error("layer,token,e0\nx,0,1\n"), "r.csv:2: " + expected + "'x'");
  EXPECT_EQ(parse_error("layer,token,e0\n1.5,0,1\n"), "r.csv:2: " + expected + "'1.5'");
  EXPECT_EQ(parse_error("layer,token,e0\n,0,1\n"), "r.csv:2: " + expected + "''");
  EXPECT_EQ(parse_error("layer,token,e0\n2147483648,0,1\n"), "r.csv:2: " + expected + "'2147483648'");
}

TEST(RoutingFile, TokenMustBeTheNextOfItsLayer) {
  std::string text = header(1, false);
  for (int t = 0; t < 5; ++t) text += "0," + std::to_string(t) + ",1\n";
  text += "1,0,1\n";  // another layer counts its own tokens
  EXPECT_EQ(parse_error(text + "0,7,1\n"), "r.csv:8: token: expected 5 (the next token of layer 0), got 7");
  EXPECT_EQ(parse_error(text + "1,0,1\n"), "r.csv:8: token: expected 1 (the next token of layer 1), got 0");
  EXPECT_EQ(parse_error(text + "2,1,1\n"), "r.csv:8: token: expected 0 (the next token of layer 2), got 1");
  EXPECT_EQ(parse_error(text + "0,five,1\n"), "r.csv:8: token: expected 5 (the next token of layer 0), got 'five'");
}

TEST(RoutingFile, BadExpert) {
  EXPECT_EQ(parse_error("layer,token,e0,e1\n0,0,1,16\n"), "r.csv:2: e1: expected an expert id in [0, 16), got '16'");
  EXPECT_EQ(parse_error("layer,token,e0,e1\n0,0,-1,2\n"), "r.csv:2: e0: expected an expert id in [0, 16), got '-1'");
  EXPECT_EQ(parse_error("layer,token,e0,e1\n0,0,1,2x\n"), "r.csv:2: e1: expected an expert id in [0, 16), got '2x'");
  EXPECT_EQ(parse_error("layer,token,e0,e1\n0,0,1, \n"), "r.csv:2: e1: expected an expert id in [0, 16), got ''");
}

TEST(RoutingFile, DuplicateExpert) {
  EXPECT_EQ(parse_error("layer,token,e0,e1,e2\n0,0,1,2,3\n0,1,17,5,17\n", 256),
            "r.csv:3: e2: duplicate expert 17 in the row (e0 is also 17); expected distinct experts");
  // Wide rows go through the sorted check; the message is the same.
  std::string text = header(40, false) + "0,0";
  for (int e = 0; e < 40; ++e) text += "," + std::to_string(e == 30 ? 12 : e);
  EXPECT_EQ(parse_error(text + "\n", 64),
            "r.csv:2: e30: duplicate expert 12 in the row (e12 is also 12); expected distinct experts");
}

TEST(RoutingFile, BadScore) {
  const std::string head = "layer,token,e0,e1,s0,s1\n";
  const std::string expected = "expected a finite number within the float range, got ";
  EXPECT_EQ(parse_error(head + "0,0,1,2,0.5,nan\n"), "r.csv:2: s1: " + expected + "'nan'");
  EXPECT_EQ(parse_error(head + "0,0,1,2,inf,0.5\n"), "r.csv:2: s0: " + expected + "'inf'");
  EXPECT_EQ(parse_error(head + "0,0,1,2,-infinity,0.5\n"), "r.csv:2: s0: " + expected + "'-infinity'");
  EXPECT_EQ(parse_error(head + "0,0,1,2,0.5,abc\n"), "r.csv:2: s1: " + expected + "'abc'");
  EXPECT_EQ(parse_error(head + "0,0,1,2,0.5,0.5.1\n"), "r.csv:2: s1: " + expected + "'0.5.1'");
  EXPECT_EQ(parse_error(head + "0,0,1,2,,0.5\n"), "r.csv:2: s0: " + expected + "''");
  EXPECT_EQ(parse_error(head + "0,0,1,2,1e50,0.5\n"), "r.csv:2: s0: " + expected + "'1e50'");
}

TEST(RoutingFile, HeaderWithoutRows) {
  EXPECT_EQ(parse_error("layer,token,e0\n"), "r.csv:1: expected rows after the header, got none");
  EXPECT_EQ(parse_error("# c\nlayer,token,e0\n# only comments\n\n"),
            "r.csv:2: expected rows after the header, got none");
}

TEST(RoutingFile, EmptyFile) {
  const std::string expected =
      "expected the header layer,token,e0,...,e{k-1} (k >= 1), optionally followed by s0,...,s{k-1}, got the end of "
      "the file";
  EXPECT_EQ(parse_error(""), "r.csv:1: " + expected);
  EXPECT_EQ(parse_error("# only a comment\n"), "r.csv:2: " + expected);
}

TEST(RoutingFile, MissingFile) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "moesim_routing_file_test_no_such_file.csv").string();
  const std::string message = error_of([&] { read_routing_file(path, 16); });
  EXPECT_EQ(message.rfind(path + ": cannot open", 0), 0u) << message;
}

TEST(RoutingFile, ErrorsInAFileNameTheFile) {
  TempFile file("bad.csv", "layer,token,e0\n0,0,1\n0,1,16\n");
  EXPECT_EQ(error_of([&] { read_routing_file(file.path(), 16); }),
            file.path() + ":3: e0: expected an expert id in [0, 16), got '16'");
}

}  // namespace
}  // namespace moesim::workloads
