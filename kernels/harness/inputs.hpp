// What the harness feeds the kernels: random BF16 tensors, sampled routings with a chosen skew, and arrays in the
// backend's memory space.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/harness/random.hpp"

namespace moesim::kernels::harness {

// How tokens spread over experts. Each token's top-k is a sample without replacement by expert popularity (the
// top-k of log popularity plus Gumbel noise): uniform; Zipf (popularity of expert e proportional to
// 1 / (e + 1)^alpha); all_to_one (every token picks experts 0..topk-1, so top-1 sends everything to expert 0);
// one_empty (uniform over all experts but the last, which receives nothing; needs topk < experts).
struct Skew {
  enum class Kind { kUniform, kZipf, kAllToOne, kOneEmpty };
  Kind kind = Kind::kUniform;
  double alpha = 0;  // Zipf exponent

  std::string name() const;  // "uniform", "zipf:1.2", "all_to_one", "one_empty"
};
// Parses Skew::name()'s forms; throws std::invalid_argument otherwise.
Skew parse_skew(const std::string& text);

struct Routing {
  std::vector<std::int32_t> expert;  // [tokens x topk], distinct within a token
  std::vector<float> weight;         // [tokens x topk], in (0, 1]; from {0.25, 0.5, 0.75} when quantised (ties)
};
Routing sample_routing(std::int64_t tokens, int experts, int topk, const Skew& skew, bool is_quantized, Rng& rng);

// count values uniform in [-scale, scale), rounded to BF16.
std::vector<Bf16> random_bf16(std::size_t count, double scale, Rng& rng);

// An array of T in a backend's memory, released with it. Move-only.
template <typename T>
class DeviceArray {
 public:
  DeviceArray(Backend& backend, std::size_t count)
      : backend_(&backend), count_(count), data_(static_cast<T*>(backend.alloc(count * sizeof(T)))) {}
  DeviceArray(Backend& backend, const std::vector<T>& host) : DeviceArray(backend, host.size()) { upload(host); }
  ~DeviceArray() {
    if (backend_ != nullptr) backend_->release(data_);
  }
  DeviceArray(DeviceArray&& other) noexcept
      : backend_(std::exchange(other.backend_, nullptr)), count_(other.count_), data_(other.data_) {}
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray& operator=(DeviceArray&&) = delete;

  T* get() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

  void upload(const std::vector<T>& host) {
    backend_->upload(data_, host.data(), std::min(host.size(), count_) * sizeof(T));
  }
  // The first `count` elements (all by default) back in host memory.
  std::vector<T> download(std::size_t count = static_cast<std::size_t>(-1)) const {
    std::vector<T> host(std::min(count, count_));
    backend_->download(host.data(), data_, host.size() * sizeof(T));
    return host;
  }
  // Poison before a run, so that an element the op fails to write cannot pass by accident.
  void fill(unsigned char byte) { backend_->fill(data_, byte, bytes()); }

 private:
  Backend* backend_;
  std::size_t count_;
  T* data_;
};

// Poison bytes: 0xff makes every FP32 and BF16 element a NaN, which no comparison accepts; 0xa5 makes every int32
// element 0xa5a5a5a5 < 0, which is neither a valid index nor the -1 of a dropped copy.
constexpr unsigned char kPoisonFloat = 0xff;
constexpr unsigned char kPoisonInt = 0xa5;

}  // namespace moesim::kernels::harness
