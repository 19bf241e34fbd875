// The CPU reference ops: plain loops with the CUDA kernels' arguments (pointers into host memory), run on a
// ThreadPool. They are the CPU backend (make_cpu_backend), which the harness validates and times like any other.
//
// Numerics, the contract both backends follow (kernels/backend.hpp): BF16 values are widened exactly to FP32,
// products and sums are FP32, every output element is accumulated by one thread in index order (hidden for the
// router's logits and the GEMMs, the choice index j for the combine), and results are rounded to BF16 once, where
// the contract says so. Results are therefore bitwise identical for any thread count. Loops favour being obviously
// right over speed, but read memory in order (rows of the right-hand matrix, a few rows of the left at a time) so
// that the timings calibration fits are not dominated by cache misses a real kernel would not have.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/backend.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace moesim::kernels::cpu {

void router(const RouterArgs& args, ThreadPool& pool);
void permute(const PermuteArgs& args, ThreadPool& pool);
void grouped_ffn(const GroupedFfnArgs& args, ThreadPool& pool);
void dense_gemm(const GemmArgs& args, ThreadPool& pool);
void unpermute(const UnpermuteArgs& args, ThreadPool& pool);

// "model name" from /proc/cpuinfo, or "unknown CPU".
std::string cpu_model();
// The largest cache level's size from /sys/devices/system/cpu/cpu0/cache, or 0 when it cannot be read.
std::size_t last_level_cache_bytes();

}  // namespace moesim::kernels::cpu
