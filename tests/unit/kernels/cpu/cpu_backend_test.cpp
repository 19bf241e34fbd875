// The CPU backend's memory, timer and self-description; and the CUDA entry points as this build has them.
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/config.hpp"
#include "kernels/cpu/ops.hpp"

namespace moesim::kernels {
namespace {

TEST(CpuBackend, DescribesItself) {
  auto cpu = make_cpu_backend(3);
  EXPECT_EQ(cpu->name(), "cpu");
  EXPECT_EQ(cpu->compute_units(), 3);
  EXPECT_FALSE(cpu->device_name().empty());
  EXPECT_EQ(cpu->cache_bytes(), cpu::last_level_cache_bytes());
  EXPECT_GE(make_cpu_backend()->compute_units(), 1) << "0 threads: the hardware's";
}

TEST(CpuBackend, MemoryRoundTrips) {
  auto cpu = make_cpu_backend(1);
  EXPECT_EQ(cpu->alloc(0), nullptr);
  cpu->release(nullptr);
  void* a = cpu->alloc(64);
  void* b = cpu->alloc(64);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
  std::vector<unsigned char> host(64), back(64);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<unsigned char>(i * 7);
  cpu->upload(a, host.data(), 64);
  cpu->copy(b, a, 64);
  cpu->download(back.data(), b, 64);
  EXPECT_EQ(back, host);
  cpu->fill(b, 0xa5, 32);
  cpu->download(back.data(), b, 64);
  EXPECT_EQ(back[0], 0xa5);
  EXPECT_EQ(back[31], 0xa5);
  EXPECT_EQ(back[32], host[32]);
  cpu->release(a);
  cpu->release(b);
}

TEST(CpuBackend, TimerMeasuresTheEnclosedWork) {
  auto cpu = make_cpu_backend(1);
  cpu->start_timer();
  volatile double sink = 0;
  for (int i = 0; i < 100000; ++i) sink = sink + i;
  const double ms = cpu->stop_timer();
  EXPECT_GE(ms, 0.0);
  EXPECT_LT(ms, 60e3);
}

TEST(CudaEntryPoints, MatchTheBuild) {
  EXPECT_EQ(has_cuda_backend(), MOESIM_HAVE_CUDA == 1);
  if (!has_cuda_backend()) {
    try {
      make_cuda_backend(0);
      ADD_FAILURE() << "expected std::runtime_error";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "moesim was built without CUDA");
    }
  }
}

}  // namespace
}  // namespace moesim::kernels
