// Built instead of kernels/cuda/ when CMake found no CUDA compiler (or MOESIM_CUDA=OFF): the CUDA backend's entry
// points exist, and say why there is no CUDA backend.
#include <memory>
#include <stdexcept>

#include "kernels/backend.hpp"
#include "kernels/config.hpp"

static_assert(MOESIM_HAVE_CUDA == 0, "kernels/cuda_stub.cpp is built only without CUDA");

namespace moesim::kernels {

std::unique_ptr<Backend> make_cuda_backend(int /*device*/) {
  throw std::runtime_error("moesim was built without CUDA");
}

bool has_cuda_backend() {
  return false;
}

}  // namespace moesim::kernels
