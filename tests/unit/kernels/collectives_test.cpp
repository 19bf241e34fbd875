// kernels/collectives.cpp: the plan's offsets and checks, the host reference exchange, and what the NCCL entry
// points say on a machine where they cannot run (this build may or may not have NCCL; the test machine may or may
// not have GPUs: each expectation says which case it covers).
#include "kernels/collectives.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/config.hpp"
#include "tests/test_support.hpp"

namespace moesim::kernels {
namespace {

// 3 ranks; bytes[s][d] = 4 (s + 1) (d + 2), every chunk a different size.
AllToAllPlan uneven_plan() {
  AllToAllPlan plan;
  plan.num_ranks = 3;
  for (int s = 0; s < 3; ++s)
    for (int d = 0; d < 3; ++d) plan.bytes.push_back(4LL * (s + 1) * (d + 2));
  return plan;
}

TEST(AllToAllPlan, OffsetsPackChunksInRankOrder) {
  const AllToAllPlan plan = uneven_plan();
  EXPECT_EQ(plan.at(1, 2), 4 * 2 * 4);
  // Rank 1 sends 16, 24 and 32 bytes to ranks 0, 1 and 2: its chunks start at 0, 16 and 16 + 24.
  EXPECT_EQ(plan.send_offset(1, 0), 0);
  EXPECT_EQ(plan.send_offset(1, 1), 4 * 2 * 2);
  EXPECT_EQ(plan.send_offset(1, 2), 4 * 2 * 2 + 4 * 2 * 3);
  EXPECT_EQ(plan.send_bytes(1), 4 * 2 * (2 + 3 + 4));
  // Rank 2 receives 16, 32 and 48 bytes from ranks 0, 1 and 2, in that order.
  EXPECT_EQ(plan.recv_offset(2, 0), 0);
  EXPECT_EQ(plan.recv_offset(2, 1), 4 * 4);
  EXPECT_EQ(plan.recv_offset(2, 2), 4 * 4 + 4 * 8);
  EXPECT_EQ(plan.recv_bytes(2), 4 * (4 + 8 + 12));
}

TEST(AllToAllPlan, ChecksNameTheField) {
  AllToAllPlan plan = uneven_plan();
  EXPECT_NO_THROW(check_args(plan));
  plan.bytes[5] = 7;
  EXPECT_TRUE(test::contains(test::error_of([&] { check_args(plan); }),
                             "alltoall: bytes[1][2]: must be a non-negative multiple of 4, got 7"));
  plan.bytes[5] = -4;
  EXPECT_TRUE(test::contains(test::error_of([&] { check_args(plan); }), "got -4"));
  plan.bytes.pop_back();
  EXPECT_TRUE(test::contains(test::error_of([&] { check_args(plan); }), "alltoall: bytes: must hold num_ranks^2 = 9"));
  plan.num_ranks = 0;
  EXPECT_TRUE(test::contains(test::error_of([&] { check_args(plan); }), "alltoall: num_ranks: must be >= 1, got 0"));
}

TEST(HostAllToAll, EveryReceiverGetsItsChunksInSenderOrder) {
  // Each byte holds its sender in the high nibble and (receiver + index in the chunk) mod 16 in the low one, so a
  // byte from the wrong sender, for the wrong receiver or at the wrong place shows.
  const AllToAllPlan plan = uneven_plan();
  auto exchange = make_host_alltoall(3);
  EXPECT_EQ(exchange->name(), "host");
  EXPECT_EQ(exchange->num_ranks(), 3);
  exchange->set_plan(plan);
  const auto byte = [](int s, int d, std::int64_t i) { return static_cast<unsigned char>(16LL * s + (d + i) % 16); };
  for (int s = 0; s < 3; ++s) {
    std::vector<unsigned char> send;
    for (int d = 0; d < 3; ++d)
      for (std::int64_t i = 0; i < plan.at(s, d); ++i) send.push_back(byte(s, d, i));
    exchange->upload_send(s, send.data());
  }
  exchange->fill_recv(0xa5);
  exchange->exchange();
  for (int d = 0; d < 3; ++d) {
    std::vector<unsigned char> got(static_cast<std::size_t>(plan.recv_bytes(d)));
    exchange->download_recv(d, got.data());
    std::size_t at = 0;
    for (int s = 0; s < 3; ++s)
      for (std::int64_t i = 0; i < plan.at(s, d); ++i, ++at)
        ASSERT_EQ(got[at], byte(s, d, i)) << "receiver " << d << ", sender " << s << ", byte " << i;
    EXPECT_EQ(at, got.size());
  }
}

TEST(HostAllToAll, RejectsAPlanForOtherRanks) {
  auto exchange = make_host_alltoall(2);
  EXPECT_TRUE(test::contains(test::error_of([&] { exchange->set_plan(uneven_plan()); }),
                             "alltoall: num_ranks: the plan has 3, the exchange 2"));
  EXPECT_THROW(exchange->exchange(), std::logic_error) << "no plan yet";
}

TEST(NcclAllToAll, SaysWhyItCannotRunHere) {
  const std::string reason = nccl_alltoall_unavailable_reason();
  if (!MOESIM_HAVE_NCCL) {
    EXPECT_EQ(reason, "built without NCCL");
  } else if (!reason.empty()) {
    EXPECT_EQ(reason.rfind("needs 2 or more GPUs, found ", 0), 0u) << reason;
  }
  if (reason.empty()) GTEST_SKIP() << "2 or more GPUs and NCCL: the gpu tests cover this machine";
  try {
    make_nccl_alltoall();
    ADD_FAILURE() << "make_nccl_alltoall() should throw: " << reason;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moesim::kernels
