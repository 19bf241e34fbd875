// Unpermute (combine): out[t] = bf16(sum over j of w[t, j] y[row_of_copy[t k + j]]), dropped copies (row -1)
// adding nothing.
//
// unpermute_kernel: grid = T blocks (block t writes only out[t], so blocks never race); the block's threads split
// the H columns, 8 BF16 values (one 16-byte load per selected row) per thread per step when H % 8 == 0 and y and
// out are 16-byte aligned, one value otherwise; consecutive threads read consecutive words of a row, so every row
// read is coalesced. Each column's sum is FP32 over j = 0..k-1 in order, as a plain loop would add them, and
// __fmul_rn / __fadd_rn keep the compiler from fusing them into an FMA, so a CPU reference that adds w y in the
// same order in FP32 gets the same bits.
#include "kernels/cuda/common.cuh"

namespace moesim::kernels::cuda {
namespace {

constexpr int kMaxThreads = 256;

template <int kValues>
struct Vector;  // kValues BF16 values moved as one word
template <>
struct Vector<8> {
  using Word = uint4;
};
template <>
struct Vector<1> {
  using Word = unsigned short;
};

template <int kValues>
__device__ __forceinline__ void unpack(const typename Vector<kValues>::Word& word, float (&values)[kValues]) {
  if constexpr (kValues == 8) {
    const unsigned int parts[4] = {word.x, word.y, word.z, word.w};
    for (int i = 0; i < 4; ++i) {
      values[2 * i] = bf16_to_float(static_cast<std::uint16_t>(parts[i] & 0xffffu));
      values[2 * i + 1] = bf16_to_float(static_cast<std::uint16_t>(parts[i] >> 16));
    }
  } else {
    values[0] = bf16_to_float(word);
  }
}

template <int kValues>
__device__ __forceinline__ typename Vector<kValues>::Word pack(const float (&values)[kValues]) {
  if constexpr (kValues == 8) {
    unsigned int parts[4];
    for (int i = 0; i < 4; ++i) {
      parts[i] = static_cast<unsigned int>(float_to_bf16(values[2 * i])) |
                 (static_cast<unsigned int>(float_to_bf16(values[2 * i + 1])) << 16);
    }
    return make_uint4(parts[0], parts[1], parts[2], parts[3]);
  } else {
    return float_to_bf16(values[0]);
  }
}

template <int kValues>
__global__ void __launch_bounds__(kMaxThreads)
    unpermute_kernel(const typename Vector<kValues>::Word* y, const std::int32_t* row_of_copy, const float* weight,
                     int topk, long long words_per_row, typename Vector<kValues>::Word* out) {
  using Word = typename Vector<kValues>::Word;
  const long long token = blockIdx.x;
  const std::int32_t* rows = row_of_copy + token * topk;
  const float* weights = weight + token * topk;
  for (long long i = threadIdx.x; i < words_per_row; i += blockDim.x) {
    float sum[kValues];
    for (int v = 0; v < kValues; ++v) sum[v] = 0.0F;
    for (int j = 0; j < topk; ++j) {
      const std::int32_t row = rows[j];
      if (row < 0) continue;
      const float w = weights[j];
      float values[kValues];
      unpack<kValues>(y[row * words_per_row + i], values);
      for (int v = 0; v < kValues; ++v) sum[v] = __fadd_rn(sum[v], __fmul_rn(w, values[v]));
    }
    out[token * words_per_row + i] = pack<kValues>(sum);
  }
}

}  // namespace

void run_unpermute(const Context& ctx, const UnpermuteArgs& args) {
  require_int32("unpermute", "tokens", args.tokens);
  require_int32("unpermute", "hidden", args.hidden);
  if (args.tokens == 0 || args.hidden == 0) return;
  const auto blocks = static_cast<unsigned int>(args.tokens);
  const bool is_vector = args.hidden % 8 == 0 && is_aligned(args.y, 16) && is_aligned(args.out, 16);
  if (is_vector) {
    const long long words = args.hidden / 8;
    unpermute_kernel<8><<<blocks, block_threads(words, kMaxThreads), 0, ctx.stream>>>(
        reinterpret_cast<const uint4*>(args.y), args.row_of_copy, args.weight, args.topk, words,
        reinterpret_cast<uint4*>(args.out));
  } else {
    const long long words = args.hidden;
    unpermute_kernel<1><<<blocks, block_threads(words, kMaxThreads), 0, ctx.stream>>>(
        reinterpret_cast<const unsigned short*>(args.y), args.row_of_copy, args.weight, args.topk, words,
        reinterpret_cast<unsigned short*>(args.out));
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::cuda
