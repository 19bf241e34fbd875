// Permute: the T k routed copies (copy c = t k + j goes to expert[c]) become expert-contiguous rows, built from CUB
// primitives and four small kernels (MegaBlocks' split: histogram, sort, scan, gather/scatter). N = T k.
//
// 1. routed[e] = DeviceHistogram::HistogramEven over expert[0, N) with E unit-wide bins [e, e + 1).
// 2. A stable DeviceRadixSort of (key = expert[c], value = c) over the values 0..N-1 in order: sorted_expert[p],
//    sorted_copy[p]. Stability keeps equal experts in copy order, so expert e's copies sit at positions
//    [first[e], first[e] + routed[e]) ordered by copy index, where first = exclusive scan of routed.
// 3. is_kept[p] (kernel mark_kept, one thread per position):
//      dropless (capacity <= 0): 1;
//      kDropPosition: rank p - first[e] < C, i.e. the expert's first C copies in copy order;
//      kDropScore: a second stable radix sort on the 64-bit key (expert, ~order(weight)) (expert ascending, weight
//        descending, copy ascending among equal weights by stability) gives each copy its score rank within its
//        expert; is_kept_copy[c] = rank < C (mark_kept_by_score), then is_kept[p] = is_kept_copy[sorted_copy[p]].
// 4. row_at[p] = DeviceScan::ExclusiveSum(is_kept). A kept copy's row is row_at[p]: the kept copies of experts
//    before e come first (they are the kept ones before first[e]), then e's kept copies in copy order. That is
//    exactly the header's layout, and row_at[first[e]] = offsets[e].
// 5. offsets = ExclusiveSum over E + 1 of kept[e] = min(routed[e], C) (or routed[e]), with kept[E] = 0.
// 6. write_maps, one thread per position p: row_of_copy[sorted_copy[p]] = row_at[p] or -1; token_of_row[row_at[p]]
//    = sorted_copy[p] / topk for kept ones. sorted_copy is a permutation, so each copy and each row is written by
//    exactly one thread; token_of_row is set to -1 (memset 0xff) beforehand for the rows past the kept ones.
// 7. gather_rows: one block per row r in [0, N) (grid-stride beyond 2^20 blocks); a row with token_of_row[r] < 0 is
//    left untouched; otherwise the block copies the token's H BF16 values, 16 bytes (8 values) per thread per step
//    when H % 8 == 0 and both buffers are 16-byte aligned, 2 bytes otherwise. Consecutive threads touch consecutive
//    words, so loads and stores are coalesced.
//
// Expert ids are preconditions (in [0, E)); an id outside it yields meaningless rows but no access out of bounds:
// every kernel that indexes by expert checks the range first.
#include <algorithm>
#include <bit>
#include <cub/device/device_histogram.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "kernels/cuda/common.cuh"

namespace moesim::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kGatherMaxThreads = 256;
constexpr unsigned int kMaxGatherBlocks = 1U << 20;

__global__ void iota_kernel(std::int32_t* out, int n) {
  const long long i = global_thread_index();
  if (i < n) out[i] = static_cast<std::int32_t>(i);
}

// extended_routed[e] = routed[e] and kept[e] = the expert's kept count, for e < E; both 0 at e = E, so that an
// exclusive scan over E + 1 entries also yields the total.
__global__ void kept_counts_kernel(const std::int32_t* routed, int num_experts, long long capacity,
                                   std::int32_t* extended_routed, std::int32_t* kept) {
  const long long e = global_thread_index();
  if (e > num_experts) return;
  const std::int32_t count = e < num_experts ? routed[e] : 0;
  extended_routed[e] = count;
  kept[e] = capacity > 0 && count > capacity ? static_cast<std::int32_t>(capacity) : count;
}

__global__ void mark_kept_kernel(const std::uint32_t* sorted_expert, const std::int32_t* first, int n, int num_experts,
                                 long long capacity, std::int32_t* is_kept) {
  const long long p = global_thread_index();
  if (p >= n) return;
  const std::uint32_t e = sorted_expert[p];
  if (e >= static_cast<std::uint32_t>(num_experts)) {
    is_kept[p] = 0;
    return;
  }
  is_kept[p] = capacity <= 0 || p - first[e] < capacity ? 1 : 0;
}

// A float's bits mapped to an unsigned integer of the same order. -0 is folded onto +0 (they compare equal) and NaN
// onto -inf (the reference ranks NaN weights below every number, tied with -inf).
__device__ __forceinline__ std::uint32_t ordered_bits(float value) {
  const std::uint32_t u = value == 0.0F ? 0U : isnan(value) ? __float_as_uint(-INFINITY) : __float_as_uint(value);
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

// Key for the drop-score sort: expert in the high word (ascending), weight descending in the low word.
__global__ void score_keys_kernel(const std::int32_t* expert, const float* weight, int n, std::uint64_t* keys) {
  const long long c = global_thread_index();
  if (c >= n) return;
  keys[c] = (std::uint64_t{static_cast<std::uint32_t>(expert[c])} << 32) | ~ordered_bits(weight[c]);
}

// Position q of the score-sorted order holds expert e's q - first[e]'th best copy.
__global__ void mark_kept_by_score_kernel(const std::uint64_t* sorted_keys, const std::int32_t* sorted_copy,
                                          const std::int32_t* first, int n, int num_experts, long long capacity,
                                          std::int32_t* is_kept_copy) {
  const long long q = global_thread_index();
  if (q >= n) return;
  const std::uint64_t e = sorted_keys[q] >> 32;
  const bool is_kept = e < static_cast<std::uint64_t>(num_experts) && q - first[e] < capacity;
  is_kept_copy[sorted_copy[q]] = is_kept ? 1 : 0;
}

__global__ void gather_kept_kernel(const std::int32_t* sorted_copy, const std::int32_t* is_kept_copy, int n,
                                   std::int32_t* is_kept) {
  const long long p = global_thread_index();
  if (p < n) is_kept[p] = is_kept_copy[sorted_copy[p]];
}

__global__ void write_maps_kernel(const std::int32_t* sorted_copy, const std::int32_t* is_kept,
                                  const std::int32_t* row_at, int n, int topk, std::int32_t* row_of_copy,
                                  std::int32_t* token_of_row) {
  const long long p = global_thread_index();
  if (p >= n) return;
  const std::int32_t c = sorted_copy[p];
  if (is_kept[p] != 0) {
    const std::int32_t row = row_at[p];
    row_of_copy[c] = row;
    token_of_row[row] = c / topk;
  } else {
    row_of_copy[c] = -1;
  }
}

// Word is uint4 (8 BF16 values) or unsigned short (1); words_per_row = hidden * 2 / sizeof(Word).
template <typename Word>
__global__ void __launch_bounds__(kGatherMaxThreads)
    gather_rows_kernel(const Word* x, const std::int32_t* token_of_row, int num_rows, long long words_per_row,
                       Word* permuted) {
  for (long long row = blockIdx.x; row < num_rows; row += gridDim.x) {
    const std::int32_t token = token_of_row[row];
    if (token < 0) continue;
    const Word* src = x + token * words_per_row;
    Word* dst = permuted + row * words_per_row;
    for (long long i = threadIdx.x; i < words_per_row; i += blockDim.x) dst[i] = src[i];
  }
}

int key_bits(int num_experts) {  // radix bits that hold 0..E-1 (at least one: CUB wants begin_bit < end_bit)
  return std::max(1, static_cast<int>(std::bit_width(static_cast<unsigned int>(num_experts - 1))));
}

}  // namespace

void run_permute(const Context& ctx, const PermuteArgs& args) {
  require_int32("permute", "tokens x topk", args.tokens * args.topk);
  require_int32("permute", "hidden", args.hidden);
  const int n = static_cast<int>(args.tokens * args.topk);
  const int num_experts = args.experts;
  const long long capacity = args.capacity > 0 ? static_cast<long long>(args.capacity) : 0;
  const bool is_by_score = capacity > 0 && args.policy == DropPolicy::kDropScore;
  cudaStream_t stream = ctx.stream;

  if (n == 0) {
    MOESIM_CUDA_CHECK(cudaMemsetAsync(args.routed, 0, sizeof(std::int32_t) * num_experts, stream));
    MOESIM_CUDA_CHECK(cudaMemsetAsync(args.offsets, 0, sizeof(std::int32_t) * (num_experts + 1), stream));
    return;
  }

  const int bits = key_bits(num_experts);
  const auto* expert_keys = reinterpret_cast<const std::uint32_t*>(args.expert);

  // Scratch sizes: CUB asks for its temporary storage with null pointers; one buffer serves every CUB call.
  std::size_t cub_bytes = 0;
  std::size_t bytes = 0;
  MOESIM_CUDA_CHECK(cub::DeviceHistogram::HistogramEven(nullptr, bytes, args.expert, args.routed, num_experts + 1, 0,
                                                        num_experts, n, stream));
  cub_bytes = std::max(cub_bytes, bytes);
  MOESIM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, expert_keys, static_cast<std::uint32_t*>(nullptr),
                                                    static_cast<const std::int32_t*>(nullptr),
                                                    static_cast<std::int32_t*>(nullptr), n, 0, bits, stream));
  cub_bytes = std::max(cub_bytes, bytes);
  MOESIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, static_cast<const std::int32_t*>(nullptr),
                                                  static_cast<std::int32_t*>(nullptr), n, stream));
  cub_bytes = std::max(cub_bytes, bytes);
  MOESIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, static_cast<const std::int32_t*>(nullptr),
                                                  static_cast<std::int32_t*>(nullptr), num_experts + 1, stream));
  cub_bytes = std::max(cub_bytes, bytes);
  if (is_by_score) {
    MOESIM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        nullptr, bytes, static_cast<const std::uint64_t*>(nullptr), static_cast<std::uint64_t*>(nullptr),
        static_cast<const std::int32_t*>(nullptr), static_cast<std::int32_t*>(nullptr), n, 0, 32 + bits, stream));
    cub_bytes = std::max(cub_bytes, bytes);
  }

  const std::size_t n_ints = sizeof(std::int32_t) * static_cast<std::size_t>(n);
  const std::size_t e_ints = sizeof(std::int32_t) * (static_cast<std::size_t>(num_experts) + 1);
  WorkspaceLayout layout;
  const std::size_t at_cub = layout.add(cub_bytes);
  const std::size_t at_copy_index = layout.add(n_ints);
  const std::size_t at_sorted_expert = layout.add(n_ints);
  const std::size_t at_sorted_copy = layout.add(n_ints);
  const std::size_t at_is_kept = layout.add(n_ints);
  const std::size_t at_row_at = layout.add(n_ints);
  const std::size_t at_extended_routed = layout.add(e_ints);
  const std::size_t at_first = layout.add(e_ints);
  const std::size_t at_kept = layout.add(e_ints);
  const std::size_t at_keys = layout.add(is_by_score ? 2 * sizeof(std::uint64_t) * n : 0);
  const std::size_t at_score_copy = layout.add(is_by_score ? n_ints : 0);
  const std::size_t at_is_kept_copy = layout.add(is_by_score ? n_ints : 0);
  void* base = ctx.workspace->get(layout.total(), stream);
  void* cub_storage = WorkspaceLayout::at<void>(base, at_cub);
  auto* copy_index = WorkspaceLayout::at<std::int32_t>(base, at_copy_index);
  auto* sorted_expert = WorkspaceLayout::at<std::uint32_t>(base, at_sorted_expert);
  auto* sorted_copy = WorkspaceLayout::at<std::int32_t>(base, at_sorted_copy);
  auto* is_kept = WorkspaceLayout::at<std::int32_t>(base, at_is_kept);
  auto* row_at = WorkspaceLayout::at<std::int32_t>(base, at_row_at);
  auto* extended_routed = WorkspaceLayout::at<std::int32_t>(base, at_extended_routed);
  auto* first = WorkspaceLayout::at<std::int32_t>(base, at_first);
  auto* kept = WorkspaceLayout::at<std::int32_t>(base, at_kept);

  const unsigned int n_blocks = ceil_div(n, kThreads);
  const unsigned int e_blocks = ceil_div(num_experts + 1, kThreads);

  // 1. Histogram.
  bytes = cub_bytes;
  MOESIM_CUDA_CHECK(cub::DeviceHistogram::HistogramEven(cub_storage, bytes, args.expert, args.routed, num_experts + 1,
                                                        0, num_experts, n, stream));
  // 2. Stable sort of the copies by expert.
  iota_kernel<<<n_blocks, kThreads, 0, stream>>>(copy_index, n);
  MOESIM_CUDA_CHECK_LAUNCH();
  bytes = cub_bytes;
  MOESIM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_storage, bytes, expert_keys, sorted_expert, copy_index,
                                                    sorted_copy, n, 0, bits, stream));
  // first[] and offsets[]: exclusive scans of the routed and kept counts.
  kept_counts_kernel<<<e_blocks, kThreads, 0, stream>>>(args.routed, num_experts, capacity, extended_routed, kept);
  MOESIM_CUDA_CHECK_LAUNCH();
  bytes = cub_bytes;
  MOESIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(cub_storage, bytes, extended_routed, first, num_experts + 1, stream));
  bytes = cub_bytes;
  MOESIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(cub_storage, bytes, kept, args.offsets, num_experts + 1, stream));

  // 3. Which copies stay.
  if (is_by_score) {
    auto* keys = WorkspaceLayout::at<std::uint64_t>(base, at_keys);
    std::uint64_t* sorted_keys = keys + n;
    auto* score_copy = WorkspaceLayout::at<std::int32_t>(base, at_score_copy);
    auto* is_kept_copy = WorkspaceLayout::at<std::int32_t>(base, at_is_kept_copy);
    score_keys_kernel<<<n_blocks, kThreads, 0, stream>>>(args.expert, args.weight, n, keys);
    MOESIM_CUDA_CHECK_LAUNCH();
    bytes = cub_bytes;
    MOESIM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_storage, bytes, keys, sorted_keys, copy_index, score_copy, n,
                                                      0, 32 + bits, stream));
    mark_kept_by_score_kernel<<<n_blocks, kThreads, 0, stream>>>(sorted_keys, score_copy, first, n, num_experts,
                                                                 capacity, is_kept_copy);
    MOESIM_CUDA_CHECK_LAUNCH();
    gather_kept_kernel<<<n_blocks, kThreads, 0, stream>>>(sorted_copy, is_kept_copy, n, is_kept);
    MOESIM_CUDA_CHECK_LAUNCH();
  } else {
    mark_kept_kernel<<<n_blocks, kThreads, 0, stream>>>(sorted_expert, first, n, num_experts, capacity, is_kept);
    MOESIM_CUDA_CHECK_LAUNCH();
  }

  // 4 and 6. Rows of the kept copies, and the two maps.
  bytes = cub_bytes;
  MOESIM_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(cub_storage, bytes, is_kept, row_at, n, stream));
  MOESIM_CUDA_CHECK(cudaMemsetAsync(args.token_of_row, 0xff, n_ints, stream));
  write_maps_kernel<<<n_blocks, kThreads, 0, stream>>>(sorted_copy, is_kept, row_at, n, args.topk, args.row_of_copy,
                                                       args.token_of_row);
  MOESIM_CUDA_CHECK_LAUNCH();

  // 7. The rows themselves.
  const unsigned int row_blocks = std::min(static_cast<unsigned int>(n), kMaxGatherBlocks);
  const bool is_vector = args.hidden % 8 == 0 && is_aligned(args.x, 16) && is_aligned(args.permuted, 16);
  if (is_vector) {
    const long long words = args.hidden / 8;
    gather_rows_kernel<uint4><<<row_blocks, block_threads(words, kGatherMaxThreads), 0, stream>>>(
        reinterpret_cast<const uint4*>(args.x), args.token_of_row, n, words, reinterpret_cast<uint4*>(args.permuted));
  } else {
    const long long words = args.hidden;
    gather_rows_kernel<unsigned short><<<row_blocks, block_threads(words, kGatherMaxThreads), 0, stream>>>(
        reinterpret_cast<const unsigned short*>(args.x), args.token_of_row, n, words,
        reinterpret_cast<unsigned short*>(args.permuted));
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::cuda
