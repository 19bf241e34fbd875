#include "kernels/collectives.hpp"

#include <chrono>
#include <cstring>
#include <stdexcept>

#include "kernels/config.hpp"

namespace moesim::kernels {

std::int64_t AllToAllPlan::at(int src_idx, int dst_idx) const {
  return bytes[static_cast<std::size_t>(src_idx) * static_cast<std::size_t>(num_ranks) +
               static_cast<std::size_t>(dst_idx)];
}

std::int64_t AllToAllPlan::send_bytes(int src_idx) const {
  return send_offset(src_idx, num_ranks);
}

std::int64_t AllToAllPlan::recv_bytes(int dst_idx) const {
  return recv_offset(dst_idx, num_ranks);
}

std::int64_t AllToAllPlan::send_offset(int src_idx, int dst_idx) const {
  std::int64_t offset = 0;
  for (int d = 0; d < dst_idx; ++d) offset += at(src_idx, d);
  return offset;
}

std::int64_t AllToAllPlan::recv_offset(int dst_idx, int src_idx) const {
  std::int64_t offset = 0;
  for (int s = 0; s < src_idx; ++s) offset += at(s, dst_idx);
  return offset;
}

void check_args(const AllToAllPlan& plan) {
  if (plan.num_ranks < 1)
    throw std::invalid_argument("alltoall: num_ranks: must be >= 1, got " + std::to_string(plan.num_ranks));
  const auto n = static_cast<std::size_t>(plan.num_ranks);
  if (plan.bytes.size() != n * n)
    throw std::invalid_argument("alltoall: bytes: must hold num_ranks^2 = " + std::to_string(n * n) + " sizes, got " +
                                std::to_string(plan.bytes.size()));
  for (int s = 0; s < plan.num_ranks; ++s)
    for (int d = 0; d < plan.num_ranks; ++d) {
      const std::int64_t b = plan.at(s, d);
      if (b < 0 || b % kAllToAllWordBytes != 0)
        throw std::invalid_argument("alltoall: bytes[" + std::to_string(s) + "][" + std::to_string(d) +
                                    "]: must be a non-negative multiple of " + std::to_string(kAllToAllWordBytes) +
                                    ", got " + std::to_string(b));
    }
}

namespace {

// The reference exchange: rank d's receive buffer is the concatenation, in sender order, of each sender's chunk for
// d. Plain loops over host vectors; obviously correct is the point.
class HostAllToAll final : public AllToAll {
 public:
  explicit HostAllToAll(int num_ranks) : num_ranks_(num_ranks) {
    if (num_ranks < 1)
      throw std::invalid_argument("alltoall: num_ranks: must be >= 1, got " + std::to_string(num_ranks));
    send_.resize(static_cast<std::size_t>(num_ranks));
    recv_.resize(static_cast<std::size_t>(num_ranks));
  }

  std::string name() const override { return "host"; }
  int num_ranks() const override { return num_ranks_; }
  std::string device_name() const override { return "host"; }

  void set_plan(const AllToAllPlan& plan) override {
    check_args(plan);
    if (plan.num_ranks != num_ranks_)
      throw std::invalid_argument("alltoall: num_ranks: the plan has " + std::to_string(plan.num_ranks) +
                                  ", the exchange " + std::to_string(num_ranks_));
    plan_ = plan;
    for (int r = 0; r < num_ranks_; ++r) {
      send_[static_cast<std::size_t>(r)].resize(static_cast<std::size_t>(plan.send_bytes(r)));
      recv_[static_cast<std::size_t>(r)].resize(static_cast<std::size_t>(plan.recv_bytes(r)));
    }
  }

  void upload_send(int rank_idx, const void* host) override {
    auto& buffer = send_.at(static_cast<std::size_t>(rank_idx));
    if (!buffer.empty()) std::memcpy(buffer.data(), host, buffer.size());
  }

  void fill_send(unsigned char byte) override {
    for (auto& buffer : send_) std::memset(buffer.data(), byte, buffer.size());
  }

  void fill_recv(unsigned char byte) override {
    for (auto& buffer : recv_) std::memset(buffer.data(), byte, buffer.size());
  }

  void download_recv(int rank_idx, void* host) override {
    const auto& buffer = recv_.at(static_cast<std::size_t>(rank_idx));
    if (!buffer.empty()) std::memcpy(host, buffer.data(), buffer.size());
  }

  double exchange() override {
    if (plan_.num_ranks != num_ranks_) throw std::logic_error("alltoall: exchange() before set_plan()");
    const auto start = std::chrono::steady_clock::now();
    for (int s = 0; s < num_ranks_; ++s)
      for (int d = 0; d < num_ranks_; ++d) {
        const auto n = static_cast<std::size_t>(plan_.at(s, d));
        if (n == 0) continue;
        std::memcpy(recv_[static_cast<std::size_t>(d)].data() + plan_.recv_offset(d, s),
                    send_[static_cast<std::size_t>(s)].data() + plan_.send_offset(s, d), n);
      }
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  int num_ranks_;
  AllToAllPlan plan_;
  std::vector<std::vector<unsigned char>> send_;
  std::vector<std::vector<unsigned char>> recv_;
};

}  // namespace

std::unique_ptr<AllToAll> make_host_alltoall(int num_ranks) {
  return std::make_unique<HostAllToAll>(num_ranks);
}

// With NCCL, kernels/cuda/nccl_alltoall.cu defines these. Here rather than in a stub file of its own so that every
// build compiles this file (and clang-tidy finds its compile command).
#if !MOESIM_HAVE_NCCL
std::string nccl_alltoall_unavailable_reason() {
  return "built without NCCL";
}

std::unique_ptr<AllToAll> make_nccl_alltoall() {
  throw std::runtime_error("nccl: " + nccl_alltoall_unavailable_reason());
}
#endif

}  // namespace moesim::kernels
