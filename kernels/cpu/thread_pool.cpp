#include "kernels/cpu/thread_pool.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim::kernels::cpu {

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) throw std::invalid_argument("threads: must be >= 1, got " + std::to_string(threads));
  workers_.reserve(static_cast<std::size_t>(threads - 1));
  for (int w = 0; w + 1 < threads; ++w) workers_.emplace_back([this, w] { work(w); });
}

ThreadPool::~ThreadPool() {
  {
    const std::lock_guard lock(mutex_);
    is_stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunk(int chunk_idx) noexcept {
  const std::int64_t begin = n_ * chunk_idx / num_chunks_;
  const std::int64_t end = n_ * (chunk_idx + 1) / num_chunks_;
  try {
    (*fn_)(begin, end);
  } catch (...) {
    const std::lock_guard lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::work(int worker_idx) {
  std::uint64_t seen = 0;
  for (;;) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return is_stopping_ || generation_ != seen; });
    if (is_stopping_) return;
    seen = generation_;
    const int chunk_idx = worker_idx + 1;  // the caller runs chunk 0
    if (chunk_idx >= num_chunks_) continue;
    lock.unlock();
    run_chunk(chunk_idx);
    lock.lock();
    if (--pending_ == 0) done_.notify_one();
  }
}

void ThreadPool::parallel_for(std::int64_t n, std::int64_t grain, const ChunkFn& fn) {
  if (n <= 0) return;
  const std::int64_t by_grain = (n + std::max<std::int64_t>(grain, 1) - 1) / std::max<std::int64_t>(grain, 1);
  const int chunks = static_cast<int>(std::min<std::int64_t>(threads(), by_grain));
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  {
    const std::lock_guard lock(mutex_);
    fn_ = &fn;
    n_ = n;
    num_chunks_ = chunks;
    pending_ = chunks - 1;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  run_chunk(0);
  std::exception_ptr error;
  {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    error = error_;
    error_ = nullptr;
    fn_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace moesim::kernels::cpu
