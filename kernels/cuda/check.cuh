// Checked CUDA and cuBLAS calls, after DeepEP's exception.cuh: every call goes through a macro that throws
// std::runtime_error naming the file, the line, the error's name and its description, in one line, so a failure
// deep inside a kernel launch reads as "kernels/cuda/permute.cu:212: cudaErrorInvalidValue: invalid argument
// (in cudaMemsetAsync(...))". Library code throws; the CLI turns the exception into an exit code.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace moesim::kernels::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t error, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + cudaGetErrorName(error) + ": " +
                           cudaGetErrorString(error) + " (in " + expr + ")");
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + cublasGetStatusName(status) + ": " +
                           cublasGetStatusString(status) + " (in " + expr + ")");
}

}  // namespace moesim::kernels::cuda

#define MOESIM_CUDA_CHECK(expr)                                                                 \
  do {                                                                                          \
    const cudaError_t moesim_cuda_error_ = (expr);                                              \
    if (moesim_cuda_error_ != cudaSuccess) {                                                    \
      ::moesim::kernels::cuda::throw_cuda_error(moesim_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                                           \
  } while (false)

#define MOESIM_CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                               \
    const cublasStatus_t moesim_cublas_status_ = (expr);                                             \
    if (moesim_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                            \
      ::moesim::kernels::cuda::throw_cublas_error(moesim_cublas_status_, #expr, __FILE__, __LINE__); \
    }                                                                                                \
  } while (false)

// After a <<<...>>> launch: a bad launch configuration is reported by cudaGetLastError, not by the launch itself.
#define MOESIM_CUDA_CHECK_LAUNCH() MOESIM_CUDA_CHECK(cudaGetLastError())
