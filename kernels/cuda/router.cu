// The router: logits by cuBLAS, then one block per token for scores, (group-limited) top-k and weights.
//
// 1. logits[T x E] = x[T x H] W_r[H x E] with gemm_bf16 (BF16 in, FP32 accumulate and out), written straight into
//    args.scores, which the second kernel turns into scores in place.
// 2. router_select_kernel, grid = T blocks (block t owns token t and nothing else, so blocks never race), block =
//    min(256, E rounded up to a warp) threads; dynamic shared memory holds the token's E scores, E selection keys
//    (score + bias) and per-expert / per-group flags. Per token:
//    - scores: softmax (max, then exp(l - max), then divide by the sum; two block reductions) or sigmoid, in FP32;
//    - groups (groups > 1): group i's key is the sum of the two best selection keys among its E / G experts (its
//      one key when a group has one expert); group_limit rounds of a block argmax pick the best groups;
//    - top-k: topk rounds of a block argmax over the eligible experts (in a chosen group, not yet taken), best
//      first. The argmax orders by (key descending, index ascending), a total order on distinct indices, so every
//      round's winner is unique and ties go to the lower index whatever the reduction tree looks like;
//    - weights: the chosen scores (without bias), divided by their sum when normalising; one thread sums them in
//      rank order, as a plain loop would.
//    Every round ends in __syncthreads(), so the flags a round clears are seen by the next one.
//
// Against the references: the top-k decisions are exact functions of the scores, but cuBLAS sums the logits in its
// own order (tensor-core tiles) where the CPU backend sums in hidden order, and expf differs from the host's exp in
// the last bit, so scores agree to a few FP32 ulps, not bit for bit. Experts whose scores are that close may come out
// in the other order; the harness (kernels/harness/reference.cpp) marks such tokens as tied and checks only that
// their indices are valid and distinct. cuBLAS is used anyway because the router GEMM is what calibration times,
// and production routers run it on tensor cores.
#include <algorithm>
#include <cfloat>

#include "kernels/cuda/common.cuh"

namespace moesim::kernels::cuda {
namespace {

constexpr int kRouterMaxThreads = 256;

struct RouterParams {
  int experts = 0;
  int topk = 0;
  int groups = 1;       // 1: no group limit
  int group_limit = 1;  // groups kept per token when groups > 1
  bool is_softmax = true;
  bool normalize = true;
  const float* bias = nullptr;
  float* scores = nullptr;  // in: logits; out: scores
  std::int32_t* expert = nullptr;
  float* weight = nullptr;
};

// Dynamic shared memory of one block: floats first (score[E], key[E], group_key[G], chosen_weight[topk]), then
// bytes (is_eligible[E], is_group_open[G], is_group_chosen[G]).
std::size_t router_shared_bytes(int experts, int groups, int topk) {
  return sizeof(float) * (2 * static_cast<std::size_t>(experts) + groups + topk) + experts + 2 * std::size_t(groups);
}

// Whether candidate (av, ai) beats (bv, bi): larger value, then lower index; index -1 is "none" and loses.
__device__ __forceinline__ bool is_better(float av, int ai, float bv, int bi) {
  if (ai < 0) return false;
  if (bi < 0) return true;
  return av > bv || (av == bv && ai < bi);
}

// Shared scratch for the block reductions. Partials and results live in separate slots: a warp that races ahead
// into the next reduction writes only partials, which the previous reduction finished reading before its last
// barrier.
struct Scratch {
  float partial_value[32];
  int partial_index[32];
  float result_value;
  int result_index;
};

// The eligible index with the largest key (ties: lower index), or -1 if none; called by every thread of the block.
__device__ int block_argmax(const float* key, const unsigned char* is_eligible, int n, Scratch& s) {
  float best_value = 0.0F;
  int best_index = -1;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) {
    if (is_eligible[i] != 0 && is_better(key[i], i, best_value, best_index)) {
      best_value = key[i];
      best_index = i;
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_value = __shfl_down_sync(0xffffffffu, best_value, offset);
    const int other_index = __shfl_down_sync(0xffffffffu, best_index, offset);
    if (is_better(other_value, other_index, best_value, best_index)) {
      best_value = other_value;
      best_index = other_index;
    }
  }
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int num_warps = static_cast<int>(blockDim.x) / 32;
  if (lane == 0) {
    s.partial_value[warp] = best_value;
    s.partial_index[warp] = best_index;
  }
  __syncthreads();
  if (warp == 0) {
    best_value = lane < num_warps ? s.partial_value[lane] : 0.0F;
    best_index = lane < num_warps ? s.partial_index[lane] : -1;
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other_value = __shfl_down_sync(0xffffffffu, best_value, offset);
      const int other_index = __shfl_down_sync(0xffffffffu, best_index, offset);
      if (is_better(other_value, other_index, best_value, best_index)) {
        best_value = other_value;
        best_index = other_index;
      }
    }
    if (lane == 0) s.result_index = best_index;
  }
  __syncthreads();
  return s.result_index;
}

// Max (is_max) or sum of one value per thread, returned to every thread.
__device__ float block_reduce(float value, bool is_max, Scratch& s) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_down_sync(0xffffffffu, value, offset);
    value = is_max ? fmaxf(value, other) : value + other;
  }
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int num_warps = static_cast<int>(blockDim.x) / 32;
  if (lane == 0) s.partial_value[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < num_warps ? s.partial_value[lane] : (is_max ? -FLT_MAX : 0.0F);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_down_sync(0xffffffffu, value, offset);
      value = is_max ? fmaxf(value, other) : value + other;
    }
    if (lane == 0) s.result_value = value;
  }
  __syncthreads();
  return s.result_value;
}

__global__ void __launch_bounds__(kRouterMaxThreads) router_select_kernel(RouterParams p) {
  extern __shared__ float shared[];
  __shared__ Scratch scratch;
  const int num_experts = p.experts;
  const int num_groups = p.groups;
  const int tid = static_cast<int>(threadIdx.x);
  const int threads = static_cast<int>(blockDim.x);

  float* score = shared;
  float* key = score + num_experts;
  float* group_key = key + num_experts;
  float* chosen_weight = group_key + num_groups;
  unsigned char* is_eligible = reinterpret_cast<unsigned char*>(chosen_weight + p.topk);
  unsigned char* is_group_open = is_eligible + num_experts;
  unsigned char* is_group_chosen = is_group_open + num_groups;

  const std::int64_t token = blockIdx.x;
  float* scores_row = p.scores + token * num_experts;

  // Scores. Each thread touches only its own experts (e = tid + i * threads) until the barriers inside
  // block_reduce, so no barrier is needed between the loops.
  if (p.is_softmax) {
    float local_max = -FLT_MAX;
    for (int e = tid; e < num_experts; e += threads) local_max = fmaxf(local_max, scores_row[e]);
    const float row_max = block_reduce(local_max, true, scratch);
    float local_sum = 0.0F;
    for (int e = tid; e < num_experts; e += threads) {
      score[e] = expf(scores_row[e] - row_max);
      local_sum += score[e];
    }
    const float row_sum = block_reduce(local_sum, false, scratch);
    for (int e = tid; e < num_experts; e += threads) score[e] = score[e] / row_sum;
  } else {
    for (int e = tid; e < num_experts; e += threads) score[e] = 1.0F / (1.0F + expf(-scores_row[e]));
  }
  for (int e = tid; e < num_experts; e += threads) {
    scores_row[e] = score[e];
    key[e] = p.bias != nullptr ? score[e] + p.bias[e] : score[e];
    is_eligible[e] = 1;
  }
  __syncthreads();

  if (num_groups > 1) {
    const int group_size = num_experts / num_groups;
    for (int g = tid; g < num_groups; g += threads) {
      float best = -FLT_MAX;
      float second = -FLT_MAX;
      for (int e = g * group_size; e < (g + 1) * group_size; ++e) {
        if (key[e] > best) {
          second = best;
          best = key[e];
        } else if (key[e] > second) {
          second = key[e];
        }
      }
      group_key[g] = group_size >= 2 ? best + second : best;
      is_group_open[g] = 1;
      is_group_chosen[g] = 0;
    }
    __syncthreads();
    for (int round = 0; round < p.group_limit; ++round) {
      const int g = block_argmax(group_key, is_group_open, num_groups, scratch);
      if (tid == 0 && g >= 0) {
        is_group_open[g] = 0;
        is_group_chosen[g] = 1;
      }
      __syncthreads();
    }
    for (int e = tid; e < num_experts; e += threads) is_eligible[e] = is_group_chosen[e / group_size];
    __syncthreads();
  }

  std::int32_t* expert_row = p.expert + token * p.topk;
  float* weight_row = p.weight + token * p.topk;
  for (int rank = 0; rank < p.topk; ++rank) {
    const int e = block_argmax(key, is_eligible, num_experts, scratch);
    if (tid == 0) {
      // e < 0 cannot happen once check_args has passed (topk <= experts in the kept groups); stay in bounds anyway.
      expert_row[rank] = e;
      chosen_weight[rank] = e >= 0 ? score[e] : 0.0F;
      if (e >= 0) is_eligible[e] = 0;
    }
    __syncthreads();
  }

  if (tid == 0) {
    float sum = 0.0F;
    for (int rank = 0; rank < p.topk; ++rank) sum += chosen_weight[rank];
    for (int rank = 0; rank < p.topk; ++rank) {
      weight_row[rank] = p.normalize && sum > 0.0F ? chosen_weight[rank] / sum : chosen_weight[rank];
    }
  }
}

}  // namespace

void run_router(const Context& ctx, const RouterArgs& args) {
  require_int32("router", "tokens", args.tokens);
  require_int32("router", "hidden", args.hidden);
  // check_args has made sure that groups divides experts, group_limit is in [1, groups] and the kept groups hold
  // at least topk experts, so the kernel's group indices stay in range and every top-k round finds an expert.
  const int num_groups = args.groups > 1 ? args.groups : 1;
  const int group_limit = args.groups > 1 ? args.group_limit : 1;
  const std::size_t shared_bytes = router_shared_bytes(args.experts, num_groups, args.topk);
  if (shared_bytes > ctx.max_shared_bytes_optin) {
    throw std::invalid_argument(
        "router: experts: " + std::to_string(args.experts) + " experts need " + std::to_string(shared_bytes) +
        " bytes of shared memory per token, more than this GPU's " + std::to_string(ctx.max_shared_bytes_optin));
  }
  if (args.tokens == 0) return;

  gemm_bf16(ctx, args.tokens, args.experts, args.hidden, args.x, args.hidden, args.w, args.experts, args.scores,
            CUDA_R_32F, args.experts);

  if (shared_bytes > 48 * 1024) {
    MOESIM_CUDA_CHECK(cudaFuncSetAttribute(router_select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared_bytes)));
  }
  RouterParams p;
  p.experts = args.experts;
  p.topk = args.topk;
  p.groups = num_groups;
  p.group_limit = group_limit;
  p.is_softmax = args.score == ScoreFunction::kSoftmax;
  p.normalize = args.normalize;
  p.bias = args.bias;
  p.scores = args.scores;
  p.expert = args.expert;
  p.weight = args.weight;
  const int threads = block_threads(args.experts, kRouterMaxThreads);
  router_select_kernel<<<static_cast<unsigned int>(args.tokens), threads, shared_bytes, ctx.stream>>>(p);
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::cuda
