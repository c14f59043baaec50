// SPDX-License-Identifier: MIT
// The PASID allocator: lifecycle and reference counts, sets and quotas, the spid
// map, notifier ordering and re-entrancy, and a multi-threaded hammer.
#include "pasid/allocator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ioasid {
namespace {

using ::testing::ElementsAre;

struct Event {
  PasidEvent event;
  Pasid pasid;
  SetId set;
  std::optional<uint32_t> spid;
  uintptr_t private_data;
  bool operator==(const Event&) const = default;
};

// Records every notification a subscription sees.
class Recorder {
 public:
  explicit Recorder(Allocator& allocator)
      : subscription_(allocator.subscribe([this](const Notification& n) { record(n); })) {}

  std::vector<Event> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  size_t count(PasidEvent event, Pasid pasid) const {
    std::lock_guard lock(mutex_);
    return std::count_if(events_.begin(), events_.end(),
                         [&](const Event& e) { return e.event == event && e.pasid == pasid; });
  }

 private:
  void record(const Notification& n) {
    std::lock_guard lock(mutex_);
    events_.push_back({n.event, n.pasid, n.set, n.spid, n.private_data});
  }
  mutable std::mutex mutex_;
  std::vector<Event> events_;
  Subscription subscription_;
};

SetId make_set(Allocator& allocator, uint32_t quota = 100, uint64_t token = 0, SetType type = SetType::Null) {
  auto set = allocator.create_set(token, type, quota);
  EXPECT_TRUE(set.ok()) << (set.ok() ? "" : set.error().why);
  return set.ok() ? *set : kAnySet;
}

Subscription subscribe_to(Allocator& allocator, SetId set, NotifierCallback callback, int priority = 0) {
  auto subscription = allocator.subscribe(set, std::move(callback), priority);
  EXPECT_TRUE(subscription.ok());
  return subscription.ok() ? std::move(subscription).value() : Subscription();
}

uint32_t refcount(const Allocator& allocator, Pasid pasid) {
  auto info = allocator.info(pasid);
  return info.ok() ? info->refcount : 0;
}

TEST(Allocator, CapacityReservesPasidZero) {
  Allocator allocator;
  EXPECT_EQ(allocator.pasid_bits(), 20u);
  EXPECT_EQ(allocator.capacity(), (1u << 20) - 1);
  EXPECT_EQ(allocator.quota_available(), allocator.capacity());
  EXPECT_EQ(allocator.allocated(), 0u);
  const SetId set = make_set(allocator);
  EXPECT_EQ(*allocator.alloc(set, 1, allocator.capacity()), 1u);
  EXPECT_EQ(allocator.find(set, 0).code(), ENOENT);
  EXPECT_EQ(allocator.get(kAnySet, 0).code(), ENOENT);
  EXPECT_FALSE(allocator.put(0));
  EXPECT_EQ(allocator.info(allocator.capacity() + 1).code(), ENOENT);
}

// The design slides' table: 1 on alloc, users take 2, 3, 4, the owner's free leaves
// 3 (FREE_PENDING), the users' puts 2, 1, 0 and the number comes back.
TEST(Allocator, ReferenceCountTableFromTheSlides) {
  Allocator allocator;
  Recorder recorder(allocator);
  const SetId set = make_set(allocator);

  const Pasid pasid = *allocator.alloc(set, 1, 100, 0xfeed);
  EXPECT_EQ(allocator.info(pasid)->state, PasidState::Idle);
  EXPECT_EQ(refcount(allocator, pasid), 1u);

  for (uint32_t expected : {2u, 3u, 4u}) {
    ASSERT_TRUE(allocator.get(set, pasid).ok());
    EXPECT_EQ(refcount(allocator, pasid), expected);
    EXPECT_EQ(allocator.info(pasid)->state, PasidState::Active);
  }

  ASSERT_TRUE(allocator.free(set, pasid).ok());
  EXPECT_EQ(recorder.count(PasidEvent::Free, pasid), 1u);
  EXPECT_EQ(allocator.info(pasid)->state, PasidState::FreePending);
  EXPECT_EQ(refcount(allocator, pasid), 3u);
  EXPECT_EQ(allocator.find(set, pasid).code(), ENOENT);
  EXPECT_EQ(allocator.get(set, pasid).code(), ENOENT);
  EXPECT_EQ(allocator.free(set, pasid).code(), ENOENT);
  EXPECT_EQ(allocator.set_info(set)->allocated, 1u);  // still charged

  EXPECT_FALSE(allocator.put(pasid));
  EXPECT_EQ(refcount(allocator, pasid), 2u);
  EXPECT_FALSE(allocator.put(pasid));
  EXPECT_EQ(refcount(allocator, pasid), 1u);
  EXPECT_TRUE(allocator.put(pasid));  // reclaimed

  EXPECT_EQ(allocator.info(pasid).code(), ENOENT);
  EXPECT_EQ(allocator.find(set, pasid).code(), ENOENT);
  EXPECT_EQ(allocator.set_info(set)->allocated, 0u);
  EXPECT_EQ(allocator.allocated(), 0u);
  EXPECT_FALSE(allocator.put(pasid));

  // A new life cycle for the same number.
  EXPECT_EQ(*allocator.alloc(set, 1, 100), pasid);
  EXPECT_EQ(refcount(allocator, pasid), 1u);
  EXPECT_EQ(allocator.info(pasid)->state, PasidState::Idle);
  EXPECT_EQ(*allocator.find(set, pasid), 0u);  // the old private data is gone
  EXPECT_THAT(recorder.events(),
              ElementsAre(Event{PasidEvent::Alloc, pasid, set, std::nullopt, 0xfeed},
                          Event{PasidEvent::Free, pasid, set, std::nullopt, 0xfeed},
                          Event{PasidEvent::Alloc, pasid, set, std::nullopt, 0}));
}

TEST(Allocator, PutNeverDropsTheOwnersReference) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  const Pasid pasid = *allocator.alloc(set, 1, 10);
  EXPECT_FALSE(allocator.put(pasid));
  EXPECT_EQ(refcount(allocator, pasid), 1u);
  EXPECT_EQ(allocator.info(pasid)->state, PasidState::Idle);
}

TEST(Allocator, FreeWithoutUsersReclaimsAtOnce) {
  Allocator allocator;
  Recorder recorder(allocator);
  const SetId set = make_set(allocator);
  const Pasid pasid = *allocator.alloc(set, 1, 10);
  ASSERT_TRUE(allocator.free(set, pasid).ok());
  EXPECT_EQ(allocator.info(pasid).code(), ENOENT);
  EXPECT_EQ(allocator.allocated(), 0u);
  EXPECT_EQ(recorder.count(PasidEvent::Free, pasid), 1u);
}

// The deadlock raised in the 2020 review: a FREE subscriber that calls back into the
// allocator. Here it frees another PASID and drops its own reference on the freed one.
TEST(Allocator, FreeSubscriberFreesAnotherAndPutsTheFreedOne) {
  Allocator allocator;
  Recorder recorder(allocator);
  const SetId set = make_set(allocator);
  const Pasid first = *allocator.alloc(set, 1, 100);
  const Pasid second = *allocator.alloc(set, 1, 100);
  ASSERT_TRUE(allocator.get(set, first).ok());  // the subscriber's reference

  std::vector<std::pair<Pasid, uint32_t>> seen;  // pasid, refcount inside the callback
  Subscription subscription = allocator.subscribe([&](const Notification& n) {
    if (n.event != PasidEvent::Free) return;
    seen.emplace_back(n.pasid, refcount(allocator, n.pasid));
    if (n.pasid == first) {
      EXPECT_TRUE(allocator.free(set, second).ok());
      EXPECT_FALSE(allocator.put(first));  // the owner's reference still stands
    }
  });

  ASSERT_TRUE(allocator.free(set, first).ok());
  EXPECT_THAT(seen, ElementsAre(std::pair{first, 2u}, std::pair{second, 1u}));
  EXPECT_EQ(recorder.count(PasidEvent::Free, first), 1u);
  EXPECT_EQ(recorder.count(PasidEvent::Free, second), 1u);
  EXPECT_EQ(allocator.info(first).code(), ENOENT);
  EXPECT_EQ(allocator.info(second).code(), ENOENT);
  EXPECT_EQ(allocator.allocated(), 0u);
}

TEST(Allocator, SubscriptionDestroyedInsideItsOwnCallback) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  int calls = 0;
  auto subscription = std::make_unique<Subscription>();
  *subscription = allocator.subscribe([&](const Notification&) {
    ++calls;
    subscription.reset();  // destroys the Subscription, and the lambda's owner with it
  });
  Recorder after(allocator);  // a later subscriber still runs for the same event
  const Pasid pasid = *allocator.alloc(set, 1, 10);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(after.count(PasidEvent::Alloc, pasid), 1u);
  ASSERT_TRUE(allocator.free(set, pasid).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(after.count(PasidEvent::Free, pasid), 1u);
}

TEST(Allocator, SubscribeAndUnsubscribeOthersInsideACallback) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  int victim_calls = 0;
  int late_calls = 0;
  Subscription victim;
  Subscription late;
  Subscription first = allocator.subscribe(
      [&](const Notification&) {
        victim.reset();  // not yet called for this event: it must not be
        if (!late.active()) late = allocator.subscribe([&](const Notification&) { ++late_calls; });
      },
      10);
  victim = allocator.subscribe([&](const Notification&) { ++victim_calls; });
  (void)*allocator.alloc(set, 1, 10);
  EXPECT_EQ(victim_calls, 0);
  EXPECT_EQ(late_calls, 0);  // joined after this event's snapshot
  (void)*allocator.alloc(set, 1, 10);
  EXPECT_EQ(late_calls, 1);
}

TEST(Allocator, PrioritiesThenRegistrationOrderGlobalBeforeSet) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  const SetId other = make_set(allocator);
  std::vector<std::string> order;
  auto note = [&](std::string name) { return [&order, name](const Notification&) { order.push_back(name); }; };
  std::vector<Subscription> subscriptions;
  subscriptions.push_back(subscribe_to(allocator, set, note("set:0"), 0));
  subscriptions.push_back(subscribe_to(allocator, set, note("set:100"), 100));
  subscriptions.push_back(allocator.subscribe(note("global:-5"), -5));
  subscriptions.push_back(allocator.subscribe(note("global:7a"), 7));
  subscriptions.push_back(allocator.subscribe(note("global:7b"), 7));
  subscriptions.push_back(subscribe_to(allocator, set, note("set:0b"), 0));
  subscriptions.push_back(subscribe_to(allocator, other, note("other"), 1000));

  (void)*allocator.alloc(set, 1, 10);
  EXPECT_THAT(order, ElementsAre("global:7a", "global:7b", "global:-5", "set:100", "set:0", "set:0b"));
  order.clear();
  (void)*allocator.alloc(other, 1, 10);
  EXPECT_THAT(order, ElementsAre("global:7a", "global:7b", "global:-5", "other"));
  EXPECT_EQ(allocator.subscribe(999, note("none")).code(), ENOENT);
}

TEST(Allocator, Quotas) {
  Allocator allocator(4);  // 15 PASIDs
  EXPECT_EQ(allocator.create_set(0, SetType::Null, 0).code(), EINVAL);
  const SetId set = make_set(allocator, 3);
  EXPECT_EQ(allocator.quota_available(), 12u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(allocator.alloc(set, 1, 15).ok());
  EXPECT_EQ(allocator.alloc(set, 1, 15).code(), ENOSPC);

  ASSERT_TRUE(allocator.adjust_quota(set, 5).ok());  // up
  EXPECT_EQ(allocator.quota_available(), 10u);
  EXPECT_TRUE(allocator.alloc(set, 1, 15).ok());
  ASSERT_TRUE(allocator.adjust_quota(set, 4).ok());  // down to exactly what is charged
  EXPECT_EQ(allocator.alloc(set, 1, 15).code(), ENOSPC);
  EXPECT_EQ(allocator.adjust_quota(set, 3).code(), EINVAL);  // below charged
  EXPECT_EQ(allocator.adjust_quota(set, 4 + 11 + 1).code(), ENOSPC);  // past what is uncarved
  ASSERT_TRUE(allocator.adjust_quota(set, 15).ok());  // exactly everything
  EXPECT_EQ(allocator.quota_available(), 0u);
  EXPECT_EQ(allocator.create_set(0, SetType::Null, 1).code(), ENOSPC);
  ASSERT_TRUE(allocator.adjust_quota(set, 4).ok());
  EXPECT_EQ(allocator.create_set(0, SetType::Null, 12).code(), ENOSPC);
  EXPECT_TRUE(allocator.create_set(0, SetType::Null, 11).ok());
  EXPECT_EQ(allocator.adjust_quota(999, 1).code(), ENOENT);
}

TEST(Allocator, QuotaMayDropToZeroWhenNothingIsCharged) {
  Allocator allocator(4);
  const SetId set = make_set(allocator, 3);
  ASSERT_TRUE(allocator.adjust_quota(set, 0).ok());
  EXPECT_EQ(allocator.alloc(set, 1, 15).code(), ENOSPC);
  EXPECT_EQ(allocator.quota_available(), 15u);
}

TEST(Allocator, SetsAreIsolated) {
  Allocator allocator;
  const SetId mine = make_set(allocator);
  const SetId theirs = make_set(allocator);
  const Pasid pasid = *allocator.alloc(theirs, 1, 100, 42);
  EXPECT_EQ(allocator.find(mine, pasid).code(), EACCES);
  EXPECT_EQ(allocator.get(mine, pasid).code(), EACCES);
  EXPECT_EQ(allocator.free(mine, pasid).code(), EACCES);
  EXPECT_EQ(allocator.attach_data(mine, pasid, 1).code(), EACCES);
  EXPECT_EQ(allocator.attach_spid(mine, pasid, 1).code(), EACCES);
  EXPECT_EQ(*allocator.find(theirs, pasid), 42u);
  EXPECT_EQ(*allocator.find(kAnySet, pasid), 42u);
  EXPECT_TRUE(allocator.get(kAnySet, pasid).ok());
  EXPECT_EQ(refcount(allocator, pasid), 2u);
  EXPECT_EQ(allocator.find(mine, 5000).code(), ENOENT);  // unallocated beats EACCES
}

TEST(Allocator, GetterRejects) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  const Pasid pasid = *allocator.alloc(set, 1, 100, 7);
  EXPECT_EQ(*allocator.find(set, pasid, [](uintptr_t data) { return data == 7; }), 7u);
  EXPECT_EQ(allocator.find(set, pasid, [](uintptr_t data) { return data != 7; }).code(), ENOENT);
}

TEST(Allocator, PrivateData) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  const Pasid pasid = *allocator.alloc(set, 1, 100);
  EXPECT_EQ(*allocator.find(set, pasid), 0u);
  ASSERT_TRUE(allocator.attach_data(set, pasid, 0xabc).ok());
  EXPECT_EQ(*allocator.find(set, pasid), 0xabcu);
  EXPECT_EQ(allocator.info(pasid)->private_data, 0xabcu);
  ASSERT_TRUE(allocator.detach_data(set, pasid).ok());
  EXPECT_EQ(*allocator.find(set, pasid), 0u);
  EXPECT_EQ(allocator.attach_data(set, pasid + 1, 1).code(), ENOENT);
}

TEST(Allocator, GuestPasidMap) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  const SetId other = make_set(allocator);
  const Pasid a = *allocator.alloc(set, 1, 100);
  const Pasid b = *allocator.alloc(set, 1, 100);
  const Pasid c = *allocator.alloc(other, 1, 100);

  ASSERT_TRUE(allocator.attach_spid(set, a, 7).ok());
  EXPECT_EQ(allocator.attach_spid(set, b, 7).code(), EEXIST);  // spid taken in the set
  EXPECT_EQ(allocator.attach_spid(set, a, 8).code(), EEXIST);  // PASID already has one
  ASSERT_TRUE(allocator.attach_spid(other, c, 7).ok());        // same spid, other set
  EXPECT_EQ(*allocator.find_by_spid(set, 7), a);
  EXPECT_EQ(*allocator.find_by_spid(other, 7), c);
  EXPECT_EQ(allocator.info(a)->spid, 7u);
  EXPECT_EQ(allocator.find_by_spid(set, 8).code(), ENOENT);
  EXPECT_EQ(allocator.find_by_spid(kAnySet, 7).code(), EINVAL);

  EXPECT_EQ(*allocator.find_by_spid(set, 7, true), a);
  EXPECT_EQ(refcount(allocator, a), 2u);
  EXPECT_FALSE(allocator.put(a));

  ASSERT_TRUE(allocator.detach_spid(set, a).ok());
  EXPECT_EQ(allocator.detach_spid(set, a).code(), ENOENT);
  EXPECT_EQ(allocator.find_by_spid(set, 7).code(), ENOENT);
  EXPECT_EQ(allocator.info(a)->spid, std::nullopt);
  ASSERT_TRUE(allocator.attach_spid(set, b, 7).ok());
  EXPECT_EQ(*allocator.find_by_spid(set, 7), b);

  // Freeing unmaps at once, even while users keep the PASID FREE_PENDING.
  ASSERT_TRUE(allocator.get(set, b).ok());
  ASSERT_TRUE(allocator.free(set, b).ok());
  EXPECT_EQ(allocator.find_by_spid(set, 7).code(), ENOENT);
  ASSERT_TRUE(allocator.attach_spid(set, a, 7).ok());
  EXPECT_EQ(*allocator.find_by_spid(set, 7), a);
  EXPECT_TRUE(allocator.put(b));
}

TEST(Allocator, AllocWithSpidIsAtomic) {
  Allocator allocator;
  Recorder recorder(allocator);
  const SetId set = make_set(allocator);
  const Pasid pasid = *allocator.alloc(set, 1, 100, 5, 42u);
  EXPECT_EQ(*allocator.find_by_spid(set, 42), pasid);
  EXPECT_THAT(recorder.events(), ElementsAre(Event{PasidEvent::Alloc, pasid, set, 42u, 5}));

  EXPECT_EQ(allocator.alloc(set, 1, 100, 6, 42u).code(), EEXIST);
  EXPECT_EQ(allocator.allocated(), 1u);
  EXPECT_EQ(allocator.set_info(set)->allocated, 1u);
  EXPECT_EQ(recorder.events().size(), 1u);
  EXPECT_EQ(*allocator.alloc(set, 1, 100), pasid + 1);  // nothing was taken by the failure

  ASSERT_TRUE(allocator.free(set, pasid).ok());
  EXPECT_EQ(recorder.events().back(), (Event{PasidEvent::Free, pasid, set, 42u, 5}));
}

TEST(Allocator, ManyGuestPasidsSurviveGrowthAndDeletion) {
  Allocator allocator(14);
  const SetId set = make_set(allocator, 10000);
  std::map<uint32_t, Pasid> mapped;
  for (uint32_t spid = 1; spid <= 5000; ++spid) mapped[spid * 7919] = *allocator.alloc(set, 1, 16383, 0, spid * 7919);
  std::mt19937 random(1);
  for (int i = 0; i < 2500; ++i) {
    auto it = std::next(mapped.begin(), random() % mapped.size());
    if (i % 2) {
      ASSERT_TRUE(allocator.detach_spid(set, it->second).ok());
    } else {
      ASSERT_TRUE(allocator.free(set, it->second).ok());
    }
    EXPECT_EQ(allocator.find_by_spid(set, it->first).code(), ENOENT);
    mapped.erase(it);
  }
  for (const auto& [spid, pasid] : mapped) ASSERT_EQ(*allocator.find_by_spid(set, spid), pasid) << spid;
}

TEST(Allocator, RangeErrors) {
  Allocator allocator(8);  // 255 PASIDs
  const SetId set = make_set(allocator);
  EXPECT_EQ(allocator.alloc(set, 0, 10).code(), EINVAL);
  EXPECT_EQ(allocator.alloc(set, 11, 10).code(), EINVAL);
  EXPECT_EQ(allocator.alloc(set, 1, 256).code(), EINVAL);
  EXPECT_EQ(*allocator.alloc(set, 255, 255), 255u);
  EXPECT_EQ(allocator.alloc(set, 255, 255).code(), ENOSPC);
  EXPECT_EQ(*allocator.alloc(set, 10, 10), 10u);
  EXPECT_EQ(*allocator.alloc(set, 9, 11), 9u);
  EXPECT_EQ(*allocator.alloc(set, 9, 11), 11u);
  EXPECT_EQ(allocator.alloc(set, 9, 11).code(), ENOSPC);
  EXPECT_EQ(allocator.alloc(999, 1, 10).code(), ENOENT);
}

TEST(Allocator, LowestFreeFirstAcrossBitmapLevels) {
  Allocator allocator;
  const SetId set = make_set(allocator, allocator.capacity());
  // Fill past several 64-bit words and a summary word (4096 numbers).
  for (Pasid expected = 1; expected <= 9000; ++expected) ASSERT_EQ(*allocator.alloc(set, 1, 1u << 20 >> 1), expected);
  for (Pasid hole : {8999u, 4100u, 4095u, 64u, 63u}) ASSERT_TRUE(allocator.free(set, hole).ok());
  EXPECT_EQ(*allocator.alloc(set, 1, 9000), 63u);
  EXPECT_EQ(*allocator.alloc(set, 100, 9000), 4095u);
  EXPECT_EQ(*allocator.alloc(set, 4096, 9000), 4100u);
  EXPECT_EQ(*allocator.alloc(set, 4096, 9000), 8999u);
  EXPECT_EQ(*allocator.alloc(set, 1, 9000), 64u);
  EXPECT_EQ(allocator.alloc(set, 1, 9000).code(), ENOSPC);
  EXPECT_EQ(*allocator.alloc(set, 1, allocator.capacity()), 9001u);
  EXPECT_EQ(*allocator.alloc(set, 700000, allocator.capacity()), 700000u);
}

TEST(Allocator, BitmapAgreesWithAReferenceModel) {
  Allocator allocator(13);
  const SetId set = make_set(allocator, allocator.capacity());
  std::set<Pasid> taken;
  std::mt19937 random(7);
  for (int i = 0; i < 40000; ++i) {
    const Pasid a = 1 + random() % allocator.capacity();
    const Pasid b = 1 + random() % allocator.capacity();
    const Pasid min = std::min(a, b), max = std::max(a, b);
    if (random() % 3) {
      auto got = allocator.alloc(set, min, max);
      Pasid expected = min;
      while (expected <= max && taken.contains(expected)) ++expected;
      if (expected > max) {
        ASSERT_EQ(got.code(), ENOSPC);
      } else {
        ASSERT_EQ(*got, expected);
        taken.insert(expected);
      }
    } else if (!taken.empty()) {
      auto it = taken.lower_bound(min);
      if (it == taken.end()) it = taken.begin();
      ASSERT_TRUE(allocator.free(set, *it).ok());
      taken.erase(it);
    }
  }
  EXPECT_EQ(allocator.allocated(), taken.size());
}

TEST(Allocator, ExhaustsASmallSpace) {
  Allocator allocator(4);
  EXPECT_EQ(allocator.capacity(), 15u);
  const SetId first = make_set(allocator, 10);
  const SetId second = make_set(allocator, 5);
  for (Pasid expected = 1; expected <= 10; ++expected) ASSERT_EQ(*allocator.alloc(first, 1, 15), expected);
  for (Pasid expected = 11; expected <= 15; ++expected) ASSERT_EQ(*allocator.alloc(second, 1, 15), expected);
  EXPECT_EQ(allocator.allocated(), 15u);
  ASSERT_TRUE(allocator.adjust_quota(first, 10).ok());
  EXPECT_EQ(allocator.alloc(first, 1, 15).code(), ENOSPC);
  ASSERT_TRUE(allocator.free(second, 12).ok());
  ASSERT_TRUE(allocator.adjust_quota(second, 4).ok());
  ASSERT_TRUE(allocator.adjust_quota(first, 11).ok());
  EXPECT_EQ(*allocator.alloc(first, 1, 15), 12u);
  EXPECT_EQ(allocator.alloc(first, 1, 15).code(), ENOSPC);
}

TEST(Allocator, FreeSetFreesAllAndReturnsTheQuotaAfterTheLastPut) {
  Allocator allocator;
  Recorder recorder(allocator);
  const uint32_t capacity = allocator.capacity();
  const SetId set = make_set(allocator, 50);
  std::vector<Pasid> pasids;
  for (int i = 0; i < 5; ++i) pasids.push_back(*allocator.alloc(set, 1, 100, 0, 100u + i));
  ASSERT_TRUE(allocator.free(set, pasids[0]).ok());
  ASSERT_TRUE(allocator.get(set, pasids[1]).ok());  // keeps the set alive past free_set
  ASSERT_TRUE(allocator.get(set, pasids[2]).ok());
  EXPECT_EQ(allocator.quota_available(), capacity - 50);

  ASSERT_TRUE(allocator.free_set(set).ok());
  for (Pasid pasid : pasids) EXPECT_EQ(recorder.count(PasidEvent::Free, pasid), 1u) << pasid;
  EXPECT_EQ(allocator.free_set(set).code(), ENOENT);
  EXPECT_EQ(allocator.alloc(set, 1, 100).code(), ENOENT);
  EXPECT_EQ(allocator.get_set(set).code(), ENOENT);
  EXPECT_EQ(allocator.set_info(set)->allocated, 2u);  // draining
  EXPECT_EQ(allocator.set_info(set)->refcount, 0u);
  EXPECT_EQ(allocator.find_by_spid(set, 101).code(), ENOENT);
  EXPECT_EQ(allocator.quota_available(), capacity - 50);

  EXPECT_TRUE(allocator.put(pasids[1]));
  EXPECT_EQ(allocator.quota_available(), capacity - 50);
  EXPECT_TRUE(allocator.put(pasids[2]));
  EXPECT_EQ(allocator.quota_available(), capacity);
  EXPECT_EQ(allocator.set_info(set).code(), ENOENT);
  EXPECT_TRUE(allocator.sets().empty());
  EXPECT_EQ(allocator.allocated(), 0u);
  EXPECT_EQ(recorder.events().size(), 10u);  // five ALLOC, five FREE, nothing at reclaim
}

TEST(Allocator, SetReferences) {
  Allocator allocator;
  const SetId mm = make_set(allocator, 10, 0x1000, SetType::Mm);
  EXPECT_EQ(allocator.create_set(0x1000, SetType::Mm, 10).code(), EEXIST);
  const SetId file = make_set(allocator, 10, 3, SetType::File);
  EXPECT_EQ(*allocator.find_set(0x1000, SetType::Mm), mm);
  EXPECT_EQ(*allocator.find_set(3, SetType::File), file);
  EXPECT_EQ(allocator.find_set(0x2000, SetType::Mm).code(), ENOENT);
  EXPECT_EQ(allocator.find_set(0, SetType::Null).code(), EINVAL);
  EXPECT_EQ(allocator.set_info(mm)->refcount, 2u);
  ASSERT_TRUE(allocator.get_set(mm).ok());
  EXPECT_EQ(allocator.set_info(mm)->refcount, 3u);
  EXPECT_EQ(allocator.get_set(999).code(), ENOENT);

  // The last reference frees what is left.
  Recorder recorder(allocator);
  const Pasid pasid = *allocator.alloc(mm, 1, 100);
  allocator.put_set(mm);
  allocator.put_set(mm);
  EXPECT_EQ(allocator.info(pasid)->state, PasidState::Idle);
  allocator.put_set(mm);
  EXPECT_EQ(recorder.count(PasidEvent::Free, pasid), 1u);
  EXPECT_EQ(allocator.set_info(mm).code(), ENOENT);
  allocator.put_set(mm);  // harmless
  EXPECT_EQ(allocator.find_set(0x1000, SetType::Mm).code(), ENOENT);
  const SetId reborn = make_set(allocator, 10, 0x1000, SetType::Mm);
  EXPECT_NE(reborn, mm);  // a stale id never names a newer set
  EXPECT_EQ(allocator.set_info(mm).code(), ENOENT);
  EXPECT_EQ(allocator.alloc(mm, 1, 100).code(), ENOENT);
  const auto sets = allocator.sets();
  ASSERT_THAT(sets, ::testing::SizeIs(2));
  const auto listed = std::find_if(sets.begin(), sets.end(), [&](const SetInfo& info) { return info.id == file; });
  ASSERT_NE(listed, sets.end());
  EXPECT_EQ(listed->type, SetType::File);
  EXPECT_EQ(listed->token, 3u);
}

TEST(Allocator, SetSubscriptionsEndWithTheSet) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  int calls = 0;
  Subscription subscription = subscribe_to(allocator, set, [&](const Notification&) { ++calls; });
  const Pasid pasid = *allocator.alloc(set, 1, 10);
  ASSERT_TRUE(allocator.free_set(set).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(allocator.info(pasid).code(), ENOENT);
  const SetId next = make_set(allocator);
  (void)*allocator.alloc(next, 1, 10);
  EXPECT_EQ(calls, 2);
  subscription.reset();  // its set is gone: a no-op
}

TEST(Allocator, ForEach) {
  Allocator allocator;
  const SetId set = make_set(allocator);
  const SetId other = make_set(allocator);
  const Pasid a = *allocator.alloc(set, 1, 100, 1);
  (void)*allocator.alloc(other, 1, 100);
  const Pasid b = *allocator.alloc(set, 1, 100, 2, 9u);
  const Pasid c = *allocator.alloc(set, 1, 100, 3);
  ASSERT_TRUE(allocator.get(set, c).ok());
  ASSERT_TRUE(allocator.free(set, c).ok());
  std::vector<PasidInfo> seen;
  ASSERT_TRUE(allocator.for_each(set, [&](const PasidInfo& info) {
    seen.push_back(info);
    EXPECT_TRUE(allocator.info(info.pasid).ok());  // may call back in
  }).ok());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].pasid, a);
  EXPECT_EQ(seen[0].state, PasidState::Idle);
  EXPECT_EQ(seen[0].private_data, 1u);
  EXPECT_EQ(seen[1].pasid, b);
  EXPECT_EQ(seen[1].spid, 9u);
  EXPECT_EQ(seen[2].pasid, c);
  EXPECT_EQ(seen[2].state, PasidState::FreePending);
  EXPECT_EQ(seen[2].set, set);
  EXPECT_EQ(allocator.for_each(999, [](const PasidInfo&) {}).code(), ENOENT);
}

TEST(Allocator, BindAndUnbind) {
  Allocator allocator;
  Recorder recorder(allocator);
  const SetId set = make_set(allocator);
  const Pasid pasid = *allocator.alloc(set, 1, 10, 3, 4u);
  EXPECT_EQ(allocator.notify(pasid, PasidEvent::Alloc).code(), EINVAL);
  EXPECT_EQ(allocator.notify(pasid, PasidEvent::Free).code(), EINVAL);
  EXPECT_EQ(allocator.notify(pasid + 1, PasidEvent::Bind).code(), ENOENT);
  ASSERT_TRUE(allocator.notify(pasid, PasidEvent::Bind).ok());
  ASSERT_TRUE(allocator.get(set, pasid).ok());
  ASSERT_TRUE(allocator.free(set, pasid).ok());
  EXPECT_EQ(allocator.notify(pasid, PasidEvent::Bind).code(), ENOENT);
  ASSERT_TRUE(allocator.notify(pasid, PasidEvent::Unbind).ok());  // teardown after FREE
  EXPECT_TRUE(allocator.put(pasid));
  EXPECT_EQ(allocator.notify(pasid, PasidEvent::Unbind).code(), ENOENT);
  EXPECT_THAT(recorder.events(), ElementsAre(Event{PasidEvent::Alloc, pasid, set, 4u, 3},
                                             Event{PasidEvent::Bind, pasid, set, 4u, 3},
                                             Event{PasidEvent::Free, pasid, set, 4u, 3},
                                             Event{PasidEvent::Unbind, pasid, set, std::nullopt, 3}));
}

TEST(Allocator, Names) {
  EXPECT_STREQ(to_string(PasidState::FreePending), "free_pending");
  EXPECT_STREQ(to_string(PasidEvent::Unbind), "unbind");
  EXPECT_STREQ(to_string(SetType::Mm), "mm");
}

// Threads allocate, free, get, put, look up and map guest PASIDs in shared sets while
// subscribers come and go. Each PASID life must be exclusive, ALLOC and FREE must
// alternate per number, and everything must return to zero.
TEST(Allocator, MultiThreadedHammer) {
  constexpr int kThreads = 6;
  constexpr int kSets = 3;
  constexpr int kOpsPerThread = 40000;
  Allocator allocator(10);  // 1023 numbers: heavy reuse
  const uint32_t capacity = allocator.capacity();
  std::vector<SetId> sets;
  for (int s = 0; s < kSets; ++s) sets.push_back(make_set(allocator, capacity / kSets));  // the whole space

  std::vector<std::atomic<int>> owner(capacity + 1);       // allocating thread + 1, 0 if none
  std::vector<std::atomic<int>> announced(capacity + 1);   // 1 between ALLOC and FREE
  std::atomic<int> order_violations{0};
  std::atomic<uint64_t> allocs_seen{0}, frees_seen{0};
  auto watch = [&](const Notification& n) {
    if (n.event == PasidEvent::Alloc) {
      if (announced[n.pasid].exchange(1) != 0) ++order_violations;
      ++allocs_seen;
    } else if (n.event == PasidEvent::Free) {
      if (announced[n.pasid].exchange(0) != 1) ++order_violations;
      ++frees_seen;
    }
  };
  Subscription watcher = allocator.subscribe(watch);

  std::atomic<int> exclusivity_violations{0};
  std::atomic<int> unexpected_errors{0};
  auto worker = [&](int thread) {
    std::mt19937 random(thread);
    const SetId set = sets[thread % kSets];
    std::vector<Pasid> mine;
    Subscription churn;
    uint32_t next_spid = thread * 1000000;
    for (int op = 0; op < kOpsPerThread; ++op) {
      const Pasid any = 1 + random() % capacity;
      switch (random() % 9) {
        case 0:
        case 1: {
          auto pasid = allocator.alloc(set, 1, capacity, uintptr_t(thread) << 32 | op,
                                       random() % 4 ? std::nullopt : std::optional<uint32_t>(next_spid++));
          if (!pasid) {
            if (pasid.code() != ENOSPC) ++unexpected_errors;
            break;
          }
          if (owner[*pasid].exchange(thread + 1) != 0) ++exclusivity_violations;
          mine.push_back(*pasid);
          break;
        }
        case 2:
          if (!mine.empty()) {
            const size_t index = random() % mine.size();
            const Pasid pasid = mine[index];
            mine[index] = mine.back();
            mine.pop_back();
            // Released before free: once freed, the number may be handed out again.
            if (owner[pasid].exchange(0) != thread + 1) ++exclusivity_violations;
            if (!allocator.free(set, pasid)) ++unexpected_errors;
          }
          break;
        case 3: {  // a user reference: the life it pins must not change under it
          if (!allocator.get(kAnySet, any)) break;
          auto before = allocator.info(any);
          std::this_thread::yield();
          auto after = allocator.info(any);
          if (!before || !after || before->private_data != after->private_data || before->set != after->set)
            ++exclusivity_violations;
          allocator.put(any);
          break;
        }
        case 4: {
          auto found = allocator.find(set, any);
          if (!found && found.code() != ENOENT && found.code() != EACCES) ++unexpected_errors;
          break;
        }
        case 5:
          if (!mine.empty()) {
            const Pasid pasid = mine[random() % mine.size()];
            if (auto info = allocator.info(pasid); info && info->spid) {
              auto found = allocator.find_by_spid(set, *info->spid, true);
              if (!found || *found != pasid) ++unexpected_errors;
              if (found) allocator.put(*found);
              if (!allocator.detach_spid(set, pasid)) ++unexpected_errors;
            } else if (!allocator.attach_spid(set, pasid, next_spid++)) {
              ++unexpected_errors;
            }
          }
          break;
        case 6: {
          const bool take_reference = random() % 2;
          auto found = allocator.find_by_spid(set, random() % (next_spid + 1), take_reference);
          if (found && take_reference) allocator.put(*found);
          break;
        }
        case 7:
          if (churn.active()) {
            churn.reset();
          } else {
            churn = allocator.subscribe([](const Notification&) {}, int(random() % 3));
          }
          break;
        case 8:
          if (allocator.get_set(set)) allocator.put_set(set);
          break;
      }
    }
    for (const Pasid pasid : mine) {
      if (owner[pasid].exchange(0) != thread + 1) ++exclusivity_violations;
      if (!allocator.free(set, pasid)) ++unexpected_errors;
    }
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(exclusivity_violations.load(), 0);
  EXPECT_EQ(order_violations.load(), 0);
  EXPECT_EQ(unexpected_errors.load(), 0);
  EXPECT_GT(allocs_seen.load(), 0u);
  EXPECT_EQ(allocs_seen.load(), frees_seen.load());
  EXPECT_EQ(allocator.allocated(), 0u);
  for (const SetId set : sets) {
    EXPECT_EQ(allocator.set_info(set)->allocated, 0u);
    EXPECT_EQ(allocator.set_info(set)->refcount, 1u);
    EXPECT_TRUE(allocator.free_set(set).ok());
  }
  EXPECT_EQ(allocator.quota_available(), capacity);
  EXPECT_TRUE(allocator.sets().empty());
}

}  // namespace
}  // namespace ioasid
