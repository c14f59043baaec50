// SPDX-License-Identifier: MIT
// The page-table pool: HPAs, zeroed pages, the limit, atomics, and failures on HPAs
// that are not live tables.
#include "memory/hpa_space.h"
#include "memory/table_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ioasid {
namespace {

using ::testing::HasSubstr;

constexpr Hpa kBase = HpaSpace::kTableWindowBase;

// This process's resident anonymous memory (RssAnon), in KiB.
uint64_t anonymous_resident_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8));
  return 0;
}

TEST(TablePool, PagesAreAlignedInsideTheWindowAndDistinct) {
  TablePool pool(kBase, 1024);
  std::set<Hpa> seen;
  for (int i = 0; i < 600; ++i) {  // more than one slab
    auto table = pool.alloc();
    ASSERT_TRUE(table.ok()) << table.error().why;
    EXPECT_NE(*table, 0u);
    EXPECT_EQ(*table % kPageSize, 0u);
    EXPECT_TRUE(pool.contains(*table));
    EXPECT_GE(*table, kBase);
    EXPECT_LT(*table, kBase + 1024 * kPageSize);
    EXPECT_TRUE(seen.insert(*table).second);
  }
  EXPECT_EQ(pool.live_pages(), 600u);
}

TEST(TablePool, PagesStartZeroedAlsoWhenReused) {
  TablePool pool(kBase, 4);
  const Hpa table = *pool.alloc();
  for (uint64_t offset = 0; offset < kPageSize; offset += 8) {
    ASSERT_EQ(*pool.read64(table + offset), 0u);
    ASSERT_TRUE(pool.write64(table + offset, ~offset).ok());
  }
  EXPECT_EQ(*pool.read64(table + 8), ~uint64_t{8});
  pool.free(table);
  const Hpa again = *pool.alloc();
  EXPECT_EQ(again, table);  // last freed, first reused
  for (uint64_t offset = 0; offset < kPageSize; offset += 8)
    ASSERT_EQ(*pool.read64(again + offset), 0u);
}

TEST(TablePool, LimitGivesEnomemUntilAPageIsFreed) {
  TablePool pool(kBase, 3);
  std::vector<Hpa> tables;
  for (int i = 0; i < 3; ++i) tables.push_back(*pool.alloc());
  auto over = pool.alloc();
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.code(), ENOMEM);
  EXPECT_THAT(over.error().why, HasSubstr("limit"));
  EXPECT_EQ(pool.live_pages(), 3u);
  pool.free(tables[1]);
  EXPECT_EQ(pool.live_pages(), 2u);
  EXPECT_TRUE(pool.alloc().ok());
  EXPECT_FALSE(pool.alloc().ok());
}

TEST(TablePool, UnknownHpasFail) {
  TablePool pool(kBase, 1024);
  const Hpa table = *pool.alloc();
  EXPECT_EQ(pool.read64(table + 3).code(), EINVAL);                 // misaligned
  EXPECT_EQ(pool.read64(table + kPageSize).code(), EFAULT);         // in the slab, not live
  EXPECT_EQ(pool.read64(kBase + 600 * kPageSize).code(), EFAULT);   // no slab yet
  EXPECT_EQ(pool.read64(kBase + 1024 * kPageSize).code(), EFAULT);  // past the window
  EXPECT_EQ(pool.read64(0).code(), EFAULT);
  EXPECT_EQ(pool.write64(table + kPageSize, 1).code(), EFAULT);
  uint64_t expected = 0;
  EXPECT_EQ(pool.compare_exchange64(table + kPageSize, expected, 1).code(), EFAULT);
  pool.free(table);
  EXPECT_EQ(pool.read64(table).code(), EFAULT);  // freed
}

TEST(TablePool, BadFreesAreIgnoredAndCounted) {
  TablePool pool(kBase, 8);
  const Hpa table = *pool.alloc();
  pool.free(table + 8);              // not a page start
  pool.free(kBase + 5 * kPageSize);  // never allocated
  pool.free(12345);                  // outside the window
  pool.free(table);
  pool.free(table);  // double free
  EXPECT_EQ(pool.invalid_frees(), 4u);
  EXPECT_EQ(pool.live_pages(), 0u);
  // The double free did not put the page on the free list twice.
  const Hpa first = *pool.alloc();
  const Hpa second = *pool.alloc();
  EXPECT_NE(first, second);
}

// Freed pages go back to the system: once many tables are freed, the pool keeps only a
// few resident (for quick reuse), and the others are reused later as zeroed pages at
// their HPAs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

TEST(TablePool, FreedPagesGoBackToTheSystem) {
  if (kSanitized) GTEST_SKIP() << "a sanitizer's allocator keeps freed memory resident: RssAnon says nothing here";
  constexpr uint64_t kPages = 16384;  // 64 MiB
  TablePool pool(kBase, kPages);
  std::vector<Hpa> tables;
  tables.reserve(kPages);
  const uint64_t before = anonymous_resident_kib();
  for (uint64_t i = 0; i < kPages; ++i) {
    auto table = pool.alloc();
    ASSERT_TRUE(table.ok()) << table.error().why;
    ASSERT_TRUE(pool.write64(*table + 8 * (i % 512), ~i).ok());  // touched: resident
    tables.push_back(*table);
  }
  const uint64_t peak = anonymous_resident_kib();
  ASSERT_GE(peak, before + kPages * 4 * 9 / 10) << "the tables were not resident to begin with";
  for (Hpa table : tables) pool.free(table);
  EXPECT_GE(pool.released_pages(), kPages - TablePool::kResidentFreePages);
  const uint64_t after = anonymous_resident_kib();
  EXPECT_LE(after, before + 4096) << "RssAnon " << before << " KiB, " << peak << " KiB with " << kPages
                                  << " tables, " << after << " KiB once they were freed";

  // Every page comes back zeroed, at a distinct HPA of the window, up to the limit.
  std::set<Hpa> again;
  for (uint64_t i = 0; i < kPages; ++i) {
    auto table = pool.alloc();
    ASSERT_TRUE(table.ok()) << table.error().why;
    ASSERT_TRUE(pool.contains(*table));
    ASSERT_EQ(*pool.read64(*table + 8 * (i % 512)), 0u);
    ASSERT_EQ(*pool.read64(*table + 8 * ((i + 7) % 512)), 0u);
    again.insert(*table);
  }
  EXPECT_EQ(again.size(), kPages);
  EXPECT_EQ(pool.released_pages(), 0u);
  EXPECT_EQ(pool.alloc().code(), ENOMEM);
  EXPECT_EQ(std::set<Hpa>(tables.begin(), tables.end()), again) << "the same HPAs";
}

TEST(TablePool, CompareExchangeReportsTheCurrentValue) {
  TablePool pool(kBase, 4);
  const Hpa word = *pool.alloc() + 16;
  uint64_t expected = 0;
  EXPECT_TRUE(*pool.compare_exchange64(word, expected, 0x1003));
  expected = 0;
  EXPECT_FALSE(*pool.compare_exchange64(word, expected, 0x2003));
  EXPECT_EQ(expected, 0x1003u);
  EXPECT_EQ(*pool.read64(word), 0x1003u);
}

TEST(TablePool, CompareExchangeIsAtomicAcrossThreads) {
  HpaSpace space(16);
  const Hpa word = *space.alloc_table() + 8 * 7;
  constexpr int kThreads = 4;
  constexpr int kIncrements = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        uint64_t current = *space.read64(word);
        while (!*space.compare_exchange64(word, current, current + 1)) {
        }
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(*space.read64(word), uint64_t{kThreads} * kIncrements);
}

// The bound: page tables for 1 GiB mapped with 4 KiB pages fit in 2.1 MiB.
// A 4-level table needs 512 leaf tables plus one per upper level.
TEST(TablePool, OneGibOfFourKibPagesCostsAboutTwoMib) {
  HpaSpace space;
  std::vector<Hpa> tables;
  for (int i = 0; i < 512 + 3; ++i) tables.push_back(*space.alloc_table());
  EXPECT_EQ(space.stats().table_pages, 515u);
  EXPECT_LE(space.stats().table_pages * kPageSize, 2.1 * 1024 * 1024);
  for (Hpa table : tables) space.free_table(table);
  EXPECT_EQ(space.stats().table_pages, 0u);
}

TEST(HpaSpaceTables, TableWordsGoThroughPhysicalMemory) {
  HpaSpace space(8);
  PhysicalMemory& memory = space;
  const Hpa root = *memory.alloc_table();
  const Hpa leaf = *memory.alloc_table();
  ASSERT_TRUE(memory.write64(root, leaf | 3).ok());
  EXPECT_EQ(*memory.read64(root), leaf | 3);
  EXPECT_EQ(memory.read64(HpaSpace::kTableWindowBase + 7 * kPageSize).code(), EFAULT);
  EXPECT_EQ(memory.read64(0).code(), EFAULT);
  memory.free_table(leaf);
  memory.free_table(root);
  EXPECT_EQ(space.stats().table_pages, 0u);
}

}  // namespace
}  // namespace ioasid
