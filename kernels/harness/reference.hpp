// The references the harness checks every backend against, computed on the host from the op's own arguments
// (pointing at host memory): the reductions in FP64 (the comparison then rounds them to the output type), the data
// movement with naive loops written independently of kernels/index_math.cpp.
//
// Where the contract rounds an intermediate (grouped_ffn's h is BF16), the FP64 reference rounds it too, so that
// what remains between a backend and the reference is FP32 accumulation and the final rounding.
//
// Router ties. Which experts a token picks depends on comparisons between scores; a backend's FP32 scores may order
// two nearly equal scores differently from the FP64 ones. For each token the reference bounds how far an FP32
// computation can stray (first order, any summation order: a dot product of `hidden` terms errs by at most
// hidden x 2^-24 x the sum of |terms|, which softmax maps to at most 2 x score x that, sigmoid to a quarter of it;
// plus FP32 rounding of the exponentials, their sum and the bias) and marks the token tied when a decision (an
// expert against the next one in the ranking, or a kept group against the best dropped one) was won by less
// than twice that. Untied tokens must match exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"

namespace moesim::kernels::harness {

struct RouterReference {
  std::vector<double> scores;        // [tokens x experts]
  std::vector<std::int32_t> expert;  // [tokens x topk], best first
  std::vector<char> is_tied;         // [tokens]: a decision was within FP32's error; indices not compared
};
RouterReference router_fp64(const RouterArgs& args);

// The weights a router with these FP64 scores gives the choices `expert` ([tokens x topk], as a backend chose
// them), normalised when args.normalize: compared even for tied tokens, whose choices may differ.
std::vector<double> router_weights_fp64(const RouterArgs& args, const std::vector<double>& scores,
                                        const std::vector<std::int32_t>& expert);

struct PermuteReference {
  std::vector<std::int32_t> routed;        // [experts]
  std::vector<std::int32_t> offsets;       // [experts + 1]
  std::vector<std::int32_t> row_of_copy;   // [tokens x topk]
  std::vector<std::int32_t> token_of_row;  // [tokens x topk]
  std::vector<Bf16> permuted;              // [offsets[experts] x hidden]: only the kept rows
};
// With args.x null, only the maps (permuted stays empty).
PermuteReference permute_naive(const PermuteArgs& args);

struct FfnReference {
  std::vector<double> h;  // [rows x ffn], silu(x W_g) x (x W_u), before its rounding to BF16
  std::vector<double> y;  // [rows x hidden], from h rounded to BF16
};
FfnReference grouped_ffn_fp64(const GroupedFfnArgs& args);

std::vector<double> dense_gemm_fp64(const GemmArgs& args);      // [m x n]
std::vector<double> unpermute_fp64(const UnpermuteArgs& args);  // [tokens x hidden]

}  // namespace moesim::kernels::harness
