// SPDX-License-Identifier: MIT
// Pinned-page accounting: per-user limits, RAII uncharging, per-user separation.
#include "memory/pin_accounting.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ioasid {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(PinAccounting, DefaultLimitIsOneGibPerUser) {
  PinAccounting accounting;
  EXPECT_EQ(accounting.limit_pages(), 262144u);
  auto all = accounting.charge(1000, 262144);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(accounting.charge(1000, 1).code(), ENOMEM);
}

TEST(PinAccounting, LimitIsPerUserAndNamesEverything) {
  PinAccounting accounting(100);
  auto first = accounting.charge(1000, 60);
  ASSERT_TRUE(first.ok());
  auto over = accounting.charge(1000, 41);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.code(), ENOMEM);
  EXPECT_THAT(over.error().why,
              AllOf(HasSubstr("uid 1000"), HasSubstr("41"), HasSubstr("60"), HasSubstr("100")));
  auto exact = accounting.charge(1000, 40);
  ASSERT_TRUE(exact.ok());
  // Another user has a limit of its own.
  auto other = accounting.charge(1001, 100);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(accounting.pinned_pages(1000), 100u);
  EXPECT_EQ(accounting.pinned_pages(1001), 100u);
  EXPECT_EQ(accounting.pinned_pages(1002), 0u);
  EXPECT_EQ(accounting.total_pinned_pages(), 200u);
  EXPECT_THAT(accounting.pinned_by_uid(), ElementsAre(Pair(1000u, 100u), Pair(1001u, 100u)));
  EXPECT_EQ(accounting.charge(1000, ~0ull).code(), ENOMEM);  // no overflow
}

TEST(PinAccounting, ChargesUnchargeWhenDestroyed) {
  PinAccounting accounting(10);
  {
    auto charge = accounting.charge(0, 10);
    ASSERT_TRUE(charge.ok());
    EXPECT_EQ(accounting.pinned_pages(0), 10u);
    EXPECT_EQ(accounting.charge(0, 1).code(), ENOMEM);
  }
  EXPECT_EQ(accounting.pinned_pages(0), 0u);
  EXPECT_TRUE(accounting.pinned_by_uid().empty());
  EXPECT_TRUE(accounting.charge(0, 10).ok());  // a temporary: charged and released
  EXPECT_EQ(accounting.total_pinned_pages(), 0u);
}

TEST(PinAccounting, ChargesMoveAndReleaseOnce) {
  PinAccounting accounting(10);
  PinCharge held = *accounting.charge(5, 4);
  PinCharge moved = std::move(held);
  EXPECT_EQ(accounting.pinned_pages(5), 4u);
  held.release();  // moved-from: nothing
  EXPECT_EQ(accounting.pinned_pages(5), 4u);
  PinCharge assigned = *accounting.charge(5, 3);
  assigned = std::move(moved);  // releases the 3, takes over the 4
  EXPECT_EQ(accounting.pinned_pages(5), 4u);
  assigned.release();
  assigned.release();
  EXPECT_EQ(accounting.pinned_pages(5), 0u);
}

TEST(PinAccounting, ZeroMeansUnlimitedAndTheLimitCanChange) {
  PinAccounting accounting(0);
  auto huge = accounting.charge(1, 1ull << 40);
  ASSERT_TRUE(huge.ok());
  accounting.set_limit_pages(10);
  EXPECT_EQ(accounting.charge(1, 1).code(), ENOMEM);  // already above the new limit
  EXPECT_TRUE(accounting.charge(2, 10).ok());
  EXPECT_TRUE(accounting.charge(2, 0).ok());  // nothing to charge
}

TEST(PinAccounting, ChargesMayOutliveTheAccounting) {
  PinCharge charge;
  {
    PinAccounting accounting(10);
    charge = *accounting.charge(1, 5);
  }
  charge.release();  // no crash, no leak (ASan)
}

TEST(PinAccounting, ConcurrentChargesNeverExceedTheLimit) {
  PinAccounting accounting(1000);
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  std::vector<std::vector<PinCharge>> held_by_thread(4);  // kept until every thread is done
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<PinCharge>& held = held_by_thread[t];
      for (int i = 0; i < 400; ++i) {
        auto charge = accounting.charge(7, 1);
        if (charge.ok())
          held.push_back(std::move(*charge));
        else
          refused.fetch_add(1);
        EXPECT_LE(accounting.pinned_pages(7), 1000u);
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(refused.load(), 600);
  EXPECT_EQ(accounting.pinned_pages(7), 1000u);
  held_by_thread.clear();
  EXPECT_EQ(accounting.pinned_pages(7), 0u);
}

}  // namespace
}  // namespace ioasid
