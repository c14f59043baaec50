// SPDX-License-Identifier: MIT
// The per-user bound on MAP/UNMAP and IOASID ALLOC/FREE events: a burst of one
// second's worth, then the refill rate; refusals counted and handed to the next
// admitted event; one user's flood leaves another's budget alone; the table is bounded.
#include "engine/event_budget.h"
#include "engine/event_kinds.h"
#include "engine/events.h"

#include <gtest/gtest.h>

#include <set>

using ioasid::engine::PerUserEventBudget;
using namespace std::chrono_literals;

TEST(EventBudget, ABurstOfOneSecondThenTheRefillRate) {
  PerUserEventBudget budget(10);
  const auto t0 = PerUserEventBudget::Clock::time_point{} + 1h;
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(budget.admit(1000, t0).send) << i;
  EXPECT_FALSE(budget.admit(1000, t0).send);
  EXPECT_FALSE(budget.admit(1000, t0).send);
  EXPECT_EQ(budget.refused(), 2u);
  // 100 ms refill one token: the next event is sent and says two were not.
  const auto admitted = budget.admit(1000, t0 + 100ms);
  EXPECT_TRUE(admitted.send);
  EXPECT_EQ(admitted.suppressed_before, 2u);
  EXPECT_FALSE(budget.admit(1000, t0 + 100ms).send);
  const auto again = budget.admit(1000, t0 + 10s);
  EXPECT_TRUE(again.send);
  EXPECT_EQ(again.suppressed_before, 1u);
}

TEST(EventBudget, OneUsersFloodLeavesAnotherUsersBudget) {
  PerUserEventBudget budget(5);
  const auto t0 = PerUserEventBudget::Clock::time_point{} + 1h;
  for (int i = 0; i < 100; ++i) budget.admit(1000, t0);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(budget.admit(1001, t0).send) << i;
  EXPECT_FALSE(budget.admit(1001, t0).send);
}

TEST(EventBudget, TheTableIsBoundedAndForgetsIdleUsers) {
  PerUserEventBudget budget(2, /*max_users=*/3);
  const auto t0 = PerUserEventBudget::Clock::time_point{} + 1h;
  for (uid_t uid = 1; uid <= 3; ++uid) {
    EXPECT_TRUE(budget.admit(uid, t0).send);
    EXPECT_TRUE(budget.admit(uid, t0).send);
  }
  // Full, and nobody idle (every bucket empty): a fourth user is refused.
  EXPECT_FALSE(budget.admit(4, t0).send);
  // A second later every bucket has refilled: the idle users make room.
  EXPECT_TRUE(budget.admit(4, t0 + 1s).send);
}

// Every event type has a distinct name and a kind (what `ioasidctl monitor KIND` filters on).
TEST(EventKinds, EveryTypeIsNamedOnceWithAKind) {
  std::set<std::string_view> names;
  for (const auto& kind : ioasid::engine::kEventKinds) {
    EXPECT_TRUE(names.insert(kind.name).second) << kind.name;
    EXPECT_FALSE(kind.kind.empty()) << kind.name;
  }
  EXPECT_STREQ(ioasid::engine::to_string(ioasid::engine::EventType::DsaFault), "dsa_fault");
  EXPECT_STREQ(ioasid::engine::to_string(ioasid::engine::EventType::Map), "map");
}
