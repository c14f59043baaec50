// SPDX-License-Identifier: MIT
#include "iommu/iotlb.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace ioasid::iommu {
namespace {

constexpr uint64_t k4K = 1ull << 12, k2M = 1ull << 21, k1G = 1ull << 30;

TEST(Iotlb, MissThenHitWithOffsetAndPermissions) {
  Iotlb tlb(64);
  EXPECT_FALSE(tlb.lookup(1, kRidPasid, 0x5000));
  tlb.fill(1, kRidPasid, 0x5123, 12, 0xabc000, kPermRead);
  auto hit = tlb.lookup(1, kRidPasid, 0x5ff8);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->hpa, 0xabcff8u);
  EXPECT_EQ(hit->page_shift, 12);
  EXPECT_EQ(hit->permissions, kPermRead);
  EXPECT_FALSE(tlb.lookup(1, kRidPasid, 0x6000));  // the next page
  const auto stats = tlb.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.fills, 1u);
}

TEST(Iotlb, TagsSeparateDomainsAndPasids) {
  Iotlb tlb(64);
  tlb.fill(1, 7, 0x1000, 12, 0x10000, kPermRead | kPermWrite);
  EXPECT_TRUE(tlb.lookup(1, 7, 0x1000));
  EXPECT_FALSE(tlb.lookup(2, 7, 0x1000));
  EXPECT_FALSE(tlb.lookup(1, 8, 0x1000));
  EXPECT_FALSE(tlb.lookup(1, kRidPasid, 0x1000));
}

TEST(Iotlb, HugePagesCoverTheirWholeRange) {
  Iotlb tlb(64);
  tlb.fill(3, 9, 2 * k2M + 5, 21, 8 * k2M, kPermRead);
  auto hit = tlb.lookup(3, 9, 3 * k2M - 8);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->hpa, 9 * k2M - 8);
  EXPECT_EQ(hit->page_shift, 21);
  tlb.fill(3, 9, 5 * k1G, 30, 2 * k1G, kPermWrite);
  hit = tlb.lookup(3, 9, 5 * k1G + 12345);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->hpa, 2 * k1G + 12345);
}

TEST(Iotlb, AFullSetEvictsAndCountsIt) {
  Iotlb tlb(Iotlb::kWays);  // one set
  for (uint64_t i = 0; i < Iotlb::kWays; ++i) tlb.fill(1, 0, i * k4K, 12, i * k4K, kPermRead);
  EXPECT_EQ(tlb.stats().evictions, 0u);
  tlb.fill(1, 0, 100 * k4K, 12, 0, kPermRead);
  EXPECT_EQ(tlb.stats().evictions, 1u);
  int present = 0;
  for (uint64_t i = 0; i < Iotlb::kWays; ++i) present += tlb.lookup(1, 0, i * k4K).has_value();
  EXPECT_EQ(present, static_cast<int>(Iotlb::kWays) - 1);
  EXPECT_TRUE(tlb.lookup(1, 0, 100 * k4K));
  tlb.fill(1, 0, 100 * k4K, 12, k4K, kPermRead);  // a refill of a cached page replaces it in place
  EXPECT_EQ(tlb.stats().evictions, 1u);
  EXPECT_EQ(tlb.lookup(1, 0, 100 * k4K)->hpa, k4K);
}

TEST(Iotlb, InvalidationGranularities) {
  Iotlb tlb(1024);
  auto fill_all = [&] {
    for (uint16_t domain : {1, 2})
      for (uint32_t pasid : {0u, 5u})
        for (uint64_t page = 0; page < 8; ++page) tlb.fill(domain, pasid, page * k4K, 12, page * k4K, kPermRead);
  };
  auto cached = [&](uint16_t domain, uint32_t pasid) {
    int n = 0;
    for (uint64_t page = 0; page < 8; ++page) n += tlb.lookup(domain, pasid, page * k4K).has_value();
    return n;
  };
  fill_all();
  tlb.invalidate_range(1, 5, 2 * k4K, 3 * k4K);  // pages 2, 3, 4
  EXPECT_EQ(cached(1, 5), 5);
  EXPECT_EQ(cached(1, 0), 8);
  EXPECT_EQ(cached(2, 5), 8);
  tlb.invalidate_domain_range(2, 0, k4K);  // page 0 of every PASID of domain 2
  EXPECT_EQ(cached(2, 0), 7);
  EXPECT_EQ(cached(2, 5), 7);
  tlb.invalidate_pasid(1, 0);
  EXPECT_EQ(cached(1, 0), 0);
  EXPECT_EQ(cached(1, 5), 5);
  tlb.invalidate_domain(2);
  EXPECT_EQ(cached(2, 0) + cached(2, 5), 0);
  EXPECT_EQ(cached(1, 5), 5);
  tlb.invalidate_all();
  EXPECT_EQ(cached(1, 5), 0);
  EXPECT_EQ(tlb.stats().invalidated, 3u + 2u + 8u + 14u + 5u);  // each call counts what it removed
}

TEST(Iotlb, RangeInvalidationHitsHugeEntriesItOverlaps) {
  Iotlb tlb(64);
  tlb.fill(1, 0, 0, 21, 0, kPermRead);
  tlb.invalidate_range(1, 0, k2M - k4K, k4K);  // the last 4K of the 2M page
  EXPECT_FALSE(tlb.lookup(1, 0, 0));
  tlb.fill(1, 0, 0, 21, 0, kPermRead);
  tlb.invalidate_range(1, 0, k2M, k4K);  // just past it
  EXPECT_TRUE(tlb.lookup(1, 0, 0));
  tlb.invalidate_range(1, 0, 0, ~0ull);  // everything, without wrapping
  EXPECT_FALSE(tlb.lookup(1, 0, 0));
}

// ---------------------------------------------------------------------------------
// Runs of 4K pages

TEST(IotlbRun, ARunIsOneEntryThatEveryPageOfItHits) {
  Iotlb tlb(64);
  const uint64_t first = 3 * k2M + 5 * k4K;
  tlb.fill(1, 7, first + 0x123, 12, 0x40'0000'0000, kPermRead | kPermWrite, 100);
  EXPECT_EQ(tlb.stats().fills, 1u);
  for (uint64_t page : {0u, 1u, 50u, 99u}) {
    auto hit = tlb.lookup(1, 7, first + page * k4K + 8, kPermWrite);
    ASSERT_TRUE(hit) << page;
    EXPECT_EQ(hit->hpa, 0x40'0000'0000 + page * k4K + 8);
    EXPECT_EQ(hit->page_shift, 12);
    EXPECT_EQ(hit->contiguous, (100 - page) * k4K - 8);
    EXPECT_EQ(hit->permissions, kPermRead | kPermWrite);
  }
  EXPECT_FALSE(tlb.lookup(1, 7, first - 1));
  EXPECT_FALSE(tlb.lookup(1, 7, first + 100 * k4K));
  EXPECT_FALSE(tlb.lookup(1, 8, first));  // tagged as any entry
  EXPECT_FALSE(tlb.lookup(2, 7, first));
}

TEST(IotlbRun, ShortRunsArePagesAndNoRunCrossesItsLeafTable) {
  Iotlb tlb(256);
  tlb.fill(1, 0, 0, 12, 0x10'0000, kPermRead, Iotlb::kMinRunPages - 1);
  EXPECT_EQ(tlb.stats().fills, Iotlb::kMinRunPages - 1);
  EXPECT_EQ(tlb.lookup(1, 0, 0)->contiguous, k4K);
  EXPECT_EQ(tlb.lookup(1, 0, (Iotlb::kMinRunPages - 2) * k4K)->hpa, 0x10'0000 + (Iotlb::kMinRunPages - 2) * k4K);
  EXPECT_FALSE(tlb.lookup(1, 0, (Iotlb::kMinRunPages - 1) * k4K));

  // 600 pages asked from 32 pages before a 2M boundary: the run ends there.
  tlb.fill(2, 0, k2M - 32 * k4K, 12, 0x20'0000, kPermRead, 600);
  EXPECT_EQ(tlb.lookup(2, 0, k2M - 32 * k4K)->contiguous, 32 * k4K);
  EXPECT_FALSE(tlb.lookup(2, 0, k2M));
}

TEST(IotlbRun, AnyInvalidationOfOneOfItsPagesDropsTheWholeRun) {
  Iotlb tlb(1024);
  const uint64_t first = 7 * k2M + 64 * k4K;
  auto fill = [&] { tlb.fill(1, 5, first, 12, 0x40'0000'0000, kPermRead, 256); };
  auto cached = [&] { return tlb.lookup(1, 5, first + 200 * k4K).has_value(); };
  fill();
  tlb.invalidate_range(1, 5, first - k4K, k4K);  // the page before
  tlb.invalidate_range(1, 5, first + 256 * k4K, k4K);  // the page after
  tlb.invalidate_range(1, 4, first, k4K);  // another PASID
  tlb.invalidate_domain_range(2, first, k4K);  // another domain
  EXPECT_TRUE(cached());
  EXPECT_EQ(tlb.stats().invalidated, 0u);

  tlb.invalidate_range(1, 5, first + 10 * k4K + 0x10, 1);  // one byte of page 10 (probing the sets)
  EXPECT_FALSE(cached());
  fill();
  tlb.invalidate_range(1, 5, first - k2M, k2M + k4K);  // a large range ending in page 0 (scanning)
  EXPECT_FALSE(cached());
  fill();
  tlb.invalidate_range(1, 5, first + 255 * k4K, 2 * k2M);  // the last page and beyond, from another leaf table
  EXPECT_FALSE(cached());
  fill();
  tlb.invalidate_domain_range(1, first + 100 * k4K, k4K);
  EXPECT_FALSE(cached());
  fill();
  tlb.invalidate_pasid(1, 5);
  EXPECT_FALSE(cached());
  EXPECT_EQ(tlb.stats().invalidated, 5u);
}

TEST(IotlbRun, AFillRacingWithAnInvalidationWithdrawsTheWholeRun) {
  Iotlb tlb(64);
  const uint64_t epoch = tlb.epoch();
  tlb.invalidate_range(3, 0, 0, k4K);  // any invalidation after the walk began
  EXPECT_FALSE(tlb.fill_if_current(epoch, 1, 0, 40 * k4K, 12, 0x10'0000, kPermRead, 64));
  for (uint64_t page = 40; page < 104; page += 21) EXPECT_FALSE(tlb.lookup(1, 0, page * k4K)) << page;
}

// Readers never see a torn entry: every hit must be the translation of its own page.
TEST(Iotlb, ConcurrentLookupsFillsAndInvalidationsStayConsistent) {
  Iotlb tlb(256);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, hits{0};
  auto hpa_of = [](uint64_t page) { return (page * 7919 + 3) << 12; };
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      uint64_t page = r;
      while (!stop) {
        page = (page * 6364136223846793005ull + 1442695040888963407ull) % 2048;
        if (auto hit = tlb.lookup(1, 0, page << 12)) {
          ++hits;
          if (hit->hpa != hpa_of(page)) ++bad;
        }
      }
    });
  // The writer keeps changing sets until the readers have seen enough hits, however
  // the scheduler shares the cores out (bounded, so a broken lookup fails, not hangs).
  constexpr uint64_t kWantedHits = 10000;
  threads.emplace_back([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (uint64_t round = 0; hits < kWantedHits && std::chrono::steady_clock::now() < deadline; ++round) {
      const uint64_t page = (round * 37) % 2048;
      tlb.fill(1, 0, page << 12, 12, hpa_of(page), kPermRead);
      if (round % 1000 == 0) tlb.invalidate_range(1, 0, 0, 512 << 12);
    }
    stop = true;
  });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GE(hits.load(), kWantedHits);
}

}  // namespace
}  // namespace ioasid::iommu
