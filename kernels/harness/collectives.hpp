// The all-to-all ops of `moesim-kernels bench` and `validate`: nccl_alltoall (the same bytes to every peer) and
// nccl_alltoallv (uneven bytes per peer, as an MoE layer's dispatch), over the AllToAll of kernels/collectives.hpp.
// They run with --backend cuda on a machine with 2 or more GPUs and a build with NCCL; elsewhere each is reported
// as skipped with the reason (a SkippedOp in the Measurements, a "skipped" row in validate), never as passed.
//
// Plans, for S bytes per rank on n ranks. alltoall: every rank sends floor(S / (4 n)) words to every rank, itself
// included (nccl-tests' alltoall rounds its per-peer count down the same way). alltoallv: each sender cuts its S
// bytes into `units` equal units (S / units rounded down to whole words) and sends each unit to a rank drawn from
// the skew (harness/inputs.hpp's sample_routing with experts = ranks and top-1, rank 0 the most popular, a seeded
// stream per sender), as tokens go to the ranks that hold their experts. Every sender sends the same total; the
// receivers get uneven totals, rank 0 the most.
//
// Bandwidth, as nccl-tests defines it for alltoall (its doc/PERFORMANCE.md), with S the bytes each rank sends and t
// the median time: algbw = S / t, busbw = algbw x (n - 1) / n (the share of S that crosses a link). alltoallv is
// reported the same way; its time is set by the busiest receiver, so an algbw below alltoall's at the same S is
// the skew's cost.
//
// Timing: bench_alltoall times AllToAll::exchange() (CUDA events on GPU 0 around every GPU's transfers, see
// kernels/cuda/nccl_alltoall.cu) with the same warm-up, iteration count and statistics as the other ops. The inputs
// are not rotated over the cache: the exchange is bound by the links between GPUs, and nccl-tests does not either.
//
// Validation: each sender's chunk for each receiver is seeded random words (a stream per seed, sender and
// receiver); the receive buffers are poisoned; one exchange runs; every receive buffer must equal, word for word,
// its senders' chunks in rank order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/collectives.hpp"
#include "kernels/harness/bench.hpp"
#include "kernels/harness/inputs.hpp"
#include "kernels/harness/validate.hpp"

namespace moesim::kernels::harness {

// nccl_alltoall, nccl_alltoallv.
const std::vector<std::string>& collective_op_names();
bool is_collective_op(const std::string& op);

// Why the all-to-all ops cannot run with `backend` on this machine, in the order a user would fix it ("built without
// NCCL", "needs --backend cuda", "needs 2 or more GPUs, found 1"), or "" when they can.
std::string collectives_unavailable_reason(const Backend& backend);

constexpr int kAllToAllvUnits = 4096;
// The bench's alltoallv skew: Zipf 1 over ranks (rank 0 receives about 37% of the bytes on 8 GPUs, 1/8 even).
constexpr Skew kAllToAllvSkew{Skew::Kind::kZipf, 1.0};

AllToAllPlan alltoall_plan(int num_ranks, std::int64_t bytes_per_rank);
// Throws std::invalid_argument when S / units is less than one word.
AllToAllPlan alltoallv_plan(int num_ranks, std::int64_t bytes_per_rank, const Skew& skew, std::uint64_t seed,
                            int units = kAllToAllvUnits);

// Bytes per rank the bench sweeps: 1 MiB to 256 MiB by factors of 2; quick: 1 and 8 MiB.
std::vector<std::int64_t> alltoall_sizes(bool is_quick);

struct Bandwidth {
  double algbw_gbps = 0;
  double busbw_gbps = 0;
};
Bandwidth alltoall_bandwidth(std::int64_t bytes_per_rank, int num_ranks, double ms);

// One exchange of `plan` on `exchange`, checked as the header says; a row named (op, case_name).
OpResult validate_alltoall(AllToAll& exchange, const std::string& op, const std::string& case_name,
                           const AllToAllPlan& plan, std::uint64_t seed);
// Both ops over a few plans (even, tiny chunks, Zipf-uneven, everything to rank 0), or, when they cannot run, one
// skipped row per op. `make` null: NCCL over every local GPU, when collectives_unavailable_reason() is "".
std::vector<OpResult> validate_collectives(const Backend& backend, std::uint64_t seed,
                                           const Progress& progress = nullptr, const AllToAllFactory& make = nullptr);

// Times `plan` on `exchange` and fills a Measurement of `op` (`skew`: the plan's skew name, "uniform" for alltoall).
Measurement bench_alltoall(AllToAll& exchange, const std::string& op, const AllToAllPlan& plan, const std::string& skew,
                           const BenchOptions& options);

}  // namespace moesim::kernels::harness
