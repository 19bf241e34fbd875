// A fixed set of std::threads for the CPU backend's ops.
//
// parallel_for splits [0, n) into at most threads() contiguous chunks and runs one per thread (the caller runs the
// first), returning when all are done. Ops write each output element from exactly one chunk and accumulate it in a
// fixed order, so their results are bitwise the same for any thread count; the chunking only decides who computes
// what. Workers sleep between calls; a call wakes them through a generation counter. One caller at a time (the
// backend, like a CUDA stream, is not shared between threads).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moesim::kernels::cpu {

class ThreadPool {
 public:
  using ChunkFn = std::function<void(std::int64_t begin, std::int64_t end)>;

  explicit ThreadPool(int threads);  // threads >= 1: the caller plus threads - 1 workers
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn on disjoint chunks covering [0, n), each of at least `grain` items where n allows (so that small
  // loops stay on one thread). Rethrows the first exception a chunk threw, after every chunk has finished.
  void parallel_for(std::int64_t n, std::int64_t grain, const ChunkFn& fn);

 private:
  void work(int worker_idx);
  void run_chunk(int chunk_idx) noexcept;

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  bool is_stopping_ = false;
  const ChunkFn* fn_ = nullptr;
  std::int64_t n_ = 0;
  int num_chunks_ = 0;
  int pending_ = 0;
  std::exception_ptr error_;
};

}  // namespace moesim::kernels::cpu
