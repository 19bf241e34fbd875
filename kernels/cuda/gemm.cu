// Row-major BF16 GEMMs on cuBLAS (tensor cores, FP32 accumulation): the router's logits, the experts' projections
// and the dense baseline all go through gemm_bf16().
#include "kernels/cuda/common.cuh"

namespace moesim::kernels::cuda {

void gemm_bf16(const Context& ctx, std::int64_t m, std::int64_t n, std::int64_t k, const void* a, std::int64_t lda,
               const void* b, std::int64_t ldb, void* c, cudaDataType_t c_type, std::int64_t ldc) {
  if (m == 0 || n == 0) return;  // k >= 1: check_args requires hidden, ffn and k to be positive
  const float alpha = 1.0F;
  const float beta = 0.0F;
  // Column-major view: C^T[n x m] (ld ldc) = B^T[n x k] (ld ldb) * A^T[k x m] (ld lda).
  MOESIM_CUBLAS_CHECK(cublasGemmEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                   static_cast<int>(k), &alpha, b, CUDA_R_16BF, static_cast<int>(ldb), a, CUDA_R_16BF,
                                   static_cast<int>(lda), &beta, c, c_type, static_cast<int>(ldc), CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
}

void run_dense_gemm(const Context& ctx, const GemmArgs& args) {
  require_int32("dense_gemm", "m", args.m);
  require_int32("dense_gemm", "n", args.n);
  require_int32("dense_gemm", "k", args.k);
  gemm_bf16(ctx, args.m, args.n, args.k, args.a, args.k, args.b, args.n, args.c, CUDA_R_16BF, args.n);
}

}  // namespace moesim::kernels::cuda
