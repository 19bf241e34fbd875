// Seeded random inputs for the harness: SplitMix64 streams (kernels/ depends on nothing else of moesim, so it does
// not share common/rng.hpp), identical on every platform, unlike std:: distributions.
#pragma once

#include <cstdint>
#include <string>

namespace moesim::kernels::harness {

class Rng {
 public:
  // A stream per (seed, name): the same op on the same shape draws the same inputs on every backend and run.
  Rng(std::uint64_t seed, const std::string& stream) : state_(seed) {
    for (char c : stream) state_ = mix(state_ ^ static_cast<unsigned char>(c));
  }

  std::uint64_t next() { return mix(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in (0, 1): never 0, so that log() of it is finite.
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

 private:
  static std::uint64_t mix(std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }

  std::uint64_t state_;
};

}  // namespace moesim::kernels::harness
