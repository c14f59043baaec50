// SPDX-License-Identifier: MIT
// The IOMMU's request path: the PASID cache and the PASID table in front of it, then
// Iommu::translate over a real IoPageTable (a memfd mapped through the HPA space):
// addresses, fault reasons, IOTLB and device-TLB caching and their flushes, dirty
// tracking, and a translate racing with map/unmap.
#include "iommu/io_pagetable.h"
#include "iommu/iommu.h"
#include "iommu/pasid_cache.h"
#include "iommu/pasid_table.h"
#include "pgtable/second_level_format.h"
#include "pgtable/walk.h"
#include "routed_table_test.h"

#include <gtest/gtest.h>
#include <linux/ioasid.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace ioasid::iommu {
namespace {

using test_support::k2M;
using test_support::k4K;
using test_support::MemfdMemory;
using test_support::pattern;
using test_support::second_level_entry;

constexpr uint32_t kIoasid = 42;
constexpr uint32_t kPasid = 5;
constexpr pgtable::Access kRead{.read = true};
constexpr pgtable::Access kWrite{.write = true};

PasidEntry entry_for(uint16_t domain, uint32_t ioasid = kIoasid) {
  return PasidEntry{.ioasid = ioasid, .domain = domain, .type = TranslationType::kSecondLevel, .levels = 4,
                    .root = 0x1000'0000'0000ull + domain * k4K};
}

// ---------------------------------------------------------------------------------
// PasidCache

TEST(PasidCache, MissThenFillThenHitWithEveryField) {
  PasidCache cache(64);
  EXPECT_EQ(cache.stats().capacity, 64u);
  EXPECT_FALSE(cache.lookup(1, 5));
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_EQ(cache.stats().hits, 0u);

  const PasidEntry entry{.ioasid = 0xfedcba98, .domain = 0xabcd, .type = TranslationType::kPassThrough,
                         .levels = 5, .root = 0x0000'7fff'ffff'f000ull};
  cache.fill(1, 5, entry);
  auto hit = cache.lookup(1, 5);
  ASSERT_TRUE(hit);
  EXPECT_EQ(*hit, entry);  // packed and unpacked without loss
  EXPECT_FALSE(cache.lookup(2, 5));  // another table's PASID 5
  EXPECT_FALSE(cache.lookup(1, 6));
  const auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 3u);
  EXPECT_EQ(stats.invalidated, 0u);
}

TEST(PasidCache, CapacityIsAPowerOfTwoAndAFillReplacesItsSlot) {
  EXPECT_EQ(PasidCache(1000).stats().capacity, 1024u);
  PasidCache one(1);  // a single slot: every key shares it
  one.fill(1, 1, entry_for(1));
  one.fill(1, 2, entry_for(2));
  EXPECT_FALSE(one.lookup(1, 1));
  ASSERT_TRUE(one.lookup(1, 2));
  EXPECT_EQ(one.lookup(1, 2)->domain, 2);
  one.fill(1, 2, entry_for(3));  // a refill replaces the entry
  EXPECT_EQ(one.lookup(1, 2)->domain, 3);
}

class PasidCacheInvalidation : public ::testing::Test {
 protected:
  // (table, pasid, domain): tables 1 and 2, domains 7 and 8.
  static constexpr std::array<std::array<uint32_t, 3>, 6> kEntries{
      {{1, 0, 7}, {1, 1, 7}, {1, 2, 8}, {2, 0, 7}, {2, 1, 8}, {3, 9, 8}}};

  void SetUp() override {
    for (const auto& [table, pasid, domain] : kEntries)
      cache_.fill(table, pasid, entry_for(static_cast<uint16_t>(domain)));
    // The keys must not share a slot, or the test would measure evictions.
    ASSERT_EQ(cached(), 0b111111u);
  }

  // Bit i: entry i of kEntries is cached with its own domain.
  unsigned cached() {
    unsigned bits = 0;
    for (size_t i = 0; i < kEntries.size(); ++i) {
      const auto& [table, pasid, domain] = kEntries[i];
      if (auto hit = cache_.lookup(table, pasid); hit && hit->domain == domain) bits |= 1u << i;
    }
    return bits;
  }

  PasidCache cache_{1024};
};

TEST_F(PasidCacheInvalidation, OneEntry) {
  cache_.invalidate(1, 1);
  EXPECT_EQ(cached(), 0b111101u);
  EXPECT_EQ(cache_.stats().invalidated, 1u);
  cache_.invalidate(1, 1);   // already gone
  cache_.invalidate(4, 0);   // never cached
  EXPECT_EQ(cache_.stats().invalidated, 1u);
  EXPECT_EQ(cached(), 0b111101u);
}

TEST_F(PasidCacheInvalidation, OneTable) {
  cache_.invalidate_table(1);
  EXPECT_EQ(cached(), 0b111000u);
  EXPECT_EQ(cache_.stats().invalidated, 3u);
}

TEST_F(PasidCacheInvalidation, OneDomain) {
  cache_.invalidate_domain(7);
  EXPECT_EQ(cached(), 0b110100u);
  EXPECT_EQ(cache_.stats().invalidated, 3u);
  cache_.invalidate_domain(9);
  EXPECT_EQ(cached(), 0b110100u);
  EXPECT_EQ(cache_.stats().invalidated, 3u);
}

TEST_F(PasidCacheInvalidation, EverythingAndStatsAddUp) {
  const auto before = cache_.stats();
  EXPECT_EQ(before.hits, kEntries.size());  // SetUp's check
  cache_.invalidate_all();
  EXPECT_EQ(cached(), 0u);
  const auto after = cache_.stats();
  EXPECT_EQ(after.invalidated, kEntries.size());
  EXPECT_EQ(after.misses, before.misses + kEntries.size());
  EXPECT_EQ(after.hits, before.hits);
}

// ---------------------------------------------------------------------------------
// PasidTable

TEST(PasidTable, TranslateLookupFillsTheCacheOnceThenHits) {
  PasidCache cache(64);
  PasidTable table(cache);
  EXPECT_FALSE(table.translate_lookup(kPasid));  // absent: nothing is cached
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_FALSE(table.translate_lookup(kPasid));
  EXPECT_EQ(cache.stats().misses, 2u);

  EXPECT_FALSE(table.set(kPasid, entry_for(7)));
  EXPECT_EQ(table.translate_lookup(kPasid), entry_for(7));  // miss, read, fill
  EXPECT_EQ(cache.stats().misses, 3u);
  EXPECT_EQ(cache.stats().hits, 0u);
  EXPECT_EQ(table.translate_lookup(kPasid), entry_for(7));
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 3u);
  EXPECT_EQ(table.lookup(kPasid), entry_for(7));  // the table's own view bypasses the cache
  EXPECT_EQ(cache.stats().hits, 1u);
}

TEST(PasidTable, SetAndClearAreSeenByTheNextTranslateLookup) {
  PasidCache cache(64);
  PasidTable table(cache);
  table.set(kPasid, entry_for(7));
  ASSERT_EQ(table.translate_lookup(kPasid), entry_for(7));  // cached now
  EXPECT_EQ(table.set(kPasid, entry_for(8)), entry_for(7));
  EXPECT_EQ(table.translate_lookup(kPasid), entry_for(8));
  EXPECT_EQ(table.translate_lookup(kPasid), entry_for(8));  // and that is what is cached
  EXPECT_EQ(table.clear(kPasid), entry_for(8));
  EXPECT_FALSE(table.translate_lookup(kPasid));
  EXPECT_FALSE(table.clear(kPasid));
  EXPECT_GE(cache.stats().invalidated, 2u);
}

TEST(PasidTable, TablesSharingACacheKeepTheirOwnEntries) {
  PasidCache cache(64);
  PasidTable first(cache), second(cache);
  first.set(kPasid, entry_for(7));
  second.set(kPasid, entry_for(8));
  for (int round = 0; round < 2; ++round) {  // the second round from the cache
    EXPECT_EQ(first.translate_lookup(kPasid), entry_for(7));
    EXPECT_EQ(second.translate_lookup(kPasid), entry_for(8));
  }
  second.clear(kPasid);
  EXPECT_EQ(first.translate_lookup(kPasid), entry_for(7));
  EXPECT_FALSE(second.translate_lookup(kPasid));
}

TEST(PasidTable, DestroyingATableInvalidatesItsCachedEntries) {
  PasidCache cache(1024);
  auto table = std::make_unique<PasidTable>(cache);
  PasidTable other(cache);
  other.set(kPasid, entry_for(9));
  ASSERT_TRUE(other.translate_lookup(kPasid));
  for (uint32_t pasid : {0u, 1u, 77u}) {
    table->set(pasid, entry_for(7));
    ASSERT_TRUE(table->translate_lookup(pasid));
  }
  const uint64_t invalidated = cache.stats().invalidated;
  table.reset();
  EXPECT_EQ(cache.stats().invalidated, invalidated + 3);  // its three, not the other's
  const uint64_t hits = cache.stats().hits;
  EXPECT_EQ(other.translate_lookup(kPasid), entry_for(9));
  EXPECT_EQ(cache.stats().hits, hits + 1);
}

// ---------------------------------------------------------------------------------
// Iommu::translate over an IoPageTable

class TranslateTest : public test_support::RoutedTableTest<8 * k2M, kPasid, kIoasid> {
 protected:
  static constexpr uint64_t kIova = 0x1000'0000;  // 2M aligned: 4K areas here use 4K pages

  TranslateResult translate(uint64_t iova, pgtable::Access access = kRead, Iotlb* device_tlb = nullptr,
                            uint32_t pasid = kPasid) {
    return iommu_.translate(pasids_, {.pasid = pasid, .iova = iova, .access = access}, device_tlb);
  }
  // A request for `length` bytes from iova: what one translation covers of them.
  uint64_t covered(uint64_t iova, uint64_t length, pgtable::Access access = kRead, Iotlb* device_tlb = nullptr) {
    auto result = iommu_.translate(pasids_, {.pasid = kPasid, .iova = iova, .access = access, .length = length},
                                   device_tlb);
    return result.ok() ? result.translated().contiguous : 0;
  }
  // The leaf entry of iova's 4K page, as the hardware walker finds it.
  Hpa leaf_of(uint64_t iova) {
    auto walk = pgtable::walk_second_level(iommu_.memory(), table_->root(), table_->levels(), iova, {});
    EXPECT_TRUE(walk.ok());
    return walk.ok() ? walk.translation().leaf_entry : 0;
  }
  // The set bits of the dirty bitmap of `pages` 4K pages at kIova.
  uint64_t dirty(uint64_t pages, bool clear) {
    std::array<uint64_t, 1> bitmap{};
    auto read = table_->read_dirty(kIova, pages * k4K, k4K, clear, bitmap);
    EXPECT_TRUE(read.ok()) << read.error().why;
    return bitmap[0];
  }
};

TEST_F(TranslateTest, TheHpaReachesTheMappedBytesAndRunsToThePageEnd) {
  ASSERT_TRUE(map(0, 4 * k4K, kIova).ok());
  const uint64_t iova = kIova + 2 * k4K + 0x123;
  auto result = translate(iova, kWrite);
  ASSERT_TRUE(result.ok()) << result.fault().reason;
  const Translated& translated = result.translated();
  EXPECT_EQ(translated.contiguous, k4K - 0x123);
  EXPECT_EQ(translated.ioasid, kIoasid);
  EXPECT_EQ(translated.hpa & (k4K - 1), 0x123u);

  const auto bytes = pattern(translated.contiguous, 1);
  ASSERT_TRUE(iommu_.memory().write(translated.hpa, bytes).ok());
  EXPECT_EQ(memory_.read(2 * k4K + 0x123, bytes.size()), bytes);

  // And the other way, on another page: what the client wrote is what the HPA holds.
  const auto client = pattern(64, 2);
  ASSERT_TRUE(memory_.write(3 * k4K + 8, client));
  auto other = translate(kIova + 3 * k4K + 8, kRead);
  ASSERT_TRUE(other.ok());
  std::vector<std::byte> seen(client.size());
  ASSERT_TRUE(iommu_.memory().read(other.translated().hpa, seen).ok());
  EXPECT_EQ(seen, client);
}

TEST_F(TranslateTest, ASuperpageIsContiguousToItsEnd) {
  auto iova = map(2 * k2M, 2 * k2M, std::nullopt);  // a 2M-aligned IOVA and HPA: 2M pages
  ASSERT_TRUE(iova.ok()) << iova.error().why;
  ASSERT_EQ(*iova % k2M, 0u);
  auto result = translate(*iova + k2M + 0x1234, kWrite);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.translated().contiguous, k2M - 0x1234);
  const auto bytes = pattern(100, 3);
  ASSERT_TRUE(iommu_.memory().write(result.translated().hpa, bytes).ok());
  EXPECT_EQ(memory_.read(3 * k2M + 0x1234, bytes.size()), bytes);
  // A hit in the 2M entry for another 4K page of it.
  const uint64_t hits = iommu_.iotlb().stats().hits;
  auto again = translate(*iova + k2M + 0x5000, kRead);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.translated().hpa, result.translated().hpa - 0x1234 + 0x5000);
  EXPECT_EQ(iommu_.iotlb().stats().hits, hits + 1);
}

TEST_F(TranslateTest, AMissWalksAndFillsThenTheSamePageHits) {
  ASSERT_TRUE(map(0, 2 * k4K, kIova).ok());
  const IotlbStats before = iommu_.iotlb().stats();
  auto first = translate(kIova + 0x10, kRead);
  ASSERT_TRUE(first.ok());
  IotlbStats now = iommu_.iotlb().stats();
  EXPECT_EQ(now.misses, before.misses + 1);
  EXPECT_EQ(now.fills, before.fills + 1);
  EXPECT_EQ(now.hits, before.hits);

  auto second = translate(kIova + 0xff0, kRead);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.translated().hpa, first.translated().hpa + 0xfe0);
  EXPECT_EQ(second.translated().contiguous, 0x10u);
  now = iommu_.iotlb().stats();
  EXPECT_EQ(now.hits, before.hits + 1);
  EXPECT_EQ(now.misses, before.misses + 1);
  EXPECT_EQ(now.fills, before.fills + 1);
  ASSERT_TRUE(iommu_.iotlb().lookup(table_->domain(), kPasid, kIova));  // tagged by domain and PASID

  // The next page is another entry: a miss.
  ASSERT_TRUE(translate(kIova + k4K, kRead).ok());
  EXPECT_EQ(iommu_.iotlb().stats().misses, before.misses + 2);
}

TEST_F(TranslateTest, NoPasidEntryIsPasidInvalid) {
  ASSERT_TRUE(map(0, k4K, kIova).ok());
  auto result = translate(kIova, kRead, nullptr, kPasid + 1);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PASID_INVALID));
  EXPECT_EQ(result.fault().ioasid, 0u);
  EXPECT_FALSE(result.fault().fetch_address);
}

TEST_F(TranslateTest, BeyondTheAddressWidthIsOutOfRange) {
  for (uint64_t iova : {uint64_t{1} << 48, ~uint64_t{0}}) {
    auto result = translate(iova, kRead);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_OOR_ADDRESS));
    EXPECT_EQ(result.fault().ioasid, kIoasid);
  }
  // The last IOVA is in range: unmapped, so it faults on the walk.
  auto last = translate((1ull << 48) - 1, kRead);
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
}

TEST_F(TranslateTest, AnUnmappedIovaIsAnAccessFaultAtATableEntry) {
  ASSERT_TRUE(map(0, k4K, kIova).ok());
  for (uint64_t iova : {kIova + k4K, kIova - k4K, kIova + (uint64_t{1} << 40)}) {
    auto result = translate(iova, kRead);
    ASSERT_FALSE(result.ok()) << std::hex << iova;
    EXPECT_EQ(result.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
    EXPECT_EQ(result.fault().ioasid, kIoasid);
    ASSERT_TRUE(result.fault().fetch_address);
    EXPECT_GE(*result.fault().fetch_address, HpaSpace::kTableWindowBase);  // an entry in a table page
    EXPECT_EQ(*result.fault().fetch_address % 8, 0u);
  }
  EXPECT_EQ(iommu_.iotlb().stats().fills, 0u);  // faults are never cached
}

TEST_F(TranslateTest, AWriteToAReadOnlyMappingIsAPermissionFault) {
  ASSERT_TRUE(map(0, k4K, kIova, /*readable=*/true, /*writeable=*/false).ok());
  ASSERT_TRUE(translate(kIova, kRead).ok());
  ASSERT_TRUE(translate(kIova, kRead).ok());  // cached, read-only
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto result = translate(kIova + 0x40, kWrite);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PERMISSION));
    EXPECT_EQ(result.fault().ioasid, kIoasid);
    EXPECT_TRUE(result.fault().fetch_address);
  }
  // A write-only mapping refuses reads.
  ASSERT_TRUE(map(k4K, k4K, kIova + k4K, /*readable=*/false, /*writeable=*/true).ok());
  EXPECT_TRUE(translate(kIova + k4K, kWrite).ok());
  auto read = translate(kIova + k4K, kRead);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PERMISSION));
}

TEST_F(TranslateTest, AfterUnmapTheCachedTranslationIsGone) {
  ASSERT_TRUE(map(0, 2 * k4K, kIova).ok());
  ASSERT_TRUE(translate(kIova, kWrite).ok());
  ASSERT_TRUE(translate(kIova + k4K, kRead).ok());
  ASSERT_TRUE(iommu_.iotlb().lookup(table_->domain(), kPasid, kIova));
  ASSERT_EQ(*table_->unmap(kIova, 2 * k4K), 2 * k4K);
  EXPECT_FALSE(iommu_.iotlb().lookup(table_->domain(), kPasid, kIova));
  for (uint64_t iova : {kIova, kIova + k4K}) {
    auto result = translate(iova, kRead);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
  }
  // Mapped again elsewhere in the memfd: the new bytes, not the old page.
  ASSERT_TRUE(map(4 * k4K, k4K, kIova).ok());
  const auto client = pattern(16, 9);
  ASSERT_TRUE(memory_.write(4 * k4K, client));
  auto result = translate(kIova, kRead);
  ASSERT_TRUE(result.ok());
  std::vector<std::byte> seen(client.size());
  ASSERT_TRUE(iommu_.memory().read(result.translated().hpa, seen).ok());
  EXPECT_EQ(seen, client);
}

TEST_F(TranslateTest, PassThroughIsTheIdentity) {
  pasids_.set(kRidPasid, PasidEntry{.type = TranslationType::kPassThrough});
  for (int round = 0; round < 2; ++round) {
    auto result = translate(0x1'2345'6789, kWrite, nullptr, kRidPasid);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result.translated().hpa, 0x1'2345'6789u);
    EXPECT_EQ(result.translated().contiguous, k4K - 0x789);
    EXPECT_EQ(result.translated().ioasid, 0u);
  }
  EXPECT_EQ(iommu_.iotlb().stats().fills, 0u);
  auto beyond = translate(1ull << 48, kRead, nullptr, kRidPasid);
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_OOR_ADDRESS));
}

TEST_F(TranslateTest, ChangingThePasidEntrySwitchesAddressSpaces) {
  ASSERT_TRUE(map(0, k4K, kIova).ok());
  auto second = IoPageTable::create(iommu_);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(memory_.map(iommu_, **second, 5 * k4K, k4K, kIova).ok());
  ASSERT_TRUE(memory_.write(0, pattern(8, 1)));
  ASSERT_TRUE(memory_.write(5 * k4K, pattern(8, 2)));
  auto byte_seen = [&]() -> std::vector<std::byte> {
    auto result = translate(kIova, kRead);
    if (!result.ok()) return {};
    std::vector<std::byte> seen(8);
    if (!iommu_.memory().read(result.translated().hpa, seen).ok()) return {};
    return seen;
  };
  EXPECT_EQ(byte_seen(), pattern(8, 1));
  EXPECT_EQ(byte_seen(), pattern(8, 1));  // PASID cache and IOTLB hits
  pasids_.set(kPasid, second_level_entry(**second, kIoasid + 1));
  EXPECT_EQ(byte_seen(), pattern(8, 2));
  EXPECT_EQ(translate(kIova, kRead).translated().ioasid, kIoasid + 1);
  pasids_.clear(kPasid);
  auto gone = translate(kIova, kRead);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PASID_INVALID));
}

// ---------------------------------------------------------------------------------
// Runs of 4K pages: one walk, one IOTLB entry (Iotlb::kMinRunPages and up)

TEST_F(TranslateTest, ARunOfPagesIsOneWalkAndOneEntryAndEveryPageOfItHits) {
  ASSERT_TRUE(map(0, 64 * k4K, kIova).ok());
  const IotlbStats before = iommu_.iotlb().stats();
  EXPECT_EQ(covered(kIova + 0x10, 64 * k4K), 64 * k4K - 0x10);
  IotlbStats now = iommu_.iotlb().stats();
  EXPECT_EQ(now.misses, before.misses + 1);
  EXPECT_EQ(now.fills, before.fills + 1);

  // Any page of it hits; a request within a page is handed that page, a longer one
  // the rest of the run it reaches.
  EXPECT_EQ(covered(kIova + 40 * k4K + 8, 1), k4K - 8);
  EXPECT_EQ(covered(kIova + 40 * k4K + 8, 3 * k4K), 3 * k4K);
  EXPECT_EQ(covered(kIova + 40 * k4K + 8, 100 * k4K), 24 * k4K - 8);
  now = iommu_.iotlb().stats();
  EXPECT_EQ(now.hits, before.hits + 3);
  EXPECT_EQ(now.misses, before.misses + 1);

  // The HPA of a page deep in the run is that page's bytes.
  const auto client = pattern(32, 7);
  ASSERT_TRUE(memory_.write(50 * k4K + 0x100, client));
  auto result = translate(kIova + 50 * k4K + 0x100, kRead);
  ASSERT_TRUE(result.ok());
  std::vector<std::byte> seen(client.size());
  ASSERT_TRUE(iommu_.memory().read(result.translated().hpa, seen).ok());
  EXPECT_EQ(seen, client);
}

TEST_F(TranslateTest, AShortRunIsCachedPageByPage) {
  ASSERT_TRUE(map(0, 4 * k4K, kIova).ok());
  const IotlbStats before = iommu_.iotlb().stats();
  EXPECT_EQ(covered(kIova, 4 * k4K), 4 * k4K);
  EXPECT_EQ(iommu_.iotlb().stats().fills, before.fills + 4);  // one walk, four entries
  EXPECT_EQ(covered(kIova + 3 * k4K, k4K), k4K);
  EXPECT_EQ(covered(kIova, 4 * k4K), k4K);  // the entry of page 0 only: runs are not rebuilt from pages
  EXPECT_EQ(iommu_.iotlb().stats().misses, before.misses + 1);
}

// Every map() is its own HPA range (with a guard gap): adjacent IOVAs, other frames.
// (A permission change inside one area: AnInvalidationOfOnePageDropsItsRun... below.)
TEST_F(TranslateTest, ARunEndsAtAHoleAndWhereAnotherAreaBegins) {
  ASSERT_TRUE(map(0, 20 * k4K, kIova).ok());
  ASSERT_TRUE(map(21 * k4K, 20 * k4K, kIova + 21 * k4K, /*readable=*/true, /*writeable=*/false).ok());
  ASSERT_TRUE(map(41 * k4K, 20 * k4K, kIova + 41 * k4K).ok());
  EXPECT_EQ(covered(kIova, 100 * k4K), 20 * k4K);  // page 20 is a hole
  EXPECT_EQ(translate(kIova + 20 * k4K).fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
  EXPECT_EQ(covered(kIova + 21 * k4K, 100 * k4K), 20 * k4K);  // next to the memfd bytes after it, elsewhere in HPA
  EXPECT_EQ(covered(kIova + 41 * k4K, 100 * k4K), 20 * k4K);
  EXPECT_EQ(covered(kIova + 30 * k4K, k4K, kWrite), 0u);  // refused: a permission fault
}

TEST_F(TranslateTest, AnInvalidationOfOnePageDropsItsRunWhichStaysStaleUntilThen) {
  ASSERT_TRUE(map(0, 64 * k4K, kIova).ok());
  ASSERT_EQ(covered(kIova, 64 * k4K, kWrite), 64 * k4K);
  // Page 30 becomes read-only in the table, without an invalidation: the cached run
  // still grants the write, on page 30 and across it.
  const Hpa leaf = leaf_of(kIova + 30 * k4K);
  const uint64_t value = *iommu_.memory().read64(leaf);
  ASSERT_TRUE(iommu_.memory().write64(leaf, value & ~pgtable::second_level::kWrite).ok());
  EXPECT_EQ(covered(kIova + 30 * k4K, k4K, kWrite), k4K);
  EXPECT_EQ(covered(kIova, 64 * k4K, kWrite), 64 * k4K);

  // Invalidating another page of the run drops all of it: the next request walks and
  // sees page 30 as it is now.
  const uint64_t misses = iommu_.iotlb().stats().misses;
  iommu_.flush_range(table_->domain(), kIova + 10 * k4K, k4K);
  EXPECT_FALSE(iommu_.iotlb().lookup(table_->domain(), kPasid, kIova + 40 * k4K));
  EXPECT_EQ(covered(kIova, 64 * k4K, kWrite), 30 * k4K);
  EXPECT_EQ(iommu_.iotlb().stats().misses, misses + 2);
  EXPECT_EQ(translate(kIova + 30 * k4K, kWrite).fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PERMISSION));
  EXPECT_EQ(covered(kIova + 30 * k4K, 34 * k4K, kRead), k4K);  // its own rights: a run of one page
  EXPECT_EQ(covered(kIova + 31 * k4K, 33 * k4K, kWrite), 33 * k4K);
  ASSERT_TRUE(iommu_.memory().write64(leaf, value).ok());
}

TEST_F(TranslateTest, ARunSetsAccessedAndDirtyOnEachOfItsPages) {
  ASSERT_TRUE(map(0, 64 * k4K, kIova).ok());
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  auto accessed = [&](uint64_t page) {
    return (*iommu_.memory().read64(leaf_of(kIova + page * k4K)) & pgtable::second_level::kAccessed) != 0;
  };
  // Read pages 2 to 33: A on each, no D; cached without write rights.
  ASSERT_EQ(covered(kIova + 2 * k4K, 32 * k4K), 32 * k4K);
  for (uint64_t page = 0; page < 40; ++page) EXPECT_EQ(accessed(page), page >= 2 && page < 34) << page;
  EXPECT_EQ(dirty(64, /*clear=*/false), 0u);
  // Writing pages 4 to 35 walks again (the cached run is clean) and dirties just those.
  const uint64_t misses = iommu_.iotlb().stats().misses;
  ASSERT_EQ(covered(kIova + 4 * k4K, 32 * k4K, kWrite), 32 * k4K);
  EXPECT_EQ(iommu_.iotlb().stats().misses, misses + 1);
  EXPECT_EQ(dirty(64, /*clear=*/true), ((1ull << 32) - 1) << 4);
  // The clear flushed the run: the next write walks and sets D again.
  ASSERT_EQ(covered(kIova + 4 * k4K, 2 * k4K, kWrite), 2 * k4K);
  EXPECT_EQ(dirty(64, /*clear=*/false), 0b11u << 4);
}

TEST_F(TranslateTest, TheDeviceTlbCachesRunsAndDropsThemAsTheIotlbDoes) {
  ASSERT_TRUE(map(0, 64 * k4K, kIova).ok());
  Iotlb device(64);
  auto registration = iommu_.register_device_tlb(device);
  ASSERT_EQ(covered(kIova, 64 * k4K, kWrite, &device), 64 * k4K);
  EXPECT_EQ(device.stats().fills, 1u);
  const IotlbStats iommu_before = iommu_.iotlb().stats();
  EXPECT_EQ(covered(kIova + 20 * k4K, 44 * k4K, kWrite, &device), 44 * k4K);
  EXPECT_EQ(device.stats().hits, 1u);
  EXPECT_EQ(iommu_.iotlb().stats().hits, iommu_before.hits);  // the IOMMU was not asked

  // Stale until invalidated, in the device-TLB too; one page's flush drops the run.
  const Hpa leaf = leaf_of(kIova + 50 * k4K);
  const uint64_t value = *iommu_.memory().read64(leaf);
  ASSERT_TRUE(iommu_.memory().write64(leaf, 0).ok());
  EXPECT_EQ(covered(kIova + 50 * k4K, k4K, kWrite, &device), k4K);
  iommu_.flush_range(table_->domain(), kIova + 63 * k4K, k4K);
  EXPECT_FALSE(device.lookup(table_->domain(), kPasid, kIova));
  EXPECT_FALSE(iommu_.iotlb().lookup(table_->domain(), kPasid, kIova));
  EXPECT_EQ(covered(kIova, 64 * k4K, kWrite, &device), 50 * k4K);
  EXPECT_EQ(translate(kIova + 50 * k4K, kWrite, &device).fault().reason,
            static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
  ASSERT_TRUE(iommu_.memory().write64(leaf, value).ok());

  // An IOTLB hit fills the device-TLB with the run from the page asked for.
  Iotlb other(64);
  auto other_registration = iommu_.register_device_tlb(other);
  iommu_.flush_domain(table_->domain());
  ASSERT_EQ(covered(kIova, 64 * k4K, kRead), 64 * k4K);
  ASSERT_EQ(covered(kIova + 16 * k4K, 48 * k4K, kRead, &other), 48 * k4K);
  auto hit = other.lookup(table_->domain(), kPasid, kIova + 63 * k4K);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->contiguous, k4K);
  EXPECT_FALSE(other.lookup(table_->domain(), kPasid, kIova + 15 * k4K));
}

// ---------------------------------------------------------------------------------
// Device-TLB

TEST_F(TranslateTest, TheDeviceTlbAnswersFirstAndTheIommusFlushesReachIt) {
  ASSERT_TRUE(map(0, 2 * k4K, kIova).ok());
  Iotlb device(64);
  auto registration = iommu_.register_device_tlb(device);
  ASSERT_TRUE(registration.active());

  auto first = translate(kIova + 0x20, kWrite, &device);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(device.stats().misses, 1u);
  EXPECT_EQ(device.stats().fills, 1u);
  const IotlbStats iommu_before = iommu_.iotlb().stats();
  auto second = translate(kIova + 0x30, kWrite, &device);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.translated().hpa, first.translated().hpa + 0x10);
  EXPECT_EQ(second.translated().contiguous, k4K - 0x30);
  EXPECT_EQ(device.stats().hits, 1u);
  const IotlbStats iommu_after = iommu_.iotlb().stats();
  EXPECT_EQ(iommu_after.hits, iommu_before.hits);  // the IOMMU was not asked
  EXPECT_EQ(iommu_after.misses, iommu_before.misses);

  // A range flush empties both.
  iommu_.flush_range(table_->domain(), kIova, k4K);
  EXPECT_FALSE(device.lookup(table_->domain(), kPasid, kIova));
  EXPECT_FALSE(iommu_.iotlb().lookup(table_->domain(), kPasid, kIova));

  // And so does an unmap.
  ASSERT_TRUE(translate(kIova + k4K, kRead, &device).ok());
  ASSERT_TRUE(device.lookup(table_->domain(), kPasid, kIova + k4K));
  ASSERT_EQ(*table_->unmap(kIova, 2 * k4K), 2 * k4K);
  EXPECT_FALSE(device.lookup(table_->domain(), kPasid, kIova + k4K));
  auto after = translate(kIova + k4K, kRead, &device);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
}

TEST_F(TranslateTest, AfterTheRegistrationEndsFlushesLeaveTheDeviceTlbAlone) {
  ASSERT_TRUE(map(0, k4K, kIova).ok());
  Iotlb device(64);
  auto registration = iommu_.register_device_tlb(device);
  Iotlb other(64);
  auto other_registration = iommu_.register_device_tlb(other);
  ASSERT_TRUE(translate(kIova, kRead, &device).ok());
  ASSERT_TRUE(translate(kIova, kRead, &other).ok());
  registration.reset();
  EXPECT_FALSE(registration.active());
  iommu_.flush_domain(table_->domain());
  EXPECT_TRUE(device.lookup(table_->domain(), kPasid, kIova));   // no longer reached
  EXPECT_FALSE(other.lookup(table_->domain(), kPasid, kIova));   // still registered
  const uint64_t invalidated = device.stats().invalidated;
  iommu_.flush_range(table_->domain(), kIova, k4K);
  iommu_.flush_pasid(table_->domain(), kPasid);
  EXPECT_EQ(device.stats().invalidated, invalidated);
  EXPECT_TRUE(device.lookup(table_->domain(), kPasid, kIova));
}

// ---------------------------------------------------------------------------------
// Dirty tracking

TEST_F(TranslateTest, WithDirtyTrackingAReadDoesNotLetALaterWriteSkipTheWalk) {
  ASSERT_TRUE(map(0, 4 * k4K, kIova).ok());
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  ASSERT_TRUE(translate(kIova, kRead).ok());
  ASSERT_TRUE(translate(kIova + 0x100, kRead).ok());  // a hit: cached, without write rights
  EXPECT_EQ(dirty(4, /*clear=*/false), 0u);
  const uint64_t misses = iommu_.iotlb().stats().misses;
  ASSERT_TRUE(translate(kIova + 0x200, kWrite).ok());
  EXPECT_EQ(iommu_.iotlb().stats().misses, misses + 1);  // it walked
  EXPECT_EQ(dirty(4, /*clear=*/false), 0b0001u);
  EXPECT_EQ(dirty(4, /*clear=*/false), 0b0001u);  // not cleared by a plain read
}

TEST_F(TranslateTest, WithDirtyTrackingReadsAloneReportNothing) {
  ASSERT_TRUE(map(0, 4 * k4K, kIova).ok());
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  for (uint64_t page = 0; page < 4; ++page) ASSERT_TRUE(translate(kIova + page * k4K, kRead).ok());
  EXPECT_EQ(dirty(4, /*clear=*/true), 0u);
}

TEST_F(TranslateTest, ReadDirtyWithClearMakesTheNextWriteReportAgain) {
  ASSERT_TRUE(map(0, 4 * k4K, kIova).ok());
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  ASSERT_TRUE(translate(kIova + k4K, kWrite).ok());
  ASSERT_TRUE(translate(kIova + 3 * k4K + 8, kWrite).ok());
  EXPECT_EQ(dirty(4, /*clear=*/true), 0b1010u);
  EXPECT_EQ(dirty(4, /*clear=*/false), 0u);  // cleared
  // The write rights cached by the first writes were flushed with the clear: this
  // write walks and sets D again.
  ASSERT_TRUE(translate(kIova + k4K + 0x10, kWrite).ok());
  EXPECT_EQ(dirty(4, /*clear=*/false), 0b0010u);
}

TEST_F(TranslateTest, EnablingDirtyTrackingDropsWriteRightsCachedBefore) {
  ASSERT_TRUE(map(0, 2 * k4K, kIova).ok());
  ASSERT_TRUE(translate(kIova, kWrite).ok());  // cached with write rights, D not tracked
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  EXPECT_EQ(dirty(2, /*clear=*/false), 0u);  // tracking starts clean
  ASSERT_TRUE(translate(kIova, kWrite).ok());
  EXPECT_EQ(dirty(2, /*clear=*/false), 0b01u);
  ASSERT_TRUE(table_->set_dirty_tracking(false).ok());
  std::array<uint64_t, 1> bitmap{};
  EXPECT_EQ(table_->read_dirty(kIova, k4K, k4K, false, bitmap).code(), EINVAL);
}

TEST_F(TranslateTest, HalfLeafMarksAndDmaWritesShareTheEnginesDirtyBits) {
  using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
  const auto ranges = [&](bool clear) {
    Ranges out;
    auto read = table_->read_dirty_ranges(kIova, 4 * k4K, clear,
                                          [&](uint64_t at, uint64_t size) { out.emplace_back(at, size); });
    EXPECT_TRUE(read.ok()) << read.error().why;
    return out;
  };
  ASSERT_TRUE(map(0, 4 * k4K, kIova).ok());
  EXPECT_EQ(table_->mark_half_dirty(kIova).code(), EINVAL);  // tracking off
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  auto marked = table_->mark_half_dirty(kIova + 2 * k4K + 0x800);
  ASSERT_TRUE(marked.ok());
  EXPECT_TRUE(*marked);
  ASSERT_TRUE(translate(kIova + 0x10, kWrite).ok());  // a DMA write dirties its whole leaf
  EXPECT_EQ(ranges(false), (Ranges{{kIova, k4K}, {kIova + 2 * k4K + 0x800, 0x800}}));
  // /dev/ioasid's per-page read sees both, and clears both.
  EXPECT_EQ(dirty(4, /*clear=*/true), 0b0101u);
  EXPECT_TRUE(ranges(false).empty());
  // Cleared and flushed: the next write walks and sets D again.
  ASSERT_TRUE(translate(kIova + 0x20, kWrite).ok());
  EXPECT_EQ(ranges(true), (Ranges{{kIova, k4K}}));
  // Tracking starts clean, the halves too.
  ASSERT_TRUE(table_->mark_half_dirty(kIova + 3 * k4K).ok());
  ASSERT_TRUE(table_->set_dirty_tracking(false).ok());
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  EXPECT_TRUE(ranges(false).empty());
  auto outside = table_->mark_half_dirty(kIova + 8 * k4K);
  ASSERT_TRUE(outside.ok());
  EXPECT_FALSE(*outside);
  EXPECT_EQ(table_->read_dirty_ranges(kIova, 8 * k4K, false, [](uint64_t, uint64_t) {}).code(), EINVAL);
}

// ---------------------------------------------------------------------------------
// IOTLB fills racing with invalidations

TEST(IotlbEpoch, AFillWithAStaleEpochCachesNothing) {
  Iotlb tlb(64);
  const uint64_t epoch = tlb.epoch();
  EXPECT_TRUE(tlb.fill_if_current(epoch, 1, kPasid, 0x5000, 12, 0xabc000, kPermRead));
  EXPECT_TRUE(tlb.lookup(1, kPasid, 0x5000));

  const uint64_t before_walk = tlb.epoch();
  tlb.invalidate_range(2, 0, 0, k4K);  // any invalidation, even one removing nothing
  EXPECT_NE(tlb.epoch(), before_walk);
  EXPECT_FALSE(tlb.fill_if_current(before_walk, 1, kPasid, 0x7000, 12, 0xdef000, kPermRead));
  EXPECT_FALSE(tlb.lookup(1, kPasid, 0x7000));
  EXPECT_TRUE(tlb.fill_if_current(tlb.epoch(), 1, kPasid, 0x7000, 12, 0xdef000, kPermRead));
  EXPECT_TRUE(tlb.lookup(1, kPasid, 0x7000));
}

// One thread translates an IOVA range over and over while another maps and unmaps it.
// Once an unmap has returned, no translation in the range may succeed: a walk that
// raced with it must not leave its result in the IOTLB or the device-TLB. The TLBs
// are tiny and the translator cycles over more pages than they hold, so it walks on
// nearly every request and its walks overlap the unmaps.
TEST(TranslateRace, NoTranslationSurvivesAnUnmapThatRacedWithIt) {
  constexpr uint64_t kIova = 0x1000'0000, kPages = 16;
  Iommu iommu({.iotlb_entries = 8});
  MemfdMemory memory((kPages + 1) * k4K);
  ASSERT_TRUE(memory.ok());
  auto created = IoPageTable::create(iommu);
  ASSERT_TRUE(created.ok());
  std::unique_ptr<IoPageTable> table = std::move(*created);
  // A page that stays mapped next to the range keeps its leaf table alive, so an unmap
  // only clears entries and frees no table page (freeing one waits for the walks in
  // flight): the walks race with the unmap, and only the flush and the fill epochs
  // keep their results out of the TLBs.
  ASSERT_TRUE(memory.map(iommu, *table, kPages * k4K, k4K, kIova + kPages * k4K).ok());
  PasidTable pasids(iommu.pasid_cache());
  pasids.set(kPasid, second_level_entry(*table, kIoasid));
  Iotlb device(8);
  auto registration = iommu.register_device_tlb(device);
  auto translate = [&](uint64_t iova, pgtable::Access access, Iotlb* device_tlb) {
    return iommu.translate(pasids, {.pasid = kPasid, .iova = iova, .access = access}, device_tlb);
  };

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> successes{0}, bad_offsets{0};
  std::thread translator([&] {
    for (uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      const uint64_t offset = (n % kPages) * k4K + ((n * 0x88) & (k4K - 1));
      auto result = translate(kIova + offset, (n & 1) ? kWrite : kRead, (n & 2) ? &device : nullptr);
      if (!result.ok()) continue;
      successes.fetch_add(1, std::memory_order_relaxed);
      if ((result.translated().hpa & (k4K - 1)) != (offset & (k4K - 1))) bad_offsets.fetch_add(1);
    }
  });

  constexpr int kRounds = 500;
  int stale = 0, rounds = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (; rounds < kRounds && std::chrono::steady_clock::now() < deadline; ++rounds) {
    auto mapped = memory.map(iommu, *table, 0, kPages * k4K, kIova);
    ASSERT_TRUE(mapped.ok()) << mapped.error().why;
    // Let the translator get going on the mapping (bounded: the cores may be busy).
    const uint64_t seen = successes.load();
    const auto wait_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
    while (successes.load() < seen + 4 && std::chrono::steady_clock::now() < wait_until) std::this_thread::yield();
    ASSERT_EQ(*table->unmap(kIova, kPages * k4K), kPages * k4K);
    for (uint64_t page = 0; page < kPages; ++page) {
      const uint64_t iova = kIova + page * k4K;
      if (iommu.iotlb().lookup(table->domain(), kPasid, iova) || device.lookup(table->domain(), kPasid, iova) ||
          translate(iova, kRead, nullptr).ok() || translate(iova, kRead, &device).ok())
        ++stale;
    }
  }
  stop = true;
  translator.join();

  EXPECT_EQ(stale, 0) << "stale translations in " << rounds << " rounds";
  EXPECT_EQ(bad_offsets.load(), 0u);
  EXPECT_GT(successes.load(), 0u);
  auto last = translate(kIova, kWrite, &device);
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.fault().reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
}

}  // namespace
}  // namespace ioasid::iommu
