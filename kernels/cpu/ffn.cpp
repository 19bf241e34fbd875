// The grouped SwiGLU experts and the dense GEMM baseline. Both are built on one loop, rows_times_matrix: a tile of
// up to kTileRows rows of a BF16 matrix times a BF16 matrix, each output accumulated in FP32 over k in order. The
// tile shares each converted row of the right-hand matrix among its rows; it changes nothing in the arithmetic.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.hpp"

namespace moesim::kernels::cpu {
namespace {

constexpr std::int64_t kTileRows = 8;

// acc[r x n + j] = sum over i in [0, k) of a[r x lda + i] x b[i x n + j], for r < rows, in FP32, i ascending.
// b_row is scratch of n floats.
void rows_times_matrix(const Bf16* a, std::int64_t lda, std::int64_t rows, std::int64_t k, const Bf16* b,
                       std::int64_t n, float* acc, float* b_row) {
  std::fill(acc, acc + rows * n, 0.0f);
  for (std::int64_t i = 0; i < k; ++i) {
    for (std::int64_t j = 0; j < n; ++j) b_row[j] = to_float(b[i * n + j]);
    for (std::int64_t r = 0; r < rows; ++r) {
      const float av = to_float(a[r * lda + i]);
      float* out = acc + r * n;
      for (std::int64_t j = 0; j < n; ++j) out[j] += av * b_row[j];
    }
  }
}

struct Tile {
  int expert_idx;
  std::int64_t first_row;
  std::int64_t rows;
};

}  // namespace

void dense_gemm(const GemmArgs& a, ThreadPool& pool) {
  check_args(a);
  const std::int64_t tiles = (a.m + kTileRows - 1) / kTileRows;
  pool.parallel_for(tiles, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> acc(static_cast<std::size_t>(kTileRows * a.n));
    std::vector<float> b_row(static_cast<std::size_t>(a.n));
    for (std::int64_t tile = begin; tile < end; ++tile) {
      const std::int64_t first = tile * kTileRows;
      const std::int64_t rows = std::min(kTileRows, a.m - first);
      rows_times_matrix(a.a + first * a.k, a.k, rows, a.k, a.b, a.n, acc.data(), b_row.data());
      for (std::int64_t i = 0; i < rows * a.n; ++i) a.c[first * a.n + i] = to_bf16(acc[static_cast<std::size_t>(i)]);
    }
  });
}

void grouped_ffn(const GroupedFfnArgs& a, ThreadPool& pool) {
  check_args(a);
  // Tiles never straddle two experts, so uneven (and empty) experts cost nothing extra.
  std::vector<Tile> tiles;
  for (int e = 0; e < a.experts; ++e)
    for (std::int64_t r = a.host_offsets[e]; r < a.host_offsets[e + 1]; r += kTileRows)
      tiles.push_back({e, r, std::min<std::int64_t>(kTileRows, a.host_offsets[e + 1] - r)});
  const std::int64_t weights_per_expert = a.hidden * a.ffn;
  pool.parallel_for(static_cast<std::int64_t>(tiles.size()), 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> gate(static_cast<std::size_t>(kTileRows * a.ffn));
    std::vector<float> up(gate.size());
    std::vector<float> out(static_cast<std::size_t>(kTileRows * a.hidden));
    std::vector<float> b_row(static_cast<std::size_t>(std::max(a.hidden, a.ffn)));
    for (std::int64_t i = begin; i < end; ++i) {
      const Tile& tile = tiles[static_cast<std::size_t>(i)];
      const std::int64_t w_offset = tile.expert_idx * weights_per_expert;
      const Bf16* x = a.x + tile.first_row * a.hidden;
      rows_times_matrix(x, a.hidden, tile.rows, a.hidden, a.w_gate + w_offset, a.ffn, gate.data(), b_row.data());
      rows_times_matrix(x, a.hidden, tile.rows, a.hidden, a.w_up + w_offset, a.ffn, up.data(), b_row.data());
      Bf16* h = a.h + tile.first_row * a.ffn;
      for (std::int64_t j = 0; j < tile.rows * a.ffn; ++j) {
        const float g = gate[static_cast<std::size_t>(j)];
        h[j] = to_bf16(g / (1.0f + std::exp(-g)) * up[static_cast<std::size_t>(j)]);
      }
      // The down projection reads h as stored: BF16, as the contract says.
      rows_times_matrix(h, a.ffn, tile.rows, a.ffn, a.w_down + w_offset, a.hidden, out.data(), b_row.data());
      Bf16* y = a.y + tile.first_row * a.hidden;
      for (std::int64_t j = 0; j < tile.rows * a.hidden; ++j) y[j] = to_bf16(out[static_cast<std::size_t>(j)]);
    }
  });
}

}  // namespace moesim::kernels::cpu
