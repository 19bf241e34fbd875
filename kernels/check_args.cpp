// Argument checks shared by every backend: run on the host before a launch, never inside a kernel. Each throws
// std::invalid_argument naming the op, the field, what was expected and what was given.
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/backend.hpp"

namespace moesim::kernels {
namespace {

constexpr std::int64_t kMaxInt32 = std::numeric_limits<std::int32_t>::max();

[[noreturn]] void fail(const char* op, const char* field, const std::string& expected, const std::string& got) {
  throw std::invalid_argument(std::string(op) + ": " + field + ": must be " + expected + ", got " + got);
}

void require_at_least(const char* op, const char* field, std::int64_t value, std::int64_t min) {
  if (value < min) fail(op, field, ">= " + std::to_string(min), std::to_string(value));
}

void require_in(const char* op, const char* field, std::int64_t value, std::int64_t min, std::int64_t max,
                const std::string& max_text) {
  if (value < min || value > max)
    fail(op, field, "in [" + std::to_string(min) + ", " + max_text + "]", std::to_string(value));
}

// A pointer to `elements` elements: null only when there are none.
void require_data(const char* op, const char* field, const void* p, std::int64_t elements) {
  if (p == nullptr && elements > 0)
    fail(op, field, "non-null (it holds " + std::to_string(elements) + " elements)", "null");
}

// Row indices are int32: tokens x topk copies (and the rows they become) must fit.
void require_copies_fit(const char* op, std::int64_t tokens, int topk) {
  if (tokens > kMaxInt32 / topk)
    fail(op, "tokens", "at most " + std::to_string(kMaxInt32 / topk) + " (tokens x topk rows are int32)",
         std::to_string(tokens));
}

}  // namespace

void check_args(const RouterArgs& a) {
  constexpr const char* op = "router";
  require_at_least(op, "tokens", a.tokens, 0);
  require_at_least(op, "hidden", a.hidden, 1);
  require_at_least(op, "experts", a.experts, 1);
  require_in(op, "topk", a.topk, 1, a.experts, "experts = " + std::to_string(a.experts));
  require_copies_fit(op, a.tokens, a.topk);
  if (a.score != ScoreFunction::kSoftmax && a.score != ScoreFunction::kSigmoid)
    fail(op, "score", "softmax or sigmoid", std::to_string(static_cast<int>(a.score)));
  require_at_least(op, "groups", a.groups, 0);
  if (a.groups > 1) {
    if (a.experts % a.groups != 0)
      fail(op, "groups", "a divisor of experts = " + std::to_string(a.experts), std::to_string(a.groups));
    require_in(op, "group_limit", a.group_limit, 1, a.groups, "groups = " + std::to_string(a.groups));
    const std::int64_t reachable = static_cast<std::int64_t>(a.group_limit) * (a.experts / a.groups);
    if (a.topk > reachable)
      fail(op, "topk", "at most group_limit x experts / groups = " + std::to_string(reachable), std::to_string(a.topk));
  }
  require_data(op, "x", a.x, a.tokens * a.hidden);
  require_data(op, "w", a.w, a.hidden * a.experts);
  require_data(op, "scores", a.scores, a.tokens * a.experts);
  require_data(op, "expert", a.expert, a.tokens * a.topk);
  require_data(op, "weight", a.weight, a.tokens * a.topk);
}

void check_args(const PermuteArgs& a) {
  constexpr const char* op = "permute";
  require_at_least(op, "tokens", a.tokens, 0);
  require_at_least(op, "hidden", a.hidden, 1);
  require_at_least(op, "experts", a.experts, 1);
  require_in(op, "topk", a.topk, 1, a.experts, "experts = " + std::to_string(a.experts));
  require_copies_fit(op, a.tokens, a.topk);
  if (a.policy != DropPolicy::kDropPosition && a.policy != DropPolicy::kDropScore)
    fail(op, "policy", "drop-position or drop-score", std::to_string(static_cast<int>(a.policy)));
  const std::int64_t copies = a.tokens * a.topk;
  require_data(op, "expert", a.expert, copies);
  if (a.policy == DropPolicy::kDropScore && a.capacity > 0) require_data(op, "weight", a.weight, copies);
  require_data(op, "x", a.x, a.tokens * a.hidden);
  require_data(op, "routed", a.routed, a.experts);
  require_data(op, "offsets", a.offsets, a.experts + 1);
  require_data(op, "row_of_copy", a.row_of_copy, copies);
  require_data(op, "token_of_row", a.token_of_row, copies);
  require_data(op, "permuted", a.permuted, copies * a.hidden);
}

void check_args(const GroupedFfnArgs& a) {
  constexpr const char* op = "grouped_ffn";
  require_at_least(op, "experts", a.experts, 1);
  require_at_least(op, "hidden", a.hidden, 1);
  require_at_least(op, "ffn", a.ffn, 1);
  require_data(op, "host_offsets", a.host_offsets, a.experts + 1);
  require_data(op, "offsets", a.offsets, a.experts + 1);
  if (a.host_offsets[0] != 0) fail(op, "host_offsets[0]", "0", std::to_string(a.host_offsets[0]));
  for (int e = 0; e < a.experts; ++e) {
    if (a.host_offsets[e + 1] < a.host_offsets[e]) {
      const std::string field = "host_offsets[" + std::to_string(e + 1) + "]";
      fail(op, field.c_str(), ">= host_offsets[" + std::to_string(e) + "] = " + std::to_string(a.host_offsets[e]),
           std::to_string(a.host_offsets[e + 1]));
    }
  }
  const std::int64_t rows = a.host_offsets[a.experts];
  const std::int64_t weights = static_cast<std::int64_t>(a.experts) * a.hidden * a.ffn;
  require_data(op, "x", a.x, rows * a.hidden);
  require_data(op, "w_gate", a.w_gate, weights);
  require_data(op, "w_up", a.w_up, weights);
  require_data(op, "w_down", a.w_down, weights);
  require_data(op, "h", a.h, rows * a.ffn);
  require_data(op, "y", a.y, rows * a.hidden);
}

void check_args(const GemmArgs& a) {
  constexpr const char* op = "dense_gemm";
  require_at_least(op, "m", a.m, 0);
  require_at_least(op, "n", a.n, 1);
  require_at_least(op, "k", a.k, 1);
  require_data(op, "a", a.a, a.m * a.k);
  require_data(op, "b", a.b, a.k * a.n);
  require_data(op, "c", a.c, a.m * a.n);
}

void check_args(const UnpermuteArgs& a) {
  constexpr const char* op = "unpermute";
  require_at_least(op, "tokens", a.tokens, 0);
  require_at_least(op, "hidden", a.hidden, 1);
  require_at_least(op, "topk", a.topk, 1);
  require_copies_fit(op, a.tokens, a.topk);
  const std::int64_t copies = a.tokens * a.topk;
  // y holds the kept rows, a number not known here: it must be given whenever there are copies.
  if (a.y == nullptr && copies > 0) fail(op, "y", "non-null (tokens x topk = " + std::to_string(copies) + ")", "null");
  require_data(op, "row_of_copy", a.row_of_copy, copies);
  require_data(op, "weight", a.weight, copies);
  require_data(op, "out", a.out, a.tokens * a.hidden);
}

}  // namespace moesim::kernels
