// The thread pool: every index exactly once, for any thread count and size; small loops stay on the caller;
// exceptions reach the caller; the pool is reusable.
#include "kernels/cpu/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace moesim::kernels::cpu {
namespace {

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (const int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (const std::int64_t n : {0, 1, 2, 3, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      pool.parallel_for(n, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) hits[static_cast<std::size_t>(i)]++;
      });
      for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<std::size_t>(i)], 1) << n << " " << i;
    }
  }
}

TEST(ThreadPool, SmallLoopsStayOnTheCaller) {
  ThreadPool pool(4);
  std::atomic<int> chunks = 0;
  const auto caller = std::this_thread::get_id();
  bool is_on_caller = true;
  pool.parallel_for(10, 16, [&](std::int64_t, std::int64_t) {
    ++chunks;
    is_on_caller = std::this_thread::get_id() == caller;
  });
  EXPECT_EQ(chunks, 1);
  EXPECT_TRUE(is_on_caller);
  chunks = 0;
  pool.parallel_for(40, 16, [&](std::int64_t, std::int64_t) { ++chunks; });
  EXPECT_EQ(chunks, 3);  // ceil(40 / 16) chunks of at least the grain, fewer than the 4 threads
}

TEST(ThreadPool, RethrowsWhatAChunkThrew) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(300, 1,
                                 [](std::int64_t begin, std::int64_t) {
                                   if (begin > 0) throw std::runtime_error("chunk failed");
                                 }),
               std::runtime_error);
  std::atomic<std::int64_t> sum = 0;
  pool.parallel_for(100, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) sum += i;
  });
  EXPECT_EQ(sum, 4950) << "the pool still works after an exception";
}

TEST(ThreadPool, ManyCallsInARow) {
  ThreadPool pool(2);
  std::atomic<std::int64_t> total = 0;
  for (int call = 0; call < 2000; ++call)
    pool.parallel_for(4, 1, [&](std::int64_t b, std::int64_t e) { total += e - b; });
  EXPECT_EQ(total, 8000);
}

TEST(ThreadPool, RejectsNoThreads) {
  EXPECT_THROW(ThreadPool(0), std::invalid_argument);
}

}  // namespace
}  // namespace moesim::kernels::cpu
