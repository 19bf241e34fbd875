// The CPU backend: host memory, synchronous ops (kernels/cpu/ops.hpp) on a thread pool, a steady clock.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "kernels/backend.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace moesim::kernels {
namespace {

constexpr std::align_val_t kAlignment{64};  // a cache line; also what vector loads like

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads)
      : pool_(threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
        model_(cpu::cpu_model()),
        cache_bytes_(cpu::last_level_cache_bytes()) {}

  std::string name() const override { return "cpu"; }
  std::string device_name() const override { return model_; }
  int compute_units() const override { return pool_.threads(); }
  std::size_t cache_bytes() const override { return cache_bytes_; }

  void* alloc(std::size_t bytes) override { return bytes == 0 ? nullptr : ::operator new(bytes, kAlignment); }
  void release(void* p) override {
    if (p != nullptr) ::operator delete(p, kAlignment);
  }
  void upload(void* dst, const void* host_src, std::size_t bytes) override { copy_bytes(dst, host_src, bytes); }
  void download(void* host_dst, const void* src, std::size_t bytes) override { copy_bytes(host_dst, src, bytes); }
  void copy(void* dst, const void* src, std::size_t bytes) override { copy_bytes(dst, src, bytes); }
  void fill(void* dst, unsigned char byte, std::size_t bytes) override {
    if (bytes > 0) std::memset(dst, byte, bytes);
  }
  void synchronize() override {}  // every op has finished when it returns

  void start_timer() override { started_ = std::chrono::steady_clock::now(); }
  double stop_timer() override {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
  }

  void router(const RouterArgs& args) override { cpu::router(args, pool_); }
  void permute(const PermuteArgs& args) override { cpu::permute(args, pool_); }
  void grouped_ffn(const GroupedFfnArgs& args) override { cpu::grouped_ffn(args, pool_); }
  void dense_gemm(const GemmArgs& args) override { cpu::dense_gemm(args, pool_); }
  void unpermute(const UnpermuteArgs& args) override { cpu::unpermute(args, pool_); }

 private:
  static void copy_bytes(void* dst, const void* src, std::size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }

  cpu::ThreadPool pool_;
  std::string model_;
  std::size_t cache_bytes_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace moesim::kernels
