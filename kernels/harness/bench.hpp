// `moesim-kernels bench`: times each op of a backend over a sweep of sizes and writes Measurements
// (kernels/measurements.proto).
//
// Timing. For each (op, point) the inputs are built once on the host (seeded), uploaded into one input set, and
// copied into as many further sets as make the sets together about 3x the last-level cache (the backend's
// cache_bytes(), else 32 MiB), up to a memory cap; outputs are part of each set too. Iteration i uses set
// i mod sets, so each iteration reads inputs that the previous ones have pushed out of the cache (cold, as in a
// model's layer, where each op's inputs were written long before). Warm-up iterations run first, untimed; they also
// size the run (iterations = target time / warm-up time, within [min, max]). Each timed iteration is one timer pair
// (CUDA events on the GPU; a steady clock on the CPU, whose ops are synchronous). Reported: min, median, max, mean.
//
// Work per op (T tokens, H hidden, E experts, k top-k, F expert width, R kept rows, A experts with rows, 2 bytes
// per BF16, 4 per FP32 or int32). Bytes are the compulsory traffic: each input read once, each output written once.
//   router       flops = 2 T H E                bytes = 2 (T H + H E) + 4 T E + 8 T k (+ 4 E with a bias)
//   permute      flops = 0                      bytes = 4 T k (+ 4 T k with drop-score) + 2 R H (rows read)
//                                                       + 2 R H (rows written) + 8 T k (maps) + 4 (2 E + 1)
//   grouped_ffn  flops = 6 R H F                bytes = 2 R H (x) + 6 A H F (weights) + 2 R F (h) + 2 R H (y)
//   dense_gemm   flops = 2 m n k                bytes = 2 (m k + k n + m n), with m = R, n = 3 F, k = H
//   unpermute    flops = 2 R H                  bytes = 2 R H (rows read) + 8 T k (rows, weights) + 2 T H
// Achieved rates at the median time t (seconds): TFLOP/s = flops / t / 1e12, GB/s = bytes / t / 1e9.
//
// The all-to-all ops (nccl_alltoall, nccl_alltoallv) run after the others, over every local GPU rather than the
// backend's one, sweeping bytes per rank instead of the points: kernels/harness/collectives.hpp says how they are
// planned, timed and reported (algbw, busbw). Where they cannot run, the Measurements list them as skipped.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/collectives.hpp"
#include "kernels/harness/inputs.hpp"
#include "kernels/measurements.pb.h"

namespace moesim::kernels::harness {

struct BenchPoint {
  std::string axis;  // the sweep axis this point varies: base, tokens, hidden, experts, topk, skew, capacity
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  int experts = 1;
  int topk = 1;
  std::int64_t ffn = 0;
  Skew skew;
  double capacity_factor = 0;  // 0: dropless
};

// One axis at a time around a base point (no duplicates of the base). GPU sizes are model-like (DeepSeek-V3's
// hidden 7168 and 256 experts included); CPU sizes are smaller so that a full CPU sweep takes minutes. quick: a
// handful of small points, for CI.
std::vector<BenchPoint> bench_sweep(bool is_quick, bool is_gpu);

struct BenchOptions {
  std::uint64_t seed = 1;
  bool is_quick = false;                        // recorded in the Measurements
  std::size_t cache_bytes = 0;                  // 0: the backend's cache_bytes(), else 32 MiB
  std::size_t max_rotation_bytes = 1ULL << 30;  // the sets together stay under this (one set always fits)
  int warmup = 2;
  int min_iterations = 5;
  int max_iterations = 100;
  double target_seconds = 0.5;   // timed iterations per (op, point) aim at this much time
  std::vector<std::string> ops;  // empty: every op of bench_op_names()
  std::function<void(const std::string& line)> progress;
  // The all-to-all ops: bytes per rank (empty: alltoall_sizes(is_quick)), and where the exchange comes from (null:
  // NCCL over every local GPU, when the ops can run here; set: used as is, whatever the backend, as tests do with
  // the host reference).
  std::vector<std::int64_t> alltoall_bytes_per_rank;
  AllToAllFactory make_alltoall;
};

// The op names, in the order run_bench times them: the backend's ops, then the all-to-all ones.
const std::vector<std::string>& bench_op_names();

// Runs `run_once` (which returns its time in ms) max(warmup, 1) times untimed, then as many times as make about
// target_seconds (by the fastest warm-up), within [min_iterations, max_iterations]; min, median, max and mean.
Timing time_iterations(const std::function<double()>& run_once, const BenchOptions& options);

// Times every op at every point. Throws std::invalid_argument for an unknown op name.
Measurements run_bench(Backend& backend, const std::vector<BenchPoint>& points, const BenchOptions& options);

// A readable table of the measurements, one row per (op, point), the all-to-all ones in a table of their own, and a
// line per skipped op with the reason.
std::string bench_text(const Measurements& measurements);

}  // namespace moesim::kernels::harness
