#include "kernels/harness/collectives.hpp"

#include <algorithm>
#include <exception>
#include <stdexcept>

#include "kernels/config.hpp"
#include "kernels/harness/random.hpp"

namespace moesim::kernels::harness {
namespace {

// The timing fill of the send buffers: the bytes are never checked, any value will do.
constexpr unsigned char kSendFill = 0x3c;

std::string mib(std::int64_t bytes) {
  return bytes % (1 << 20) == 0 ? std::to_string(bytes >> 20) + "MiB" : std::to_string(bytes) + "B";
}

// Sender s's chunk for receiver d: seeded words, a stream of their own per (seed, s, d).
std::vector<std::int32_t> chunk_words(const AllToAllPlan& plan, int src_idx, int dst_idx, std::uint64_t seed) {
  std::vector<std::int32_t> words(static_cast<std::size_t>(plan.at(src_idx, dst_idx) / kAllToAllWordBytes));
  Rng rng(seed, "alltoall/" + std::to_string(src_idx) + "/" + std::to_string(dst_idx));
  for (std::int32_t& w : words) w = static_cast<std::int32_t>(static_cast<std::uint32_t>(rng.next() >> 32));
  return words;
}

std::int64_t max_recv_bytes(const AllToAllPlan& plan) {
  std::int64_t most = 0;
  for (int d = 0; d < plan.num_ranks; ++d) most = std::max(most, plan.recv_bytes(d));
  return most;
}

OpResult skipped_row(const std::string& op, const std::string& reason) {
  OpResult r;
  r.op = op;
  r.shape = "-";
  r.skipped = reason;
  return r;
}

}  // namespace

const std::vector<std::string>& collective_op_names() {
  static const std::vector<std::string> names = {"nccl_alltoall", "nccl_alltoallv"};
  return names;
}

bool is_collective_op(const std::string& op) {
  const auto& names = collective_op_names();
  return std::find(names.begin(), names.end(), op) != names.end();
}

std::string collectives_unavailable_reason(const Backend& backend) {
  if (!MOESIM_HAVE_NCCL) return "built without NCCL";
  if (backend.name() != "cuda") return "needs --backend cuda";
  return nccl_alltoall_unavailable_reason();
}

AllToAllPlan alltoall_plan(int num_ranks, std::int64_t bytes_per_rank) {
  if (num_ranks < 1) throw std::invalid_argument("alltoall: num_ranks: must be >= 1, got " + std::to_string(num_ranks));
  if (bytes_per_rank < 0)
    throw std::invalid_argument("alltoall: bytes_per_rank: must be >= 0, got " + std::to_string(bytes_per_rank));
  const std::int64_t per_peer = bytes_per_rank / (kAllToAllWordBytes * num_ranks) * kAllToAllWordBytes;
  AllToAllPlan plan;
  plan.num_ranks = num_ranks;
  plan.bytes.assign(static_cast<std::size_t>(num_ranks) * static_cast<std::size_t>(num_ranks), per_peer);
  return plan;
}

AllToAllPlan alltoallv_plan(int num_ranks, std::int64_t bytes_per_rank, const Skew& skew, std::uint64_t seed,
                            int units) {
  if (num_ranks < 1)
    throw std::invalid_argument("alltoallv: num_ranks: must be >= 1, got " + std::to_string(num_ranks));
  if (units < 1) throw std::invalid_argument("alltoallv: units: must be >= 1, got " + std::to_string(units));
  const std::int64_t unit_bytes = bytes_per_rank / (kAllToAllWordBytes * units) * kAllToAllWordBytes;
  if (unit_bytes == 0)
    throw std::invalid_argument("alltoallv: bytes_per_rank: must be at least " + std::to_string(units) + " x " +
                                std::to_string(kAllToAllWordBytes) + " bytes, got " + std::to_string(bytes_per_rank));
  AllToAllPlan plan;
  plan.num_ranks = num_ranks;
  plan.bytes.assign(static_cast<std::size_t>(num_ranks) * static_cast<std::size_t>(num_ranks), 0);
  for (int s = 0; s < num_ranks; ++s) {
    Rng rng(seed, "alltoallv/" + skew.name() + "/" + std::to_string(num_ranks) + "/" + std::to_string(s));
    const Routing routing = sample_routing(units, num_ranks, 1, skew, false, rng);
    for (const std::int32_t d : routing.expert)
      plan.bytes[static_cast<std::size_t>(s) * static_cast<std::size_t>(num_ranks) + static_cast<std::size_t>(d)] +=
          unit_bytes;
  }
  return plan;
}

std::vector<std::int64_t> alltoall_sizes(bool is_quick) {
  if (is_quick) return {1LL << 20, 8LL << 20};
  std::vector<std::int64_t> sizes;
  for (std::int64_t bytes = 1LL << 20; bytes <= 256LL << 20; bytes *= 2) sizes.push_back(bytes);
  return sizes;
}

Bandwidth alltoall_bandwidth(std::int64_t bytes_per_rank, int num_ranks, double ms) {
  Bandwidth bw;
  if (ms <= 0 || num_ranks < 1) return bw;
  bw.algbw_gbps = static_cast<double>(bytes_per_rank) / (ms * 1e-3) / 1e9;
  bw.busbw_gbps = bw.algbw_gbps * (num_ranks - 1) / num_ranks;
  return bw;
}

OpResult validate_alltoall(AllToAll& exchange, const std::string& op, const std::string& case_name,
                           const AllToAllPlan& plan, std::uint64_t seed) {
  OpResult result;
  result.op = op;
  result.shape = case_name;
  try {
    exchange.set_plan(plan);
    const int n = plan.num_ranks;
    std::vector<std::vector<std::vector<std::int32_t>>> chunks(static_cast<std::size_t>(n));
    for (int s = 0; s < n; ++s) {
      std::vector<std::int32_t> send;
      for (int d = 0; d < n; ++d) {
        chunks[static_cast<std::size_t>(s)].push_back(chunk_words(plan, s, d, seed));
        const auto& c = chunks[static_cast<std::size_t>(s)].back();
        send.insert(send.end(), c.begin(), c.end());
      }
      exchange.upload_send(s, send.data());
    }
    exchange.fill_recv(kPoisonInt);
    exchange.exchange();
    for (int d = 0; d < n; ++d) {
      std::vector<std::int32_t> want;
      for (int s = 0; s < n; ++s) {
        const auto& c = chunks[static_cast<std::size_t>(s)][static_cast<std::size_t>(d)];
        want.insert(want.end(), c.begin(), c.end());
      }
      std::vector<std::int32_t> got(want.size());
      exchange.download_recv(d, got.data());
      result.outputs.push_back(compare_exact("recv[" + std::to_string(d) + "]", got, want));
    }
    std::int64_t fewest = plan.recv_bytes(0);
    for (int d = 0; d < n; ++d) fewest = std::min(fewest, plan.recv_bytes(d));
    result.note = std::to_string(n) + " ranks (" + exchange.name() + "), " + std::to_string(plan.send_bytes(0)) +
                  " B sent per rank, " + std::to_string(fewest) + " to " + std::to_string(max_recv_bytes(plan)) +
                  " B received";
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

std::vector<OpResult> validate_collectives(const Backend& backend, std::uint64_t seed, const Progress& progress,
                                           const AllToAllFactory& make) {
  std::vector<OpResult> results;
  const std::string reason = make ? "" : collectives_unavailable_reason(backend);
  if (!reason.empty()) {
    for (const std::string& op : collective_op_names()) results.push_back(skipped_row(op, reason));
    return results;
  }
  std::unique_ptr<AllToAll> exchange;
  try {
    exchange = make ? make() : make_nccl_alltoall();
  } catch (const std::exception& e) {
    for (const std::string& op : collective_op_names()) {
      OpResult r;
      r.op = op;
      r.shape = "-";
      r.error = e.what();
      results.push_back(r);
    }
    return results;
  }
  const int n = exchange->num_ranks();
  struct Case {
    std::string op;
    std::string name;
    AllToAllPlan plan;
  };
  // Odd chunk sizes (7 words, units of 37 and 3 words) put most chunks at offsets that are not multiples of 16
  // bytes; Zipf leaves some chunks empty on few ranks, all_to_rank0 leaves every chunk but those to rank 0 empty.
  const std::vector<Case> cases = {
      {"nccl_alltoall", "even_" + mib(1 << 20), alltoall_plan(n, 1 << 20)},
      {"nccl_alltoall", "tiny_chunks_28B", alltoall_plan(n, 28LL * n)},
      {"nccl_alltoallv", "zipf:1.2_uneven", alltoallv_plan(n, 1000LL * 4 * 37, {Skew::Kind::kZipf, 1.2}, seed, 1000)},
      {"nccl_alltoallv", "all_to_rank0", alltoallv_plan(n, 64LL * 4 * 3, {Skew::Kind::kAllToOne, 0}, seed, 64)},
  };
  for (const Case& c : cases) {
    if (progress)
      progress("[" + std::to_string(results.size() + 1) + "/" + std::to_string(cases.size()) + "] " + c.op + " " +
               c.name);
    results.push_back(validate_alltoall(*exchange, c.op, c.name, c.plan, seed));
  }
  return results;
}

Measurement bench_alltoall(AllToAll& exchange, const std::string& op, const AllToAllPlan& plan, const std::string& skew,
                           const BenchOptions& options) {
  exchange.set_plan(plan);
  exchange.fill_send(kSendFill);
  const Timing timing = time_iterations([&] { return exchange.exchange(); }, options);
  const std::int64_t bytes_per_rank = plan.send_bytes(0);
  const Bandwidth bw = alltoall_bandwidth(bytes_per_rank, plan.num_ranks, timing.median_ms());

  Measurement m;
  m.set_op(op);
  Shape* s = m.mutable_shape();
  s->set_skew(skew);
  s->set_num_gpus(plan.num_ranks);
  s->set_bytes_per_rank(bytes_per_rank);
  s->set_max_recv_bytes_per_rank(max_recv_bytes(plan));
  m.set_dtype("uint8");
  m.set_bytes(static_cast<double>(bytes_per_rank));
  m.set_gbps(bw.algbw_gbps);
  m.set_algbw_gbps(bw.algbw_gbps);
  m.set_busbw_gbps(bw.busbw_gbps);
  *m.mutable_timing() = timing;
  // Not rotated (see the header): one set, every rank's send and receive buffers.
  std::int64_t buffers = 0;
  for (int r = 0; r < plan.num_ranks; ++r) buffers += plan.send_bytes(r) + plan.recv_bytes(r);
  m.set_input_sets(1);
  m.set_rotation_bytes(buffers);
  return m;
}

}  // namespace moesim::kernels::harness
