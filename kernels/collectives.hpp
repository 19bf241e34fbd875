// All-to-all exchanges between the GPUs of one machine (NCCL, kernels/cuda/nccl_alltoall.cu), behind a plain C++
// interface: nothing here includes a CUDA or NCCL header.
//
// Theory of operation. One process and one thread drive every local GPU; GPU r is rank r. An AllToAllPlan says how
// many bytes each rank sends to each rank (itself included, as in NCCL's and nccl-tests' alltoall): alltoall sends
// the same bytes to every peer, alltoallv uneven ones. Buffers are packed in rank order: in rank s's send buffer, the
// chunk for rank d starts at send_offset(s, d) = the sum of bytes[s][d'] over d' < d; in rank d's receive buffer, the
// chunk from rank s starts at recv_offset(d, s) = the sum of bytes[s'][d] over s' < s. The exchange is correct when
// every received chunk equals, byte for byte, the chunk its sender had for that receiver.
//
// Two implementations: NCCL across the GPUs (ncclSend/ncclRecv per peer inside one ncclGroupStart/End, the way
// NCCL's documentation writes alltoall), and a host reference over n host buffers (memcpy per chunk), which the
// unit tests run the harness on. Neither validates data itself; kernels/harness/collectives.hpp does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moesim::kernels {

struct AllToAllPlan {
  int num_ranks = 0;
  std::vector<std::int64_t> bytes;  // [num_ranks x num_ranks]: bytes[src * num_ranks + dst]

  std::int64_t at(int src_idx, int dst_idx) const;
  std::int64_t send_bytes(int src_idx) const;  // the row's sum
  std::int64_t recv_bytes(int dst_idx) const;  // the column's sum
  std::int64_t send_offset(int src_idx, int dst_idx) const;
  std::int64_t recv_offset(int dst_idx, int src_idx) const;
};

// Chunks are whole 4-byte words, so that validation compares int32 words.
constexpr std::int64_t kAllToAllWordBytes = 4;

// Throws std::invalid_argument naming the first bad field ("alltoall: bytes[1][2]: must be a non-negative multiple
// of 4, got 7").
void check_args(const AllToAllPlan& plan);

class AllToAll {
 public:
  virtual ~AllToAll() = default;
  virtual std::string name() const = 0;         // "nccl" | "host"
  virtual int num_ranks() const = 0;            // GPUs (NCCL) or simulated ranks (host)
  virtual std::string device_name() const = 0;  // rank 0's GPU, or "host"

  // Sizes every rank's send buffer (send_bytes) and receive buffer (recv_bytes) for `plan`, reusing memory that is
  // large enough; contents are undefined until written. Checks the plan (check_args) and its num_ranks.
  virtual void set_plan(const AllToAllPlan& plan) = 0;
  // Rank `rank_idx`'s whole send buffer from host memory (send_bytes(rank_idx) bytes at `host`).
  virtual void upload_send(int rank_idx, const void* host) = 0;
  // Every rank's send or receive buffer set to `byte` (send: content for timing; receive: poison before a run).
  virtual void fill_send(unsigned char byte) = 0;
  virtual void fill_recv(unsigned char byte) = 0;
  // Rank `rank_idx`'s whole receive buffer into host memory (recv_bytes(rank_idx) bytes at `host`).
  virtual void download_recv(int rank_idx, void* host) = 0;

  // One exchange as the plan says, waited for; returns its time in milliseconds (NCCL: CUDA events on rank 0, from
  // before any rank's first transfer to after every rank's last one; host: a steady clock).
  virtual double exchange() = 0;
};

// Why the NCCL all-to-all cannot run on this machine ("built without NCCL", "needs 2 or more GPUs, found 1"), or ""
// when it can.
std::string nccl_alltoall_unavailable_reason();
// Every local GPU as a rank (ncclCommInitAll). Throws std::runtime_error with the reason when it cannot run, and
// with the file, line and NCCL or CUDA error when a call fails.
std::unique_ptr<AllToAll> make_nccl_alltoall();
// The host reference: num_ranks host buffers, each chunk copied by memcpy.
std::unique_ptr<AllToAll> make_host_alltoall(int num_ranks);

// What the harness calls to get an exchange; tests pass one that makes the host reference.
using AllToAllFactory = std::function<std::unique_ptr<AllToAll>()>;

}  // namespace moesim::kernels
