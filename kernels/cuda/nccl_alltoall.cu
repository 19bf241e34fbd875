// The NCCL all-to-all of kernels/collectives.hpp: one process, one thread, every local GPU a rank, one communicator
// per GPU from ncclCommInitAll, one non-blocking stream per GPU. Host code only (no kernels of ours); a .cu file so
// that only nvcc-built code sees the CUDA and NCCL headers. Built when CMake finds NCCL (MOESIM_HAVE_NCCL).
//
// One exchange (exchange()), in launch order:
//   1. Rank 0's stream records `start`; every other rank's stream waits for it (cudaStreamWaitEvent takes an event
//      of another device). No transfer on any GPU can begin before `start`.
//   2. ncclGroupStart; for every rank r and every peer p: ncclSend of r's chunk for p and ncclRecv of r's chunk
//      from p, on r's communicator and stream; ncclGroupEnd. One thread drives every communicator, so the group is
//      required: without it the first blocking send would wait for a receive that the thread has not posted yet.
//      Empty chunks are left out on both sides (both read the same plan, so every send still meets its receive).
//   3. Every rank r > 0 records `joined[r]` on its stream after its transfers; rank 0's stream waits for each.
//   4. Rank 0's stream records `stop`; the host waits for it.
// Why the time is right: `stop` is behind every rank's last transfer (step 3) and `start` is before every rank's
// first one (step 1), and both events are on GPU 0, so cudaEventElapsedTime reads one device's clock and covers the
// whole exchange on every GPU: the slowest rank sets it, as it sets an MoE layer's dispatch. Every stream is idle
// when `start` is recorded (set_plan, the uploads and the fills wait for their copies, and each exchange waits for
// its `stop`), so the interval also holds the host's enqueueing of the group, as nccl-tests' host timer does, and
// the cross-GPU event waits (microseconds, against the milliseconds of the 1 MiB to 256 MiB the bench sends).
#include <nccl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/collectives.hpp"
#include "kernels/config.hpp"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/nccl_check.cuh"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 7, 0)
#error "moesim's all-to-all needs NCCL 2.7 or later (ncclSend and ncclRecv)"
#endif

static_assert(MOESIM_HAVE_NCCL == 1, "kernels/cuda/nccl_alltoall.cu is built only with NCCL");

namespace moesim::kernels {
namespace cuda {
namespace {

struct Rank {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t joined = nullptr;  // after this rank's transfers; rank 0's stream waits for it
  char* send = nullptr;
  std::size_t send_capacity = 0;
  char* recv = nullptr;
  std::size_t recv_capacity = 0;
};

// Every handle and buffer, released by its own destructor: a member, so that a constructor that throws half-way
// still releases what it had created. Errors are ignored here: a destructor must not throw.
struct Resources {
  std::vector<Rank> ranks;
  cudaEvent_t start = nullptr;  // on device 0, as `stop`
  cudaEvent_t stop = nullptr;

  Resources() = default;
  Resources(const Resources&) = delete;
  Resources& operator=(const Resources&) = delete;
  ~Resources() {
    for (Rank& r : ranks) {
      cudaSetDevice(r.device);
      if (r.stream != nullptr) cudaStreamSynchronize(r.stream);
    }
    for (Rank& r : ranks) {
      cudaSetDevice(r.device);
      if (r.send != nullptr) cudaFree(r.send);
      if (r.recv != nullptr) cudaFree(r.recv);
      if (r.joined != nullptr) cudaEventDestroy(r.joined);
      if (r.stream != nullptr) cudaStreamDestroy(r.stream);
    }
    if (!ranks.empty()) {
      cudaSetDevice(ranks.front().device);
      if (stop != nullptr) cudaEventDestroy(stop);
      if (start != nullptr) cudaEventDestroy(start);
    }
    for (Rank& r : ranks)
      if (r.comm != nullptr) ncclCommDestroy(r.comm);
  }
};

// ncclGroupStart, and an ncclGroupEnd even when a call inside the group throws (NCCL's group state is per thread:
// an unclosed group would swallow the next exchange's calls).
class Group {
 public:
  Group() { MOESIM_NCCL_CHECK(ncclGroupStart()); }
  ~Group() {
    if (is_open_) ncclGroupEnd();
  }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  void end() {
    is_open_ = false;
    MOESIM_NCCL_CHECK(ncclGroupEnd());
  }

 private:
  bool is_open_ = true;
};

// Grows a device buffer to `bytes` (contents are not kept).
void reserve(char*& buffer, std::size_t& capacity, std::size_t bytes) {
  if (bytes <= capacity) return;
  if (buffer != nullptr) MOESIM_CUDA_CHECK(cudaFree(buffer));
  buffer = nullptr;
  capacity = 0;
  MOESIM_CUDA_CHECK(cudaMalloc(&buffer, bytes));
  capacity = bytes;
}

class NcclAllToAll final : public AllToAll {
 public:
  NcclAllToAll() {
    if (const std::string reason = nccl_alltoall_unavailable_reason(); !reason.empty())
      throw std::runtime_error("nccl: " + reason);
    int count = 0;
    MOESIM_CUDA_CHECK(cudaGetDeviceCount(&count));
    std::vector<ncclComm_t> comms(static_cast<std::size_t>(count), nullptr);
    // A null device list: ranks 0..count-1 on devices 0..count-1.
    MOESIM_NCCL_CHECK(ncclCommInitAll(comms.data(), count, nullptr));
    res_.ranks.resize(static_cast<std::size_t>(count));
    for (int r = 0; r < count; ++r) {
      Rank& rank = res_.ranks[static_cast<std::size_t>(r)];
      rank.device = r;
      rank.comm = comms[static_cast<std::size_t>(r)];
    }
    for (Rank& rank : res_.ranks) {
      MOESIM_CUDA_CHECK(cudaSetDevice(rank.device));
      MOESIM_CUDA_CHECK(cudaStreamCreateWithFlags(&rank.stream, cudaStreamNonBlocking));
      MOESIM_CUDA_CHECK(cudaEventCreateWithFlags(&rank.joined, cudaEventDisableTiming));
    }
    MOESIM_CUDA_CHECK(cudaSetDevice(res_.ranks.front().device));
    MOESIM_CUDA_CHECK(cudaEventCreate(&res_.start));
    MOESIM_CUDA_CHECK(cudaEventCreate(&res_.stop));
    cudaDeviceProp props{};
    MOESIM_CUDA_CHECK(cudaGetDeviceProperties(&props, res_.ranks.front().device));
    device_name_ = props.name;
  }

  std::string name() const override { return "nccl"; }
  int num_ranks() const override { return static_cast<int>(res_.ranks.size()); }
  std::string device_name() const override { return device_name_; }

  void set_plan(const AllToAllPlan& plan) override {
    check_args(plan);
    if (plan.num_ranks != num_ranks())
      throw std::invalid_argument("alltoall: num_ranks: the plan has " + std::to_string(plan.num_ranks) + ", NCCL " +
                                  std::to_string(num_ranks()) + " GPUs");
    is_planned_ = false;
    for (int r = 0; r < num_ranks(); ++r) {
      Rank& rank = rank_at(r);
      MOESIM_CUDA_CHECK(cudaSetDevice(rank.device));
      MOESIM_CUDA_CHECK(cudaStreamSynchronize(rank.stream));
      reserve(rank.send, rank.send_capacity, static_cast<std::size_t>(plan.send_bytes(r)));
      reserve(rank.recv, rank.recv_capacity, static_cast<std::size_t>(plan.recv_bytes(r)));
    }
    plan_ = plan;
    is_planned_ = true;
  }

  void upload_send(int rank_idx, const void* host) override {
    require_plan();
    Rank& rank = rank_at(rank_idx);
    const auto bytes = static_cast<std::size_t>(plan_.send_bytes(rank_idx));
    if (bytes == 0) return;
    MOESIM_CUDA_CHECK(cudaSetDevice(rank.device));
    MOESIM_CUDA_CHECK(cudaMemcpyAsync(rank.send, host, bytes, cudaMemcpyHostToDevice, rank.stream));
    MOESIM_CUDA_CHECK(cudaStreamSynchronize(rank.stream));
  }

  void fill_send(unsigned char byte) override { fill(byte, true); }
  void fill_recv(unsigned char byte) override { fill(byte, false); }

  void download_recv(int rank_idx, void* host) override {
    require_plan();
    Rank& rank = rank_at(rank_idx);
    const auto bytes = static_cast<std::size_t>(plan_.recv_bytes(rank_idx));
    if (bytes == 0) return;
    MOESIM_CUDA_CHECK(cudaSetDevice(rank.device));
    MOESIM_CUDA_CHECK(cudaMemcpyAsync(host, rank.recv, bytes, cudaMemcpyDeviceToHost, rank.stream));
    MOESIM_CUDA_CHECK(cudaStreamSynchronize(rank.stream));
  }

  // Steps 1 to 4 of the comment at the top of this file.
  double exchange() override {
    require_plan();
    const int n = num_ranks();
    Rank& first = rank_at(0);
    MOESIM_CUDA_CHECK(cudaSetDevice(first.device));
    MOESIM_CUDA_CHECK(cudaEventRecord(res_.start, first.stream));
    for (int r = 1; r < n; ++r) {
      MOESIM_CUDA_CHECK(cudaSetDevice(rank_at(r).device));
      MOESIM_CUDA_CHECK(cudaStreamWaitEvent(rank_at(r).stream, res_.start, 0));
    }
    {
      Group group;
      for (int r = 0; r < n; ++r) {
        Rank& rank = rank_at(r);
        for (int p = 0; p < n; ++p) {
          const auto to_peer = static_cast<std::size_t>(plan_.at(r, p));
          const auto from_peer = static_cast<std::size_t>(plan_.at(p, r));
          if (to_peer > 0)
            MOESIM_NCCL_CHECK(
                ncclSend(rank.send + plan_.send_offset(r, p), to_peer, ncclUint8, p, rank.comm, rank.stream));
          if (from_peer > 0)
            MOESIM_NCCL_CHECK(
                ncclRecv(rank.recv + plan_.recv_offset(r, p), from_peer, ncclUint8, p, rank.comm, rank.stream));
        }
      }
      group.end();
    }
    for (int r = 1; r < n; ++r) {
      MOESIM_CUDA_CHECK(cudaSetDevice(rank_at(r).device));
      MOESIM_CUDA_CHECK(cudaEventRecord(rank_at(r).joined, rank_at(r).stream));
      MOESIM_CUDA_CHECK(cudaSetDevice(first.device));
      MOESIM_CUDA_CHECK(cudaStreamWaitEvent(first.stream, rank_at(r).joined, 0));
    }
    MOESIM_CUDA_CHECK(cudaSetDevice(first.device));
    MOESIM_CUDA_CHECK(cudaEventRecord(res_.stop, first.stream));
    MOESIM_CUDA_CHECK(cudaEventSynchronize(res_.stop));
    float ms = 0.0F;
    MOESIM_CUDA_CHECK(cudaEventElapsedTime(&ms, res_.start, res_.stop));
    // A transfer that failed on the GPU (a peer lost, a network error) is reported here, not by ncclGroupEnd.
    for (Rank& rank : res_.ranks) {
      ncclResult_t async = ncclSuccess;
      MOESIM_NCCL_CHECK(ncclCommGetAsyncError(rank.comm, &async));
      MOESIM_NCCL_CHECK(async);
    }
    return ms;
  }

 private:
  Rank& rank_at(int rank_idx) {
    if (rank_idx < 0 || rank_idx >= num_ranks())
      throw std::invalid_argument("alltoall: rank " + std::to_string(rank_idx) +
                                  " does not exist: " + std::to_string(num_ranks()) + " ranks");
    return res_.ranks[static_cast<std::size_t>(rank_idx)];
  }

  void require_plan() const {
    if (!is_planned_) throw std::logic_error("alltoall: set_plan() first");
  }

  // Every rank's send (or receive) buffer, waited for so that no fill runs inside a timed exchange.
  void fill(unsigned char byte, bool is_send) {
    require_plan();
    for (int r = 0; r < num_ranks(); ++r) {
      Rank& rank = rank_at(r);
      const auto bytes = static_cast<std::size_t>(is_send ? plan_.send_bytes(r) : plan_.recv_bytes(r));
      if (bytes == 0) continue;
      MOESIM_CUDA_CHECK(cudaSetDevice(rank.device));
      MOESIM_CUDA_CHECK(cudaMemsetAsync(is_send ? rank.send : rank.recv, byte, bytes, rank.stream));
    }
    for (Rank& rank : res_.ranks) {
      MOESIM_CUDA_CHECK(cudaSetDevice(rank.device));
      MOESIM_CUDA_CHECK(cudaStreamSynchronize(rank.stream));
    }
  }

  Resources res_;
  std::string device_name_;
  AllToAllPlan plan_;
  bool is_planned_ = false;
};

}  // namespace
}  // namespace cuda

std::string nccl_alltoall_unavailable_reason() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    cudaGetLastError();  // clear it: the process goes on without the GPUs
    return std::string("needs 2 or more GPUs, found none (cudaGetDeviceCount: ") + cudaGetErrorName(error) + ": " +
           cudaGetErrorString(error) + ")";
  }
  if (count < 2) return "needs 2 or more GPUs, found " + std::to_string(count);
  return "";
}

std::unique_ptr<AllToAll> make_nccl_alltoall() {
  return std::make_unique<cuda::NcclAllToAll>();
}

}  // namespace moesim::kernels
