// The CUDA backend's own corners, beside the harness tables of cuda_backend_test.cpp: the message without a GPU,
// memory and timer calls, the 2-byte paths taken by unaligned rows, the grid-stride path of more rows than one grid
// has blocks, and arguments refused before launch. Tests that need a GPU skip without one (label gpu); the one
// about a missing GPU runs exactly where there is none.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/backend.hpp"

namespace moesim::kernels {
namespace {

// The CUDA backend on GPU 0, or null with the reason when this build or machine has none.
std::unique_ptr<Backend> cuda_or_null(std::string& why) {
  try {
    return make_cuda_backend(0);
  } catch (const std::runtime_error& e) {
    why = e.what();
    return nullptr;
  }
}

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    backend_ = cuda_or_null(why);
    if (backend_ == nullptr) GTEST_SKIP() << why;
  }

  template <typename T>
  T* upload(const std::vector<T>& host) {
    auto* p = static_cast<T*>(alloc(host.size() * sizeof(T)));
    backend_->upload(p, host.data(), host.size() * sizeof(T));
    return p;
  }
  void* alloc(std::size_t bytes) {
    void* p = backend_->alloc(bytes);
    owned_.push_back(p);
    return p;
  }
  template <typename T>
  std::vector<T> download(const T* p, std::size_t count) {
    std::vector<T> host(count);
    backend_->download(host.data(), p, count * sizeof(T));
    return host;
  }
  void TearDown() override {
    for (void* p : owned_) backend_->release(p);
  }

  std::unique_ptr<Backend> backend_;
  std::vector<void*> owned_;
};

TEST(CudaKernelsWithoutGpu, SaysWhyInOneLine) {
  if (!has_cuda_backend()) GTEST_SKIP() << "built without CUDA";
  std::string why;
  if (cuda_or_null(why) != nullptr) GTEST_SKIP() << "a GPU is present";
  // The CLI prints this as the reason for exit code 2: one line, naming the CUDA call and its error.
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  EXPECT_NE(why.find("no usable GPU"), std::string::npos) << why;
  EXPECT_NE(why.find("cudaGetDeviceCount"), std::string::npos) << why;
}

TEST_F(CudaKernels, AMissingDeviceIsARuntimeError) {
  EXPECT_THROW(make_cuda_backend(1 << 20), std::runtime_error);
  EXPECT_THROW(make_cuda_backend(-1), std::runtime_error);
}

TEST_F(CudaKernels, MovesBytesThroughDeviceMemory) {
  EXPECT_EQ(backend_->alloc(0), nullptr);
  backend_->release(nullptr);
  // Upload, copy within the device, fill part of the copy, download: every byte where it should be.
  const std::size_t bytes = 1000;
  std::vector<unsigned char> host(bytes);
  for (std::size_t i = 0; i < bytes; ++i) host[i] = static_cast<unsigned char>(i * 7 + 3);
  unsigned char* a = upload(host);
  auto* b = static_cast<unsigned char*>(alloc(bytes));
  backend_->copy(b, a, bytes);
  backend_->fill(b + 100, 0xab, 50);
  const std::vector<unsigned char> back = download(b, bytes);
  for (std::size_t i = 0; i < bytes; ++i) {
    const unsigned char want = i >= 100 && i < 150 ? 0xab : host[i];
    ASSERT_EQ(back[i], want) << "byte " << i;
  }
}

TEST_F(CudaKernels, TimesWhatWasEnqueued) {
  const std::size_t bytes = std::size_t{64} << 20;
  void* a = alloc(bytes);
  void* b = alloc(bytes);
  backend_->start_timer();
  for (int i = 0; i < 4; ++i) backend_->copy(b, a, bytes);
  const double ms = backend_->stop_timer();
  // 512 MiB of device traffic takes some time, and less than a second on any GPU this runs on.
  EXPECT_GT(ms, 0.0);
  EXPECT_LT(ms, 1000.0);
}

// Permute then unpermute on the GPU and on the CPU backend; maps, rows and sums must agree exactly.
void expect_same_as_cpu(Backend& gpu, const PermuteArgs& on_gpu, const std::vector<std::int32_t>& expert,
                        const std::vector<float>& weight, const std::vector<Bf16>& x, Bf16* gpu_out) {
  const std::size_t copies = expert.size();
  const auto rows_elements = copies * static_cast<std::size_t>(on_gpu.hidden);
  std::vector<std::int32_t> routed(static_cast<std::size_t>(on_gpu.experts));
  std::vector<std::int32_t> offsets(routed.size() + 1);
  std::vector<std::int32_t> row_of_copy(copies);
  std::vector<std::int32_t> token_of_row(copies);
  std::vector<Bf16> permuted(rows_elements);
  std::vector<Bf16> out(x.size());
  PermuteArgs p = on_gpu;
  p.expert = expert.data();
  p.weight = weight.data();
  p.x = x.data();
  p.routed = routed.data();
  p.offsets = offsets.data();
  p.row_of_copy = row_of_copy.data();
  p.token_of_row = token_of_row.data();
  p.permuted = permuted.data();
  const std::unique_ptr<Backend> cpu = make_cpu_backend(0);
  cpu->permute(p);
  UnpermuteArgs u;
  u.tokens = p.tokens;
  u.hidden = p.hidden;
  u.topk = p.topk;
  u.y = permuted.data();
  u.row_of_copy = row_of_copy.data();
  u.weight = weight.data();
  u.out = out.data();
  cpu->unpermute(u);
  cpu->synchronize();

  const auto get = [&](const auto* device, std::size_t count) {
    std::vector<std::remove_const_t<std::remove_pointer_t<decltype(device)>>> host(count);
    gpu.download(host.data(), device, count * sizeof(host[0]));
    return host;
  };
  EXPECT_EQ(get(on_gpu.routed, routed.size()), routed);
  EXPECT_EQ(get(on_gpu.offsets, offsets.size()), offsets);
  EXPECT_EQ(get(on_gpu.row_of_copy, copies), row_of_copy);
  EXPECT_EQ(get(on_gpu.token_of_row, copies), token_of_row);
  const auto kept_elements = static_cast<std::size_t>(offsets.back()) * static_cast<std::size_t>(p.hidden);
  std::vector<Bf16> gpu_permuted = get(on_gpu.permuted, rows_elements);
  gpu_permuted.resize(kept_elements);
  permuted.resize(kept_elements);
  EXPECT_EQ(gpu_permuted, permuted);
  EXPECT_EQ(get(gpu_out, x.size()), out);
}

// Rows that are not 16-byte aligned take the kernels' 2-byte path; the results must not change.
TEST_F(CudaKernels, UnalignedRowsGiveTheSameResults) {
  const std::int64_t tokens = 5;
  const std::int64_t hidden = 16;  // a multiple of 8: only the pointers' alignment forces the 2-byte path
  const int topk = 2;
  // Expert 2 receives 4 copies and keeps 3 (capacity 3, by score): one drop.
  const std::vector<std::int32_t> expert = {0, 2, 1, 2, 2, 0, 1, 0, 2, 1};
  const std::vector<float> weight = {0.5F, 0.5F, 0.25F, 0.75F, 1.0F, 0.0F, 0.5F, 0.5F, 0.125F, 0.875F};
  // Small integers and weights of few bits: every FP32 sum is exact, so the BF16 results agree bit for bit.
  std::vector<Bf16> x(static_cast<std::size_t>(tokens * hidden));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = to_bf16(static_cast<float>(i % 13) - 6.0F);
  const std::size_t copies = expert.size();

  // One element past a cudaMalloc'd (256-byte aligned) buffer: 2-byte aligned, never 16.
  auto* d_x = static_cast<Bf16*>(alloc((x.size() + 1) * sizeof(Bf16))) + 1;
  auto* d_permuted = static_cast<Bf16*>(alloc((copies * hidden + 1) * sizeof(Bf16))) + 1;
  auto* d_out = static_cast<Bf16*>(alloc((x.size() + 1) * sizeof(Bf16))) + 1;
  backend_->upload(d_x, x.data(), x.size() * sizeof(Bf16));
  backend_->fill(d_permuted, 0, copies * hidden * sizeof(Bf16));

  PermuteArgs p;
  p.tokens = tokens;
  p.hidden = hidden;
  p.experts = 3;
  p.topk = topk;
  p.capacity = 3;
  p.policy = DropPolicy::kDropScore;
  p.expert = upload(expert);
  p.weight = upload(weight);
  p.x = d_x;
  p.routed = static_cast<std::int32_t*>(alloc(3 * sizeof(std::int32_t)));
  p.offsets = static_cast<std::int32_t*>(alloc(4 * sizeof(std::int32_t)));
  p.row_of_copy = static_cast<std::int32_t*>(alloc(copies * sizeof(std::int32_t)));
  p.token_of_row = static_cast<std::int32_t*>(alloc(copies * sizeof(std::int32_t)));
  p.permuted = d_permuted;
  backend_->permute(p);
  UnpermuteArgs u;
  u.tokens = tokens;
  u.hidden = hidden;
  u.topk = topk;
  u.y = d_permuted;
  u.row_of_copy = p.row_of_copy;
  u.weight = p.weight;
  u.out = d_out;
  backend_->unpermute(u);
  backend_->synchronize();
  expect_same_as_cpu(*backend_, p, expert, weight, x, d_out);
}

// More rows than the gather's 2^20 blocks (its grid-stride loop), and an expert count that is not a power of two
// (the radix sort's bit range), dropless and with capacity.
TEST_F(CudaKernels, ManyRowsAndAnOddExpertCount) {
  const std::int64_t tokens = 300000;
  const int topk = 4;
  const int experts = 300;
  const std::int64_t hidden = 8;
  const std::size_t copies = static_cast<std::size_t>(tokens) * topk;
  std::vector<std::int32_t> expert(copies);
  std::vector<float> weight(copies);
  std::uint32_t state = 12345;
  const auto next = [&state] { return state = state * 1664525U + 1013904223U; };
  for (std::int64_t t = 0; t < tokens; ++t) {
    const auto first = static_cast<std::int32_t>((next() >> 8) % experts);
    for (int j = 0; j < topk; ++j) {
      const auto c = static_cast<std::size_t>(t * topk + j);
      expert[c] = (first + j * 7) % experts;                       // distinct within a token
      weight[c] = static_cast<float>((next() >> 8) % 16) / 16.0F;  // many ties for drop-by-score
    }
  }
  std::vector<Bf16> x(static_cast<std::size_t>(tokens * hidden));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = to_bf16(static_cast<float>(i % 7));

  for (const std::int64_t capacity : {std::int64_t{0}, std::int64_t{3000}}) {
    for (const DropPolicy policy : {DropPolicy::kDropPosition, DropPolicy::kDropScore}) {
      PermuteArgs p;
      p.tokens = tokens;
      p.hidden = hidden;
      p.experts = experts;
      p.topk = topk;
      p.capacity = capacity;
      p.policy = policy;
      p.expert = upload(expert);
      p.weight = upload(weight);
      p.x = upload(x);
      p.routed = static_cast<std::int32_t*>(alloc(experts * sizeof(std::int32_t)));
      p.offsets = static_cast<std::int32_t*>(alloc((experts + 1) * sizeof(std::int32_t)));
      p.row_of_copy = static_cast<std::int32_t*>(alloc(copies * sizeof(std::int32_t)));
      p.token_of_row = static_cast<std::int32_t*>(alloc(copies * sizeof(std::int32_t)));
      p.permuted = static_cast<Bf16*>(alloc(copies * hidden * sizeof(Bf16)));
      backend_->permute(p);
      UnpermuteArgs u;
      u.tokens = tokens;
      u.hidden = hidden;
      u.topk = topk;
      u.y = p.permuted;
      u.row_of_copy = p.row_of_copy;
      u.weight = p.weight;
      u.out = static_cast<Bf16*>(alloc(x.size() * sizeof(Bf16)));
      backend_->unpermute(u);
      backend_->synchronize();
      SCOPED_TRACE("capacity " + std::to_string(capacity) + ", policy " + std::to_string(static_cast<int>(policy)));
      expect_same_as_cpu(*backend_, p, expert, weight, x, u.out);
    }
  }
}

TEST_F(CudaKernels, RefusesBadArgumentsBeforeLaunch) {
  RouterArgs args;
  args.tokens = 1;
  args.hidden = 1;
  args.experts = 4;
  args.topk = 5;  // more than experts
  EXPECT_THROW(backend_->router(args), std::invalid_argument);
  // More experts than one block's shared memory holds: refused, not launched.
  args.tokens = 0;
  args.experts = 1 << 20;
  args.topk = 1;
  args.w = static_cast<const Bf16*>(alloc(static_cast<std::size_t>(args.experts) * sizeof(Bf16)));
  try {
    backend_->router(args);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("shared memory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moesim::kernels
