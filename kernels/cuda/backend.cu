// The CUDA backend: one GPU, one non-blocking stream, one cuBLAS handle bound to it, and a grow-only workspace.
// Every op is validated on the host (check_args, then the CUDA-specific limits in each run_*) before anything is
// enqueued; every CUDA and cuBLAS call is checked. Ops, fill and copy are asynchronous on the stream; upload and
// download return once the copy is done, so the host buffer may be reused or read at once; the timer is a pair of
// CUDA events on the stream.
#include <memory>
#include <string>

#include "kernels/backend.hpp"
#include "kernels/cuda/common.cuh"

namespace moesim::kernels {
namespace cuda {
namespace {

// The CUDA handles of one backend, released by their own destructor: a member, so that a constructor of
// CudaBackend that throws half-way still releases what it had created. Errors are ignored here: a destructor must
// not throw, and a failed GPU has nothing left to release anyway.
struct Handles {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  cublasHandle_t blas = nullptr;

  Handles() = default;
  Handles(const Handles&) = delete;
  Handles& operator=(const Handles&) = delete;
  ~Handles() {
    cudaSetDevice(device);
    if (stream != nullptr) cudaStreamSynchronize(stream);
    if (blas != nullptr) cublasDestroy(blas);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (start != nullptr) cudaEventDestroy(start);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
      cudaGetLastError();  // clear it: the process may go on without the GPU
      throw std::runtime_error(std::string("cuda: no usable GPU: cudaGetDeviceCount: ") + cudaGetErrorName(error) +
                               ": " + cudaGetErrorString(error));
    }
    if (count == 0) throw std::runtime_error("cuda: no usable GPU: cudaGetDeviceCount found 0 devices");
    if (device < 0 || device >= count) {
      throw std::runtime_error("cuda: device " + std::to_string(device) + " does not exist: " + std::to_string(count) +
                               " GPU(s), numbered from 0");
    }
    MOESIM_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp props{};
    MOESIM_CUDA_CHECK(cudaGetDeviceProperties(&props, device_));
    device_name_ = props.name;
    compute_units_ = props.multiProcessorCount;
    cache_bytes_ = static_cast<std::size_t>(props.l2CacheSize);
    handles_.device = device_;
    MOESIM_CUDA_CHECK(cudaStreamCreateWithFlags(&handles_.stream, cudaStreamNonBlocking));
    MOESIM_CUDA_CHECK(cudaEventCreate(&handles_.start));
    MOESIM_CUDA_CHECK(cudaEventCreate(&handles_.stop));
    MOESIM_CUBLAS_CHECK(cublasCreate(&handles_.blas));
    MOESIM_CUBLAS_CHECK(cublasSetStream(handles_.blas, handles_.stream));
    // FP32 accumulation all the way: without this, a BF16-output GEMM may reduce split-k partial sums in BF16.
    MOESIM_CUBLAS_CHECK(cublasSetMathMode(
        handles_.blas,
        static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    stream_ = handles_.stream;
    context_.stream = handles_.stream;
    context_.blas = handles_.blas;
    context_.workspace = &workspace_;
    context_.max_shared_bytes_optin = props.sharedMemPerBlockOptin;
  }

  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  // The workspace (declared last) is freed first, then the handles; the stream is drained before either.
  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
  }

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }
  int compute_units() const override { return compute_units_; }
  std::size_t cache_bytes() const override { return cache_bytes_; }

  void* alloc(std::size_t bytes) override {
    if (bytes == 0) return nullptr;
    activate();
    void* p = nullptr;
    MOESIM_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  }

  void release(void* p) override {
    if (p == nullptr) return;
    activate();
    MOESIM_CUDA_CHECK(cudaFree(p));
  }

  void upload(void* dst, const void* host_src, std::size_t bytes) override {
    if (bytes == 0) return;
    activate();
    MOESIM_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    MOESIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void download(void* host_dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    activate();
    MOESIM_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    MOESIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void fill(void* dst, unsigned char byte, std::size_t bytes) override {
    if (bytes == 0) return;
    activate();
    MOESIM_CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, stream_));
  }

  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    activate();
    MOESIM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }

  void synchronize() override {
    activate();
    MOESIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void start_timer() override {
    activate();
    MOESIM_CUDA_CHECK(cudaEventRecord(handles_.start, stream_));
  }

  double stop_timer() override {
    activate();
    MOESIM_CUDA_CHECK(cudaEventRecord(handles_.stop, stream_));
    MOESIM_CUDA_CHECK(cudaEventSynchronize(handles_.stop));
    float ms = 0.0F;
    MOESIM_CUDA_CHECK(cudaEventElapsedTime(&ms, handles_.start, handles_.stop));
    return ms;
  }

  void router(const RouterArgs& args) override {
    check_args(args);
    activate();
    run_router(context_, args);
  }

  void permute(const PermuteArgs& args) override {
    check_args(args);
    activate();
    run_permute(context_, args);
  }

  void grouped_ffn(const GroupedFfnArgs& args) override {
    check_args(args);
    activate();
    run_grouped_ffn(context_, args);
  }

  void dense_gemm(const GemmArgs& args) override {
    check_args(args);
    activate();
    run_dense_gemm(context_, args);
  }

  void unpermute(const UnpermuteArgs& args) override {
    check_args(args);
    activate();
    run_unpermute(context_, args);
  }

 private:
  // The calling thread's current device may have been changed by other code (or another backend) since the last
  // call; the stream and handle belong to device_.
  void activate() const { MOESIM_CUDA_CHECK(cudaSetDevice(device_)); }

  int device_ = 0;
  std::string device_name_;
  int compute_units_ = 0;
  std::size_t cache_bytes_ = 0;
  Handles handles_;
  cudaStream_t stream_ = nullptr;  // handles_.stream, the one every call enqueues on
  Context context_;
  Workspace workspace_;
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(int device) {
  return std::make_unique<cuda::CudaBackend>(device);
}

bool has_cuda_backend() {
  return true;
}

}  // namespace moesim::kernels
