// What the CUDA ops share: the context an op is enqueued with (stream, cuBLAS handle, scratch memory), BF16
// conversions in device code, small launch helpers, and the entry point of each op. The Backend class
// (backend.cu) validates arguments with check_args() and then calls these; each op's .cu file documents its
// kernels' launch shapes and why they are correct.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/backend.hpp"
#include "kernels/cuda/check.cuh"

namespace moesim::kernels::cuda {

static_assert(sizeof(Bf16) == 2 && alignof(Bf16) == 2, "Bf16 must be a bare 16-bit word to be read as one on the GPU");

// Scratch device memory that only grows. Ops on one stream run in order, so successive ops may share it; growing
// waits for the stream first, since a kernel enqueued earlier may still be using the old buffer.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { cudaFree(data_); }  // errors ignored: a destructor must not throw

  void* get(std::size_t bytes, cudaStream_t stream) {
    if (bytes > bytes_) {
      MOESIM_CUDA_CHECK(cudaStreamSynchronize(stream));
      MOESIM_CUDA_CHECK(cudaFree(data_));
      data_ = nullptr;
      bytes_ = 0;
      MOESIM_CUDA_CHECK(cudaMalloc(&data_, bytes));
      bytes_ = bytes;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// Carves one workspace allocation into arrays: add() the sizes first, get() the workspace once, then at() each.
class WorkspaceLayout {
 public:
  std::size_t add(std::size_t bytes) {
    const std::size_t offset = total_;
    total_ += (bytes + kAlign - 1) / kAlign * kAlign;
    return offset;
  }
  std::size_t total() const { return total_ > 0 ? total_ : kAlign; }
  template <typename T>
  static T* at(void* base, std::size_t offset) {
    return reinterpret_cast<T*>(static_cast<unsigned char*>(base) + offset);
  }

 private:
  static constexpr std::size_t kAlign = 256;  // what cudaMalloc guarantees, and more than any vector load needs
  std::size_t total_ = 0;
};

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  Workspace* workspace = nullptr;
  std::size_t max_shared_bytes_optin = 48 * 1024;  // cudaDeviceProp::sharedMemPerBlockOptin
};

// Limits of the CUDA implementation beyond check_args (cuBLAS and CUB take int sizes, grids have 2^31 - 1 blocks).
inline void require_int32(const char* op, const char* field, std::int64_t value) {
  if (value < 0 || value > std::numeric_limits<int>::max()) {
    throw std::invalid_argument(std::string(op) + ": " + field + ": the CUDA backend needs it in [0, 2^31 - 1], got " +
                                std::to_string(value));
  }
}

inline bool is_aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

inline unsigned int ceil_div(std::int64_t a, std::int64_t b) {
  return static_cast<unsigned int>((a + b - 1) / b);
}

// Threads per block for `work` items per block: whole warps, at least one, at most `max_threads`.
inline int block_threads(std::int64_t work, int max_threads) {
  const std::int64_t warps = (work + 31) / 32;
  const std::int64_t threads = warps < 1 ? 32 : warps * 32;
  return threads > max_threads ? max_threads : static_cast<int>(threads);
}

// The thread's index in a one-dimensional grid, wide enough that the threads past the end of an int-sized range
// of work cannot wrap around to negative indices.
__device__ __forceinline__ long long global_thread_index() {
  return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// BF16 as the upper half of binary32, rounded to nearest even; NaN stays a (quiet) NaN. The same rounding as
// kernels::to_bf16 on the host, so outputs rounded here and in the CPU reference agree bit for bit when their FP32
// values do.
__device__ __forceinline__ float bf16_to_float(std::uint16_t bits) {
  return __uint_as_float(std::uint32_t{bits} << 16);
}

__device__ __forceinline__ std::uint16_t float_to_bf16(float value) {
  const std::uint32_t u = __float_as_uint(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Row-major C[m x n] = A[m x k] B[k x n], BF16 A and B, FP32 accumulation, C in `c_type` (CUDA_R_32F or
// CUDA_R_16BF); lda, ldb, ldc are row strides in elements. cuBLAS is column-major: a row-major matrix read as
// column-major is its transpose, so this computes C^T (n x m) = B^T (n x k) A^T (k x m), i.e. it passes B first.
void gemm_bf16(const Context& ctx, std::int64_t m, std::int64_t n, std::int64_t k, const void* a, std::int64_t lda,
               const void* b, std::int64_t ldb, void* c, cudaDataType_t c_type, std::int64_t ldc);

void run_router(const Context& ctx, const RouterArgs& args);
void run_permute(const Context& ctx, const PermuteArgs& args);
void run_grouped_ffn(const Context& ctx, const GroupedFfnArgs& args);
void run_dense_gemm(const Context& ctx, const GemmArgs& args);
void run_unpermute(const Context& ctx, const UnpermuteArgs& args);

}  // namespace moesim::kernels::cuda
