// How the harness judges one output of one op against its reference.
//
// Data movement (permute's maps and rows, the router's indices on untied tokens) must be bitwise equal. Reductions
// are judged by a normalised error, max_i |out_i - ref_i| / max_i |ref_i|, with ref the FP64 reference rounded to
// the output's type; any NaN or infinity in the output fails. The tolerance depends on the output type:
//   FP32 (router scores and weights): 2^-13 (about 1.2e-4). An FP32 dot product of H terms of random sign errs by
//     about sqrt(H) x 2^-24 relative to the sum of |terms|, under 1e-5 for H up to 2^16; a wrong or missing term
//     errs by O(1).
//   BF16 (everything else): 2^-6 (about 1.6e-2). Rounding to BF16 keeps 8 significant bits, so an FP32 result that
//     lands on the other side of a rounding boundary from the FP64 one differs by one BF16 ulp, at most 2^-7 of the
//     largest magnitude; grouped_ffn's y adds the effect of such one-ulp differences in h. Twice one ulp leaves room
//     for both and still fails a dropped term, a wrong row or a wrong weight.
// Every output whose reference is not all zero must also not be all zero, so that an op that does nothing (on
// outputs the poison happened to match) cannot pass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.hpp"

namespace moesim::kernels::harness {

constexpr double kFp32Tolerance = 0x1p-13;
constexpr double kBf16Tolerance = 0x1p-6;

struct Comparison {
  std::string output;                // "scores", "permuted", ...
  bool is_exact = false;             // bitwise equality required (data movement)
  std::int64_t elements = 0;         // compared
  std::int64_t mismatches = 0;       // elements not equal (exact) or not finite / over tolerance (reductions)
  double error = 0;                  // normalised error (reductions)
  double tolerance = 0;              // (reductions)
  bool is_nonzero_required = false;  // the reference has a non-zero element
  bool is_nonzero = false;           // the output has one
  std::string first_bad;             // "[12]: 0.5 vs 0.25" for the first failing element, if any

  bool passed() const;
};

Comparison compare_exact(const std::string& output, const std::vector<std::int32_t>& got,
                         const std::vector<std::int32_t>& want);
Comparison compare_exact(const std::string& output, const std::vector<Bf16>& got, const std::vector<Bf16>& want);
Comparison compare_fp32(const std::string& output, const std::vector<float>& got, const std::vector<double>& ref);
Comparison compare_bf16(const std::string& output, const std::vector<Bf16>& got, const std::vector<double>& ref);

}  // namespace moesim::kernels::harness
