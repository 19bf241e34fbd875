// The MoE kernels moesim runs itself, behind one plain C++ interface with two backends: a CPU reference (obviously
// correct loops, also what the CPU backend times) and CUDA (kernels/cuda/, built only when CMake finds CUDA).
// Nothing here includes a CUDA header; kernels/ depends on nothing else of moesim.
//
// Theory of operation. A Backend owns its memory space: alloc() returns host memory on the CPU backend and device
// memory on the CUDA one, and every op takes pointers into that space, so the same call runs on either backend
// (CUTLASS's reference/host and reference/device GEMMs share their parameters the same way). Ops are enqueued on
// the backend's stream; synchronize() waits for them. Arguments are checked by check_args() before launch, never
// inside a kernel, and a bad argument throws std::invalid_argument naming the field.
//
// The MoE layer, for T tokens of hidden size H, E experts, top-k, expert FFN width F:
//   router      logits = x W_r (T x H by H x E, BF16 in, FP32 accumulate); scores = softmax or sigmoid of the
//               logits (FP32); the top-k experts per token by score (+ bias, for selection only), optionally
//               group-limited (experts in G groups of E / G; a token keeps its best g groups, each ranked by the
//               sum of its two best biased scores (its one score when E / G = 1), DeepSeek-V3; ties to the lower
//               group index), ties to the lower expert index; weights = the chosen scores (without the bias),
//               normalised to sum 1 per token when asked (in FP32, in the order of the choices).
//   permute     per-expert counts of the T k copies (histogram), capacity per expert (C <= 0: dropless) with a
//               drop policy, offsets of the kept copies (exclusive scan), and the scatter of token rows into an
//               expert-contiguous buffer. Within an expert, kept rows are ordered by copy index t k + j, so the
//               result is unique and pure data movement is compared exactly.
//   grouped_ffn SwiGLU experts over the uneven row counts: h = bf16(silu(x W_g) * (x W_u)) and y = bf16(h W_d),
//               every product accumulated in FP32 (x, W, h and y in BF16).
//   dense_gemm  C = A B (BF16 in, FP32 accumulate, BF16 out): the baseline of equal FLOPs.
//   unpermute   out[t] = bf16(sum over j of w[t, j] x y[row(t, j)]) in FP32, dropped copies (row -1) adding 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/bf16.hpp"  // Bf16, to_bf16, to_float

namespace moesim::kernels {

enum class ScoreFunction { kSoftmax, kSigmoid };
enum class DropPolicy {
  kDropPosition,  // an expert keeps its first C copies in copy order (t k + j): later tokens drop
  kDropScore,     // an expert keeps its C copies of highest router weight (ties: lower copy index)
};

struct RouterArgs {
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  int experts = 0;
  int topk = 0;
  ScoreFunction score = ScoreFunction::kSoftmax;
  int groups = 0;       // 0 or 1: no group limit; else E / groups experts per group
  int group_limit = 0;  // with groups > 1: each token's experts from its best group_limit groups
  bool normalize = true;
  const Bf16* x = nullptr;         // [tokens x hidden]
  const Bf16* w = nullptr;         // [hidden x experts]
  const float* bias = nullptr;     // [experts] added to the scores for selection only; null: none
  float* scores = nullptr;         // out [tokens x experts]
  std::int32_t* expert = nullptr;  // out [tokens x topk], best first
  float* weight = nullptr;         // out [tokens x topk]
};

struct PermuteArgs {
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  int experts = 0;
  int topk = 0;
  std::int64_t capacity = 0;  // per expert; <= 0: dropless
  DropPolicy policy = DropPolicy::kDropPosition;
  const std::int32_t* expert = nullptr;  // [tokens x topk], each in [0, experts)
  const float* weight = nullptr;         // [tokens x topk], read by kDropScore
  const Bf16* x = nullptr;               // [tokens x hidden]
  std::int32_t* routed = nullptr;        // out [experts]: copies routed to each expert
  std::int32_t* offsets = nullptr;       // out [experts + 1]: exclusive scan of the kept counts
  std::int32_t* row_of_copy = nullptr;   // out [tokens x topk]: the copy's row in `permuted`, -1 if dropped
  std::int32_t* token_of_row = nullptr;  // out [tokens x topk]: the source token of each row (rows >= kept: -1)
  Bf16* permuted = nullptr;              // out [tokens x topk x hidden] (rows >= kept untouched)
};

struct GroupedFfnArgs {
  int experts = 0;
  std::int64_t hidden = 0;
  std::int64_t ffn = 0;
  const std::int32_t* offsets = nullptr;       // [experts + 1], as permute writes them (device memory on CUDA)
  const std::int32_t* host_offsets = nullptr;  // the same, in host memory: launch shapes come from it
  const Bf16* x = nullptr;                     // [offsets[experts] x hidden]
  const Bf16* w_gate = nullptr;                // [experts x hidden x ffn]
  const Bf16* w_up = nullptr;                  // [experts x hidden x ffn]
  const Bf16* w_down = nullptr;                // [experts x ffn x hidden]
  Bf16* h = nullptr;                           // workspace/out [offsets[experts] x ffn]
  Bf16* y = nullptr;                           // out [offsets[experts] x hidden]
};

struct GemmArgs {
  std::int64_t m = 0;
  std::int64_t n = 0;
  std::int64_t k = 0;
  const Bf16* a = nullptr;  // [m x k], row-major
  const Bf16* b = nullptr;  // [k x n], row-major
  Bf16* c = nullptr;        // out [m x n]
};

struct UnpermuteArgs {
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  int topk = 0;
  const Bf16* y = nullptr;                    // [rows x hidden], the experts' outputs in permuted order
  const std::int32_t* row_of_copy = nullptr;  // [tokens x topk], -1: dropped
  const float* weight = nullptr;              // [tokens x topk]
  Bf16* out = nullptr;                        // out [tokens x hidden]
};

// Throw std::invalid_argument naming the first bad field ("router: topk: must be in [1, experts = 8], got 9").
// Pointers may be null only where the array they point to is empty (for example every token array when
// tokens = 0); GroupedFfnArgs::host_offsets is read (it must start at 0 and never decrease) and must be given.
void check_args(const RouterArgs& a);
void check_args(const PermuteArgs& a);
void check_args(const GroupedFfnArgs& a);
void check_args(const GemmArgs& a);
void check_args(const UnpermuteArgs& a);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;         // "cpu" | "cuda"
  virtual std::string device_name() const = 0;  // the CPU model or the GPU's name
  virtual int compute_units() const = 0;        // threads (CPU) or SMs (CUDA)
  // The last-level cache the bench must overflow to time cold inputs: the CPU's LLC (sysfs), the GPU's L2.
  // 0: unknown (the bench then assumes 32 MiB).
  virtual std::size_t cache_bytes() const { return 0; }

  // Memory in the backend's space. alloc(0) may return null; release(nullptr) does nothing.
  virtual void* alloc(std::size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void upload(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void fill(void* dst, unsigned char byte, std::size_t bytes) = 0;  // poisoning before a run
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;     // within the space (copy bandwidth)
  virtual void synchronize() = 0;

  // Elapsed time of what was enqueued between start_timer() and stop_timer(), in milliseconds (CUDA events on
  // the GPU; a steady clock around a synchronised region on the CPU).
  virtual void start_timer() = 0;
  virtual double stop_timer() = 0;

  virtual void router(const RouterArgs& args) = 0;
  virtual void permute(const PermuteArgs& args) = 0;
  virtual void grouped_ffn(const GroupedFfnArgs& args) = 0;
  virtual void dense_gemm(const GemmArgs& args) = 0;
  virtual void unpermute(const UnpermuteArgs& args) = 0;
};

// The CPU reference backend on `threads` threads (0: the hardware's).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);
// The CUDA backend on GPU `device`. Throws std::runtime_error with the CUDA error when moesim was built without
// CUDA or no usable GPU is present.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);
// Whether this build has the CUDA backend (a GPU may still be missing at run time).
bool has_cuda_backend();

}  // namespace moesim::kernels
