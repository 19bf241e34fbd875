// `moesim-kernels validate`: every op of a backend against the host references (kernels/harness/reference.hpp),
// over a table of shapes that includes the degenerate ones, judged as kernels/harness/compare.hpp says.
//
// Each (op, shape) draws seeded inputs (the same on every backend), uploads them, poisons the outputs
// (harness/inputs.hpp), runs the op once, downloads, and compares. The harness knows nothing of a backend but the
// Backend interface, so the CPU backend is validated the same way as CUDA (the CPU backend's own FP32 arithmetic
// against the FP64 references). An op that throws fails its row with the message.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/harness/compare.hpp"
#include "kernels/harness/inputs.hpp"

namespace moesim::kernels::harness {

struct ValidationShape {
  std::string name;
  std::int64_t tokens = 0;
  std::int64_t hidden = 1;
  int experts = 1;
  int topk = 1;
  std::int64_t ffn = 1;
  ScoreFunction score = ScoreFunction::kSoftmax;
  int groups = 0;
  int group_limit = 0;
  bool normalize = true;
  bool has_bias = false;
  double capacity_factor = 0;  // 0: dropless
  DropPolicy policy = DropPolicy::kDropPosition;
  Skew skew;
  bool is_quantized = false;  // router weights from three values: drop-score ties decided by copy index
  bool is_quick = true;       // in the --quick table (the unit tests run it)
};

// The table: degenerate shapes (0 and 1 tokens, hidden 1, top-1, top-k = experts, every token to one expert, an
// expert with no tokens), odd sizes, group-limited routing, both drop policies, and (not quick) model-like sizes.
const std::vector<ValidationShape>& validation_shapes();
std::vector<ValidationShape> select_shapes(bool is_quick);

struct OpResult {
  std::string op;
  std::string shape;
  std::vector<Comparison> outputs;
  std::string note;     // e.g. "3 tied tokens: indices checked for validity only"
  std::string error;    // what the op threw, if it did
  std::string skipped;  // why the op did not run here ("needs 2 or more GPUs, found 1"), "" when it ran

  bool passed() const;  // false when skipped: a row that did not run never counts as passed
  bool failed() const { return skipped.empty() && !passed(); }
};

using Progress = std::function<void(const std::string& line)>;

OpResult validate_router(Backend& backend, const ValidationShape& shape, std::uint64_t seed);
OpResult validate_permute(Backend& backend, const ValidationShape& shape, std::uint64_t seed);
OpResult validate_grouped_ffn(Backend& backend, const ValidationShape& shape, std::uint64_t seed);
OpResult validate_dense_gemm(Backend& backend, const ValidationShape& shape, std::uint64_t seed);
OpResult validate_unpermute(Backend& backend, const ValidationShape& shape, std::uint64_t seed);

// Every op on every shape, in table order; progress (if set) hears about each before it runs.
std::vector<OpResult> validate(Backend& backend, const std::vector<ValidationShape>& shapes, std::uint64_t seed,
                               const Progress& progress = nullptr);

// The pass/fail table, with a header naming the backend and a closing count (skipped rows shown with their reason
// and counted apart); and the same as JSON.
std::string validation_text(const Backend& backend, const std::vector<OpResult>& results, std::uint64_t seed);
std::string validation_json(const Backend& backend, const std::vector<OpResult>& results, std::uint64_t seed);

}  // namespace moesim::kernels::harness
