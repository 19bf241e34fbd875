// Grouped SwiGLU experts over uneven row counts. host_offsets gives every expert's rows [o_e, o_{e+1}) on the host,
// so the launch shapes are known without reading device memory; experts with no rows launch nothing.
//
// 1. For each expert e with rows: g_e = x_e W_g[e] and u_e = x_e W_u[e] by gemm_bf16 (cuBLAS, BF16 in, FP32
//    accumulate, FP32 out) into two FP32 workspaces [R x F] (R = o_E), so g and u are never rounded to BF16.
// 2. swiglu_kernel: h = bf16(silu(g) * u), silu(g) = g / (1 + exp(-g)), one thread per element (grid-stride over
//    R F, consecutive threads on consecutive elements: coalesced), all experts in one launch.
// 3. For each expert e with rows: y_e = h_e W_d[e] by gemm_bf16 with a BF16 output (FP32 accumulate, one rounding).
// All launches go to the backend's stream in that order, so each step sees the previous one's results.
//
// cuBLAS sums in its own order (tensor-core tiles, perhaps split-k): y matches a sequential FP32 reference within a
// BF16 tolerance, not bit for bit. cublasGemmGroupedBatchedEx could replace the per-expert loops (fewer host
// launches when there are hundreds of experts); the loop is the obviously correct first version.
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace moesim::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned int kMaxBlocks = 1U << 16;

__global__ void swiglu_kernel(const float* gate, const float* up, long long count, std::uint16_t* h) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = global_thread_index(); i < count; i += stride) {
    const float g = gate[i];
    const float silu = g / (1.0F + expf(-g));
    h[i] = float_to_bf16(silu * up[i]);
  }
}

}  // namespace

void run_grouped_ffn(const Context& ctx, const GroupedFfnArgs& args) {
  require_int32("grouped_ffn", "hidden", args.hidden);
  require_int32("grouped_ffn", "ffn", args.ffn);
  const std::int32_t* offsets = args.host_offsets;
  // Launch shapes come from host_offsets, which check_args has read: it starts at 0 and never decreases.
  const std::int64_t num_rows = offsets[args.experts];
  if (num_rows == 0) return;

  const std::int64_t hidden = args.hidden;
  const std::int64_t ffn = args.ffn;
  const std::size_t activation_bytes = sizeof(float) * static_cast<std::size_t>(num_rows * ffn);
  WorkspaceLayout layout;
  const std::size_t at_gate = layout.add(activation_bytes);
  const std::size_t at_up = layout.add(activation_bytes);
  void* base = ctx.workspace->get(layout.total(), ctx.stream);
  auto* gate = WorkspaceLayout::at<float>(base, at_gate);
  auto* up = WorkspaceLayout::at<float>(base, at_up);

  for (int e = 0; e < args.experts; ++e) {
    const std::int64_t rows = offsets[e + 1] - offsets[e];
    if (rows == 0) continue;
    const Bf16* x_e = args.x + offsets[e] * hidden;
    const std::int64_t weight_offset = e * hidden * ffn;
    gemm_bf16(ctx, rows, ffn, hidden, x_e, hidden, args.w_gate + weight_offset, ffn, gate + offsets[e] * ffn,
              CUDA_R_32F, ffn);
    gemm_bf16(ctx, rows, ffn, hidden, x_e, hidden, args.w_up + weight_offset, ffn, up + offsets[e] * ffn, CUDA_R_32F,
              ffn);
  }

  const long long count = num_rows * ffn;
  const unsigned int blocks = std::min<unsigned int>(ceil_div(count, kThreads), kMaxBlocks);
  swiglu_kernel<<<blocks, kThreads, 0, ctx.stream>>>(gate, up, count, reinterpret_cast<std::uint16_t*>(args.h));
  MOESIM_CUDA_CHECK_LAUNCH();

  for (int e = 0; e < args.experts; ++e) {
    const std::int64_t rows = offsets[e + 1] - offsets[e];
    if (rows == 0) continue;
    gemm_bf16(ctx, rows, hidden, ffn, args.h + offsets[e] * ffn, ffn, args.w_down + e * ffn * hidden, hidden,
              args.y + offsets[e] * hidden, CUDA_R_16BF, hidden);
  }
}

}  // namespace moesim::kernels::cuda
