// Checked NCCL calls, as check.cuh checks CUDA ones: MOESIM_NCCL_CHECK throws std::runtime_error naming the file,
// the line, NCCL's description of the result and, when NCCL has one, its last error message ("kernels/cuda/
// nccl_alltoall.cu:140: nccl: invalid argument (run with NCCL_DEBUG=WARN for details): ... (in ncclSend(...))").
// Its own header because only nccl_alltoall.cu, built when CMake finds NCCL, may include nccl.h.
#pragma once

#include <nccl.h>

#include <stdexcept>
#include <string>

namespace moesim::kernels::cuda {

[[noreturn]] inline void throw_nccl_error(ncclResult_t result, const char* expr, const char* file, int line) {
  std::string message = std::string(file) + ":" + std::to_string(line) + ": nccl: " + ncclGetErrorString(result);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  // The communicator argument is unused by NCCL (documented); the message is the thread's last error, if any.
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') message += std::string(": ") + last;
#endif
  throw std::runtime_error(message + " (in " + expr + ")");
}

}  // namespace moesim::kernels::cuda

#define MOESIM_NCCL_CHECK(expr)                                                                  \
  do {                                                                                           \
    const ncclResult_t moesim_nccl_result_ = (expr);                                             \
    if (moesim_nccl_result_ != ncclSuccess) {                                                    \
      ::moesim::kernels::cuda::throw_nccl_error(moesim_nccl_result_, #expr, __FILE__, __LINE__); \
    }                                                                                            \
  } while (false)
