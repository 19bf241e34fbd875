// The validate harness passes the CPU backend and fails a deliberately broken one: a test double that wraps the CPU
// backend and breaks a single op in one way. Each breakage must fail that op (on at least one shape, naming the
// output) and leave every other op passing.
#include "kernels/harness/validate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "kernels/backend.hpp"

namespace moesim::kernels::harness {
namespace {

enum class Breakage {
  kNone,
  kRouterReversesChoices,    // top-k in the wrong order
  kRouterDoesNothing,        // outputs left as the poison
  kPermuteSwapsTwoRows,      // data movement off by one swap
  kPermuteIgnoresCapacity,   // dropless whatever the capacity
  kFfnSkipsTheLastRow,       // an output row never written
  kFfnScalesByThreePercent,  // a small numeric error, about twice the BF16 tolerance
  kGemmWritesZeros,          // the non-zero check's case
  kUnpermuteIgnoresWeights,  // every weight taken as 1
};

// A backend whose memory is host memory (it delegates to the CPU backend), so the breakages can edit outputs.
class BrokenBackend final : public Backend {
 public:
  explicit BrokenBackend(Breakage breakage) : cpu_(make_cpu_backend(2)), breakage_(breakage) {}

  std::string name() const override { return "broken"; }
  std::string device_name() const override { return "test double"; }
  int compute_units() const override { return 1; }
  void* alloc(std::size_t bytes) override { return cpu_->alloc(bytes); }
  void release(void* p) override { cpu_->release(p); }
  void upload(void* d, const void* s, std::size_t n) override { cpu_->upload(d, s, n); }
  void download(void* d, const void* s, std::size_t n) override { cpu_->download(d, s, n); }
  void fill(void* d, unsigned char b, std::size_t n) override { cpu_->fill(d, b, n); }
  void copy(void* d, const void* s, std::size_t n) override { cpu_->copy(d, s, n); }
  void synchronize() override {}
  void start_timer() override { cpu_->start_timer(); }
  double stop_timer() override { return cpu_->stop_timer(); }

  void router(const RouterArgs& a) override {
    if (breakage_ == Breakage::kRouterDoesNothing) return;
    cpu_->router(a);
    if (breakage_ == Breakage::kRouterReversesChoices)
      for (std::int64_t t = 0; t < a.tokens; ++t) std::reverse(a.expert + t * a.topk, a.expert + (t + 1) * a.topk);
  }
  void permute(const PermuteArgs& a) override {
    PermuteArgs args = a;
    if (breakage_ == Breakage::kPermuteIgnoresCapacity) args.capacity = 0;
    cpu_->permute(args);
    if (breakage_ == Breakage::kPermuteSwapsTwoRows && a.offsets[a.experts] >= 2)
      std::swap_ranges(a.permuted, a.permuted + a.hidden, a.permuted + a.hidden);
  }
  void grouped_ffn(const GroupedFfnArgs& a) override {
    const std::int64_t rows = a.host_offsets[a.experts];
    if (breakage_ == Breakage::kFfnSkipsTheLastRow && rows > 0) {
      std::vector<Bf16> keep(a.y + (rows - 1) * a.hidden, a.y + rows * a.hidden);
      cpu_->grouped_ffn(a);
      std::copy(keep.begin(), keep.end(), a.y + (rows - 1) * a.hidden);
      return;
    }
    cpu_->grouped_ffn(a);
    if (breakage_ == Breakage::kFfnScalesByThreePercent)
      for (std::int64_t i = 0; i < rows * a.hidden; ++i) a.y[i] = to_bf16(to_float(a.y[i]) * 1.03f);
  }
  void dense_gemm(const GemmArgs& a) override {
    cpu_->dense_gemm(a);
    if (breakage_ == Breakage::kGemmWritesZeros) std::fill(a.c, a.c + a.m * a.n, Bf16{0});
  }
  void unpermute(const UnpermuteArgs& a) override {
    if (breakage_ != Breakage::kUnpermuteIgnoresWeights) return cpu_->unpermute(a);
    std::vector<float> ones(static_cast<std::size_t>(a.tokens * a.topk), 1.0f);
    UnpermuteArgs args = a;
    args.weight = ones.data();
    cpu_->unpermute(args);
  }

 private:
  std::unique_ptr<Backend> cpu_;
  Breakage breakage_;
};

const ValidationShape& shape_named(const std::string& name) {
  for (const auto& s : validation_shapes())
    if (s.name == name) return s;
  throw std::invalid_argument("no shape " + name);
}

TEST(Validate, TheCpuBackendPassesTheQuickTable) {
  auto cpu = make_cpu_backend(2);
  const auto results = validate(*cpu, select_shapes(true), 1);
  EXPECT_EQ(results.size(), select_shapes(true).size() * 5);
  for (const auto& r : results) EXPECT_TRUE(r.passed()) << validation_text(*cpu, {r}, 1);
  const std::string text = validation_text(*cpu, results, 1);
  EXPECT_NE(text.find("all " + std::to_string(results.size()) + " checks passed"), std::string::npos) << text;
}

TEST(Validate, TheTableHasTheDegenerateShapes) {
  bool zero = false, one = false, hidden_one = false, top_one = false, top_all = false, all_to_one = false,
       one_empty = false;
  for (const auto& s : select_shapes(true)) {
    zero = zero || s.tokens == 0;
    one = one || s.tokens == 1;
    hidden_one = hidden_one || s.hidden == 1;
    top_one = top_one || s.topk == 1;
    top_all = top_all || s.topk == s.experts;
    all_to_one = all_to_one || s.skew.kind == Skew::Kind::kAllToOne;
    one_empty = one_empty || s.skew.kind == Skew::Kind::kOneEmpty;
  }
  EXPECT_TRUE(zero && one && hidden_one && top_one && top_all && all_to_one && one_empty);
  EXPECT_GT(select_shapes(false).size(), select_shapes(true).size());
}

struct BrokenCase {
  std::string name;
  Breakage breakage;
  std::string op;
  std::string output;  // the output named in the failure
};

// The test's name in CTest, instead of the struct's bytes.
void PrintTo(const BrokenCase& c, std::ostream* out) {
  *out << c.name;
}

class ValidateBroken : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(ValidateBroken, FailsTheBrokenOpOnly) {
  const BrokenCase& c = GetParam();
  BrokenBackend broken(c.breakage);
  const auto results = validate(broken, select_shapes(true), 1);
  int failed = 0;
  std::set<std::string> failing_outputs;
  for (const auto& r : results) {
    if (r.op != c.op) {
      EXPECT_TRUE(r.passed()) << "only " << c.op << " is broken\n" << validation_text(broken, {r}, 1);
      continue;
    }
    if (r.passed()) continue;
    ++failed;
    for (const auto& o : r.outputs)
      if (!o.passed()) failing_outputs.insert(o.output);
  }
  EXPECT_GT(failed, 0) << c.op << " passed although broken";
  EXPECT_TRUE(failing_outputs.count(c.output) > 0) << c.output << " not among the failing outputs";
  const std::string text = validation_text(broken, results, 1);
  EXPECT_NE(text.find("FAIL"), std::string::npos);
  EXPECT_NE(text.find("checks FAILED"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Breakages, ValidateBroken,
    ::testing::Values(BrokenCase{"RouterReversesChoices", Breakage::kRouterReversesChoices, "router", "expert"},
                      BrokenCase{"RouterDoesNothing", Breakage::kRouterDoesNothing, "router", "scores"},
                      BrokenCase{"PermuteSwapsTwoRows", Breakage::kPermuteSwapsTwoRows, "permute", "permuted"},
                      BrokenCase{"PermuteIgnoresCapacity", Breakage::kPermuteIgnoresCapacity, "permute", "offsets"},
                      BrokenCase{"FfnSkipsTheLastRow", Breakage::kFfnSkipsTheLastRow, "grouped_ffn", "y"},
                      BrokenCase{"FfnScalesByThreePercent", Breakage::kFfnScalesByThreePercent, "grouped_ffn", "y"},
                      BrokenCase{"GemmWritesZeros", Breakage::kGemmWritesZeros, "dense_gemm", "c"},
                      BrokenCase{"UnpermuteIgnoresWeights", Breakage::kUnpermuteIgnoresWeights, "unpermute", "out"}),
    [](const ::testing::TestParamInfo<BrokenCase>& param_info) { return param_info.param.name; });

TEST(Validate, AnOpThatThrowsFailsItsRow) {
  class Throwing final : public Backend {
   public:
    std::string name() const override { return "throwing"; }
    std::string device_name() const override { return "test double"; }
    int compute_units() const override { return 1; }
    void* alloc(std::size_t bytes) override { return cpu_->alloc(bytes); }
    void release(void* p) override { cpu_->release(p); }
    void upload(void* d, const void* s, std::size_t n) override { cpu_->upload(d, s, n); }
    void download(void* d, const void* s, std::size_t n) override { cpu_->download(d, s, n); }
    void fill(void* d, unsigned char b, std::size_t n) override { cpu_->fill(d, b, n); }
    void copy(void* d, const void* s, std::size_t n) override { cpu_->copy(d, s, n); }
    void synchronize() override {}
    void start_timer() override {}
    double stop_timer() override { return 0; }
    void router(const RouterArgs&) override { throw std::runtime_error("launch failed"); }
    void permute(const PermuteArgs& a) override { cpu_->permute(a); }
    void grouped_ffn(const GroupedFfnArgs& a) override { cpu_->grouped_ffn(a); }
    void dense_gemm(const GemmArgs& a) override { cpu_->dense_gemm(a); }
    void unpermute(const UnpermuteArgs& a) override { cpu_->unpermute(a); }

   private:
    std::unique_ptr<Backend> cpu_ = make_cpu_backend(1);
  } throwing;
  const OpResult r = validate_router(throwing, shape_named("one_token"), 1);
  EXPECT_FALSE(r.passed());
  EXPECT_EQ(r.error, "launch failed");
  EXPECT_NE(validation_text(throwing, {r}, 1).find("threw: launch failed"), std::string::npos);
}

TEST(Validate, JsonSaysWhetherEverythingPassed) {
  auto cpu = make_cpu_backend(1);
  const ValidationShape& shape = shape_named("top1_drop_position");
  const std::vector<OpResult> results = {validate_permute(*cpu, shape, 1)};
  const std::string json = validation_json(*cpu, results, 1);
  EXPECT_NE(json.find("\"passed\": true"), std::string::npos) << json;
  EXPECT_NE(json.find("\"name\": \"row_of_copy\""), std::string::npos);
  BrokenBackend broken(Breakage::kPermuteSwapsTwoRows);
  const std::string bad = validation_json(broken, {validate_permute(broken, shape, 1)}, 1);
  EXPECT_NE(bad.find("\"passed\": false"), std::string::npos) << bad;
}

}  // namespace
}  // namespace moesim::kernels::harness
