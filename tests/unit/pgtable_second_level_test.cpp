// SPDX-License-Identifier: MIT
// The VT-d second-level page-table format: bit layout, SecondLevelTable map/unmap,
// the hardware walker, dirty tracking, the dump, and a randomized comparison with a
// reference model.
#include "pgtable/dump.h"
#include "pgtable/geometry.h"
#include "pgtable/leaves.h"
#include "pgtable/second_level_format.h"
#include "pgtable/second_level_table.h"
#include "pgtable/walk.h"

#include <linux/ioasid.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace ioasid::pgtable {
namespace {

namespace sl = second_level;

constexpr uint64_t k4K = kPageSize4K;
constexpr uint64_t k2M = kPageSize2M;
constexpr uint64_t k1G = kPageSize1G;

// Table pages at a window of fake HPAs, with an optional page limit (ENOMEM past it).
// A freed page, or an HPA outside the window, reads as unbacked, so a use after free
// shows up as a failed read rather than passing silently.
class PoolMemory : public PhysicalMemory {
 public:
  static constexpr Hpa kWindowBase = 0x10'0000'0000;

  explicit PoolMemory(size_t page_limit = std::numeric_limits<size_t>::max()) : page_limit_(page_limit) {}

  Result<uint64_t> read64(Hpa hpa) override {
    auto* word = find(hpa);
    if (word == nullptr) return fail(EFAULT, "HPA {:#x} is not backed", hpa);
    return word->load(std::memory_order_acquire);
  }
  Result<void> write64(Hpa hpa, uint64_t value) override {
    auto* word = find(hpa);
    if (word == nullptr) return fail(EFAULT, "HPA {:#x} is not backed", hpa);
    word->store(value, std::memory_order_release);
    return success();
  }
  Result<bool> compare_exchange64(Hpa hpa, uint64_t& expected, uint64_t desired) override {
    if (fail_compare_exchange) return fail(EIO, "compare-and-swap refused");
    auto* word = find(hpa);
    if (word == nullptr) return fail(EFAULT, "HPA {:#x} is not backed", hpa);
    return word->compare_exchange_strong(expected, desired);
  }
  Result<Hpa> alloc_table() override {
    if (in_use_ >= page_limit_) return fail(ENOMEM, "page limit {} reached", page_limit_);
    size_t index;
    if (!free_.empty()) {
      index = *free_.begin();
      free_.erase(free_.begin());
    } else {
      index = pages_.size();
      pages_.push_back(std::make_unique<Page>());
    }
    Page& page = *pages_[index];
    for (auto& word : page.words) word.store(0, std::memory_order_relaxed);
    page.in_use = true;
    ++in_use_;
    return kWindowBase + index * kPageSize;
  }
  void free_table(Hpa table) override {
    const size_t index = (table - kWindowBase) / kPageSize;
    if (table < kWindowBase || index >= pages_.size() || !pages_[index]->in_use || table % kPageSize != 0) {
      ADD_FAILURE() << fmt::format("free_table({:#x}) of a page not allocated", table);
      return;
    }
    pages_[index]->in_use = false;
    free_.insert(index);
    --in_use_;
  }

  size_t pages_in_use() const { return in_use_; }
  void set_page_limit(size_t limit) { page_limit_ = limit; }

  // Every page in use and its contents: equal snapshots mean an unchanged table.
  std::map<Hpa, std::vector<uint64_t>> snapshot() const {
    std::map<Hpa, std::vector<uint64_t>> pages;
    for (size_t index = 0; index < pages_.size(); ++index) {
      if (!pages_[index]->in_use) continue;
      auto& words = pages[kWindowBase + index * kPageSize];
      for (const auto& word : pages_[index]->words) words.push_back(word.load());
    }
    return pages;
  }

  bool fail_compare_exchange = false;

 private:
  struct Page {
    std::array<std::atomic<uint64_t>, kEntriesPerTable> words{};
    bool in_use = false;
  };

  std::atomic<uint64_t>* find(Hpa hpa) {
    if (hpa < kWindowBase || hpa % kEntrySize != 0) return nullptr;
    const size_t index = (hpa - kWindowBase) / kPageSize;
    if (index >= pages_.size() || !pages_[index]->in_use) return nullptr;
    return &pages_[index]->words[(hpa % kPageSize) / kEntrySize];
  }

  size_t page_limit_;
  size_t in_use_ = 0;
  std::vector<std::unique_ptr<Page>> pages_;
  std::set<size_t> free_;  // lowest first, so reuse is deterministic
};

constexpr Permissions kReadWrite{.read = true, .write = true};
constexpr Permissions kReadOnly{.read = true};
constexpr Permissions kWriteOnly{.write = true};
constexpr Access kRead{.read = true};
constexpr Access kWrite{.write = true};
constexpr Access kExec{.read = true, .exec = true};

// Data HPAs: nothing backs them, and the walker never reads them.
constexpr Hpa kData = 0x40'0000'0000;  // 1 GiB aligned

SecondLevelTable make_table(PoolMemory& memory, int levels = kFourLevels) {
  auto table = SecondLevelTable::create(memory, levels);
  EXPECT_TRUE(table.ok()) << table.error().why;
  return std::move(table).value();
}

uint64_t read_entry(PoolMemory& memory, Hpa hpa) {
  auto value = memory.read64(hpa);
  EXPECT_TRUE(value.ok());
  return value.ok() ? *value : 0;
}

// The entry at `level` on the way to `iova` (levels counted as in the spec).
Hpa entry_hpa_at(PoolMemory& memory, const SecondLevelTable& table, uint64_t iova, int level) {
  Hpa current = table.root();
  for (int at = table.levels(); at > level; --at)
    current = sl::output_address(read_entry(memory, entry_address(current, iova, at)));
  return entry_address(current, iova, level);
}

// Tables reachable from the root, checking on the way that none but the root is empty.
size_t count_reachable_tables(PoolMemory& memory, Hpa table, int level, bool is_root = true) {
  size_t tables = 1;
  size_t present = 0;
  for (uint64_t index = 0; index < kEntriesPerTable; ++index) {
    const uint64_t entry = read_entry(memory, table + index * kEntrySize);
    if (!sl::is_present(entry)) continue;
    ++present;
    if (!sl::is_leaf(entry, level))
      tables += count_reachable_tables(memory, sl::output_address(entry), level - 1, false);
  }
  EXPECT_TRUE(is_root || present > 0) << fmt::format("empty table left at HPA {:#x}", table);
  return tables;
}

// ---------------------------------------------------------------------------
// Format

TEST(SecondLevelFormat, BitLayoutMatchesTheSpec) {
  EXPECT_EQ(sl::kRead, 0x1u);
  EXPECT_EQ(sl::kWrite, 0x2u);
  EXPECT_EQ(sl::kExecute, 0x4u);
  EXPECT_EQ(sl::kMemoryTypeMask, 0x38u);
  EXPECT_EQ(sl::kIgnorePat, 0x40u);
  EXPECT_EQ(sl::kLargePage, 0x80u);
  EXPECT_EQ(sl::kAccessed, 0x100u);
  EXPECT_EQ(sl::kDirty, 0x200u);
  EXPECT_EQ(sl::kSnoop, 0x800u);
  EXPECT_EQ(sl::kAddressMask, 0x000f'ffff'ffff'f000u);
  EXPECT_EQ(sl::kMaxOutputAddressBits, 52);
}

TEST(SecondLevelFormat, GeometryOfFourAndFiveLevels) {
  EXPECT_EQ(address_width(kFourLevels), 48);
  EXPECT_EQ(address_width(kFiveLevels), 57);
  EXPECT_EQ(level_span(1), k4K);
  EXPECT_EQ(level_span(2), k2M);
  EXPECT_EQ(level_span(3), k1G);
  EXPECT_EQ(level_span(4), 1ull << 39);
  EXPECT_EQ(level_span(5), 1ull << 48);
  const uint64_t iova = (3ull << 48) | (5ull << 39) | (7ull << 30) | (9ull << 21) | (11ull << 12) | 0xabc;
  EXPECT_EQ(level_index(iova, 5), 3u);
  EXPECT_EQ(level_index(iova, 4), 5u);
  EXPECT_EQ(level_index(iova, 3), 7u);
  EXPECT_EQ(level_index(iova, 2), 9u);
  EXPECT_EQ(level_index(iova, 1), 11u);
  EXPECT_EQ(entry_address(0x5000, iova, 1), 0x5000u + 11 * 8);
}

TEST(SecondLevelFormat, EntriesEncodeAndDecode) {
  const uint64_t leaf = sl::make_leaf(0x1234'5600'0000, 2, sl::leaf_attributes(kReadWrite, true));
  EXPECT_EQ(leaf, 0x1234'5600'0000u | sl::kRead | sl::kWrite | sl::kLargePage | sl::kSnoop);
  EXPECT_EQ(sl::output_address(leaf), 0x1234'5600'0000u);
  EXPECT_TRUE(sl::is_leaf(leaf, 2));
  EXPECT_EQ(sl::make_leaf(0x7000, 1, sl::kRead), 0x7000u | sl::kRead);  // no PS in a 4K leaf
  const uint64_t pointer = sl::make_table_pointer(0xabc000);
  EXPECT_EQ(pointer, 0xabc000u | sl::kRead | sl::kWrite | sl::kExecute);
  EXPECT_FALSE(sl::is_leaf(pointer, 3));
  EXPECT_TRUE(sl::is_leaf(pointer, 1));
}

TEST(SecondLevelFormat, PresentMeansReadOrWrite) {
  EXPECT_TRUE(sl::is_present(sl::kRead));
  EXPECT_TRUE(sl::is_present(sl::kWrite));
  EXPECT_FALSE(sl::is_present(0));
  EXPECT_FALSE(sl::is_present(sl::kExecute | sl::kAccessed | sl::kDirty | 0x5000));
}

TEST(SecondLevelFormat, ReservedFields) {
  EXPECT_TRUE(sl::has_reserved_bits_set(sl::kRead | sl::kLargePage, 4));
  EXPECT_TRUE(sl::has_reserved_bits_set(sl::kRead | sl::kLargePage | 0x1000, 2));  // 2M leaf, 4K frame
  EXPECT_FALSE(sl::has_reserved_bits_set(sl::kRead | sl::kLargePage | k2M, 2));
  EXPECT_FALSE(sl::has_reserved_bits_set(sl::kRead | sl::kLargePage | 0x1000, 1));  // PS ignored at level 1
}

// ---------------------------------------------------------------------------
// Creation and ownership

TEST(SecondLevelTable, CreateRejectsUnsupportedLevels) {
  PoolMemory memory;
  EXPECT_EQ(SecondLevelTable::create(memory, 3).code(), EINVAL);
  EXPECT_EQ(SecondLevelTable::create(memory, 6).code(), EINVAL);
  EXPECT_EQ(memory.pages_in_use(), 0u);
}

TEST(SecondLevelTable, CreateFailsWithoutARootPage) {
  PoolMemory memory(0);
  EXPECT_EQ(SecondLevelTable::create(memory, kFourLevels).code(), ENOMEM);
}

TEST(SecondLevelTable, DestructorAndDestroyFreeEveryPage) {
  PoolMemory memory;
  {
    auto table = make_table(memory);
    ASSERT_TRUE(table.map(0, kData, 64 * k2M + 5 * k4K, kReadWrite).ok());
    EXPECT_GT(memory.pages_in_use(), 3u);
  }
  EXPECT_EQ(memory.pages_in_use(), 0u);

  auto table = make_table(memory, kFiveLevels);
  ASSERT_TRUE(table.map(1ull << 50, kData, 3 * k4K, kReadOnly).ok());
  table.destroy();
  EXPECT_EQ(memory.pages_in_use(), 0u);
  EXPECT_EQ(table.table_pages(), 0u);
  EXPECT_EQ(table.map(0, kData, k4K, kReadOnly).code(), EINVAL);
}

TEST(SecondLevelTable, MoveTransfersOwnership) {
  PoolMemory memory;
  auto first = make_table(memory);
  ASSERT_TRUE(first.map(0, kData, k4K, kReadWrite).ok());
  const Hpa root = first.root();
  SecondLevelTable second = std::move(first);
  EXPECT_EQ(second.root(), root);
  EXPECT_TRUE(second.walk(0, kRead).ok());
  auto third = make_table(memory);
  third = std::move(second);
  EXPECT_TRUE(third.walk(0, kRead).ok());
  EXPECT_EQ(memory.pages_in_use(), third.table_pages());
}

// ---------------------------------------------------------------------------
// Map: page-size choice

TEST(SecondLevelMap, UsesOneGigPagesWhenBothAddressesAllow) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k1G, kData, 2 * k1G, kReadWrite).ok());
  for (uint64_t iova : {k1G, k1G + 12345 * k4K, 2 * k1G}) {
    auto walk = table.walk(iova, kRead);
    ASSERT_TRUE(walk.ok());
    EXPECT_EQ(walk.translation().page_size, k1G);
    EXPECT_EQ(walk.translation().level, 3);
    EXPECT_EQ(walk.translation().hpa, kData + iova - k1G);
  }
  EXPECT_EQ(table.table_pages(), 2u);  // PML4 and one PDPT: no PD, no PT
}

TEST(SecondLevelMap, FallsBackToTwoMegWhenTheHpaIsOnlyTwoMegAligned) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k1G, kData + k2M, k1G, kReadWrite).ok());
  auto walk = table.walk(k1G + 3 * k2M + 5, kRead);
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(walk.translation().page_size, k2M);
  EXPECT_EQ(walk.translation().hpa, kData + 4 * k2M + 5);
}

TEST(SecondLevelMap, FallsBackToFourKWhenTheIovaIsOnlyFourKAligned) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k2M + k4K, kData, k2M, kReadWrite).ok());
  auto walk = table.walk(k2M + k4K, kRead);
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(walk.translation().page_size, k4K);
}

TEST(SecondLevelMap, MixedAlignmentTakesTheLargestStepEachTime) {
  PoolMemory memory;
  auto table = make_table(memory);
  // From 8 KiB below a 2 MiB boundary that is itself 2 MiB below a 1 GiB boundary:
  // 4K, 4K, 2M, then 1G, then 2M, then a 4K tail.
  const uint64_t iova = 5 * k1G - k2M - 2 * k4K;
  const Hpa hpa = kData + 3 * k1G - k2M - 2 * k4K;
  const uint64_t length = 2 * k4K + k2M + k1G + k2M + k4K;
  ASSERT_TRUE(table.map(iova, hpa, length, kReadWrite).ok());

  const std::vector<std::pair<uint64_t, uint64_t>> steps = {
      {iova, k4K}, {iova + k4K, k4K}, {5 * k1G - k2M, k2M}, {5 * k1G, k1G}, {6 * k1G, k2M}, {6 * k1G + k2M, k4K}};
  for (const auto& [step_iova, size] : steps) {
    auto walk = table.walk(step_iova, kRead);
    ASSERT_TRUE(walk.ok()) << fmt::format("{:#x}", step_iova);
    EXPECT_EQ(walk.translation().page_size, size) << fmt::format("{:#x}", step_iova);
    EXPECT_EQ(walk.translation().hpa, hpa + (step_iova - iova));
  }
  EXPECT_FALSE(table.walk(iova - k4K, kRead).ok());
  EXPECT_FALSE(table.walk(iova + length, kRead).ok());
}

TEST(SecondLevelMap, FiveLevelTablesMapAbove48Bits) {
  PoolMemory memory;
  auto table = make_table(memory, kFiveLevels);
  EXPECT_EQ(table.address_limit(), 1ull << 57);
  const uint64_t high = (1ull << 56) + (3ull << 48) + k1G;
  ASSERT_TRUE(table.map(high, kData, k1G + k2M + k4K, kReadWrite).ok());
  for (const auto& [iova, size] : {std::pair{high, k1G}, {high + k1G, k2M}, {high + k1G + k2M, k4K}}) {
    auto walk = table.walk(iova + 8, kWrite);
    ASSERT_TRUE(walk.ok());
    EXPECT_EQ(walk.translation().page_size, size);
    EXPECT_EQ(walk.translation().hpa, kData + (iova - high) + 8);
  }
  // The same low 48 bits one PML5 slot over are not mapped.
  EXPECT_EQ(table.walk(high - (1ull << 48), kRead).fault().reason, IOASID_FAULT_REASON_ACCESS);
  ASSERT_TRUE(table.map((1ull << 57) - k4K, kData, k4K, kReadOnly).ok());  // the last page
  EXPECT_EQ(table.map(1ull << 57, kData, k4K, kReadOnly).code(), EINVAL);
}

TEST(SecondLevelMap, SnoopAndExecuteReachTheLeaf) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k4K, Permissions{.read = true, .exec = true}, /*snoop=*/true).ok());
  auto walk = table.walk(0, kExec);
  ASSERT_TRUE(walk.ok());
  EXPECT_TRUE(walk.translation().snoop);
  EXPECT_EQ(walk.translation().permissions, (Permissions{.read = true, .exec = true}));
  EXPECT_EQ(read_entry(memory, walk.translation().leaf_entry), kData | sl::kRead | sl::kExecute | sl::kSnoop);
}

TEST(SecondLevelMap, RejectsBadArguments) {
  PoolMemory memory;
  auto table = make_table(memory);
  EXPECT_EQ(table.map(0x800, kData, k4K, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map(0, kData + 0x800, k4K, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map(0, kData, 0x800, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map(0, kData, 0, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map(0, kData, k4K, Permissions{.exec = true}).code(), EINVAL);
  EXPECT_EQ(table.map(1ull << 48, kData, k4K, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map((1ull << 48) - k4K, kData, 2 * k4K, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map(0, (1ull << 52) - k4K, 2 * k4K, kReadWrite).code(), EINVAL);
  EXPECT_EQ(table.map(k4K, kData, ~0ull - 0xfff, kReadWrite).code(), EINVAL);  // wraps
  EXPECT_EQ(memory.pages_in_use(), 1u);
}

// ---------------------------------------------------------------------------
// Map: errors leave the table as it was

TEST(SecondLevelMap, OverlapIsEexistAndChangesNothing) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k1G + 10 * k4K, kData, 4 * k4K, kReadWrite).ok());  // 4K leaves
  ASSERT_TRUE(table.map(2 * k1G, kData, k2M, kReadWrite).ok());             // one 2M leaf
  ASSERT_TRUE(table.map(4 * k1G, kData, k1G, kReadWrite).ok());             // one 1G leaf
  const auto before = memory.snapshot();

  struct Case {
    uint64_t iova;
    Hpa hpa;
    uint64_t length;
  };
  const Case cases[] = {
      {k1G + 13 * k4K, kData, k4K},            // the same 4K page
      {k1G, kData, 11 * k4K},                  // a run that ends on the first 4K page
      {k1G, kData, k2M},                       // a 2M leaf over a table of 4K leaves
      {k1G - k2M, kData, 2 * k2M + k1G},       // a long run, fresh tables, then the overlap
      {2 * k1G + k2M - k4K, kData, 2 * k4K},   // a 4K page inside the 2M leaf
      {2 * k1G - 8 * k4K, kData, 8 * k4K + k2M},  // ends with the 2M leaf
      {4 * k1G + 7 * k2M, kData, k2M},         // a 2M page inside the 1G leaf
      {3 * k1G, kData, 2 * k1G},               // 1G free, then the 1G leaf
  };
  for (const auto& overlap : cases) {
    EXPECT_EQ(table.map(overlap.iova, overlap.hpa, overlap.length, kReadOnly).code(), EEXIST)
        << fmt::format("{:#x} +{:#x}", overlap.iova, overlap.length);
    EXPECT_EQ(memory.snapshot(), before) << fmt::format("{:#x} +{:#x}", overlap.iova, overlap.length);
  }
}

TEST(SecondLevelMap, EnomemPartWayRollsBackEverything) {
  PoolMemory memory;
  auto table = make_table(memory);
  // Existing neighbours share tables with the new range, so rollback must leave
  // pre-existing tables alone while freeing the new ones.
  ASSERT_TRUE(table.map(k1G - k4K, kData, k4K, kReadWrite).ok());
  ASSERT_TRUE(table.map(3 * k1G + 200 * k2M, kData, k4K, kReadWrite).ok());
  const auto before = memory.snapshot();
  const size_t baseline = memory.pages_in_use();

  // 4K pages then 2M pages across three 1 GiB regions and back down to 4K pages:
  // needs a new PT or PD at several points.
  const uint64_t iova = k1G + k2M - 3 * k4K;
  const uint64_t length = 2 * k1G + 150 * k2M;
  size_t needed = 0;
  {
    PoolMemory probe;
    auto fresh = make_table(probe);
    ASSERT_TRUE(fresh.map(k1G - k4K, kData, k4K, kReadWrite).ok());
    ASSERT_TRUE(fresh.map(3 * k1G + 200 * k2M, kData, k4K, kReadWrite).ok());
    const size_t start = probe.pages_in_use();
    ASSERT_TRUE(fresh.map(iova, kData + k2M - 3 * k4K, length - k4K, kReadWrite).ok());
    needed = probe.pages_in_use() - start;
  }
  ASSERT_GE(needed, 3u);  // a PD and a PT at the head, a PT at the tail
  for (size_t allowed = 0; allowed < needed; ++allowed) {
    memory.set_page_limit(baseline + allowed);
    EXPECT_EQ(table.map(iova, kData + k2M - 3 * k4K, length - k4K, kReadWrite).code(), ENOMEM) << allowed;
    EXPECT_EQ(memory.pages_in_use(), baseline) << allowed;
    EXPECT_EQ(memory.snapshot(), before) << allowed;
    EXPECT_EQ(table.table_pages(), baseline);
  }
  memory.set_page_limit(baseline + needed);
  ASSERT_TRUE(table.map(iova, kData + k2M - 3 * k4K, length - k4K, kReadWrite).ok());
  EXPECT_EQ(table.table_pages(), memory.pages_in_use());
}

// ---------------------------------------------------------------------------
// Walk

TEST(SecondLevelWalk, NotPresentIsAnAccessFaultAtTheEmptyEntry) {
  PoolMemory memory;
  auto table = make_table(memory);
  auto empty = table.walk(0x1234'5000, kRead);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(empty.fault().level, 4);
  EXPECT_EQ(empty.fault().fetch_address, entry_address(table.root(), 0x1234'5000, 4));

  ASSERT_TRUE(table.map(0x1234'0000, kData, k4K, kReadWrite).ok());
  auto neighbour = table.walk(0x1234'5000, kRead);
  ASSERT_FALSE(neighbour.ok());
  EXPECT_EQ(neighbour.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(neighbour.fault().level, 1);
  EXPECT_EQ(neighbour.fault().fetch_address, entry_hpa_at(memory, table, 0x1234'5000, 1));
}

TEST(SecondLevelWalk, PermissionFaults) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k4K, kReadOnly).ok());
  ASSERT_TRUE(table.map(k4K, kData, k4K, kWriteOnly).ok());
  ASSERT_TRUE(table.map(2 * k4K, kData, k4K, kReadWrite).ok());

  const auto expect_permission_fault = [&](uint64_t iova, Access access) {
    auto walk = table.walk(iova, access);
    ASSERT_FALSE(walk.ok()) << fmt::format("{:#x}", iova);
    EXPECT_EQ(walk.fault().reason, IOASID_FAULT_REASON_PERMISSION);
    EXPECT_EQ(walk.fault().level, 1);
    EXPECT_EQ(walk.fault().fetch_address, entry_hpa_at(memory, table, iova, 1));
  };
  expect_permission_fault(0, kWrite);
  expect_permission_fault(k4K, kRead);
  expect_permission_fault(2 * k4K, kExec);
  EXPECT_TRUE(table.walk(0, kRead).ok());
  EXPECT_TRUE(table.walk(k4K, kWrite).ok());
  EXPECT_TRUE(table.walk(2 * k4K, Access{.read = true, .write = true}).ok());
  EXPECT_EQ(table.walk(k4K, Access{}).translation().permissions, kWriteOnly);
}

TEST(SecondLevelWalk, UpperLevelsCanOnlyTakeRightsAway) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k4K, kReadWrite).ok());
  const Hpa pd_entry = entry_hpa_at(memory, table, 0, 2);
  ASSERT_TRUE(memory.write64(pd_entry, read_entry(memory, pd_entry) & ~sl::kWrite).ok());
  auto write = table.walk(0, kWrite);
  ASSERT_FALSE(write.ok());
  EXPECT_EQ(write.fault().reason, IOASID_FAULT_REASON_PERMISSION);
  auto read = table.walk(0, kRead);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read.translation().permissions, kReadOnly);

  // R and W both clear: the table pointer is not present at all.
  ASSERT_TRUE(memory.write64(pd_entry, read_entry(memory, pd_entry) & ~sl::kRead).ok());
  auto gone = table.walk(0, kRead);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(gone.fault().fetch_address, pd_entry);
}

TEST(SecondLevelWalk, IovaBeyondTheWidthIsOutOfRange) {
  PoolMemory memory;
  auto four = make_table(memory, kFourLevels);
  auto five = make_table(memory, kFiveLevels);
  for (const auto& [table, iova] : {std::pair{&four, 1ull << 48}, {&four, ~0ull}, {&five, 1ull << 57}}) {
    auto walk = table->walk(iova, kRead);
    ASSERT_FALSE(walk.ok());
    EXPECT_EQ(walk.fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
    EXPECT_FALSE(walk.fault().fetch_address.has_value());
  }
  EXPECT_EQ(five.walk(1ull << 48, kRead).fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(walk_second_level(memory, four.root(), 3, 0, kRead).fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
}

TEST(SecondLevelWalk, TablePointerToUnbackedMemoryIsAFetchFault) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k1G, kData, k4K, kReadWrite).ok());
  // Point the PD entry at a page nothing backs.
  constexpr Hpa kUnbacked = 0x7'0000'0000;
  const uint64_t iova = k1G + 3 * k4K;
  const Hpa pd_entry = entry_hpa_at(memory, table, iova, 2);
  ASSERT_TRUE(memory.write64(pd_entry, sl::make_table_pointer(kUnbacked)).ok());
  auto walk = table.walk(iova, kRead);
  ASSERT_FALSE(walk.ok());
  EXPECT_EQ(walk.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(walk.fault().level, 1);
  EXPECT_EQ(walk.fault().fetch_address, kUnbacked + 3 * kEntrySize);

  // A root nothing backs faults at its first fetch.
  auto bad_root = walk_second_level(memory, kUnbacked, kFourLevels, iova, kRead);
  ASSERT_FALSE(bad_root.ok());
  EXPECT_EQ(bad_root.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(bad_root.fault().level, 4);
  EXPECT_EQ(bad_root.fault().fetch_address, kUnbacked);
}

TEST(SecondLevelWalk, ReservedFieldIsAFetchFault) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k4K, kReadWrite).ok());
  const Hpa pml4_entry = entry_address(table.root(), 0, 4);
  ASSERT_TRUE(memory.write64(pml4_entry, read_entry(memory, pml4_entry) | sl::kLargePage).ok());
  auto walk = table.walk(0, kRead);
  ASSERT_FALSE(walk.ok());
  EXPECT_EQ(walk.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(walk.fault().fetch_address, pml4_entry);
}

TEST(SecondLevelWalk, SetsAccessedOnEveryLevelAndDirtyOnWrites) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 2 * k4K, kReadWrite).ok());
  const Hpa leaf = entry_hpa_at(memory, table, 0, 1);

  ASSERT_TRUE(table.walk(0, kWrite).ok());  // without the flag, nothing changes
  EXPECT_EQ(read_entry(memory, leaf) & sl::kAccessedDirtyMask, 0u);

  ASSERT_TRUE(table.walk(0, kRead, AccessedDirty::kUpdate).ok());
  EXPECT_EQ(read_entry(memory, leaf) & sl::kAccessedDirtyMask, sl::kAccessed);
  for (int level = 2; level <= 4; ++level)
    EXPECT_EQ(read_entry(memory, entry_hpa_at(memory, table, 0, level)) & sl::kAccessedDirtyMask, sl::kAccessed);

  ASSERT_TRUE(table.walk(0, kWrite, AccessedDirty::kUpdate).ok());
  EXPECT_EQ(read_entry(memory, leaf) & sl::kAccessedDirtyMask, sl::kAccessedDirtyMask);
  EXPECT_EQ(read_entry(memory, entry_hpa_at(memory, table, 0, 2)) & sl::kDirty, 0u);  // D only in leaves

  // A faulting access sets nothing.
  ASSERT_TRUE(table.map(k2M, kData, k4K, kReadOnly).ok());
  ASSERT_FALSE(table.walk(k2M, kWrite, AccessedDirty::kUpdate).ok());
  EXPECT_EQ(read_entry(memory, entry_hpa_at(memory, table, k2M, 1)) & sl::kAccessedDirtyMask, 0u);
  EXPECT_EQ(read_entry(memory, entry_hpa_at(memory, table, k4K, 1)) & sl::kAccessedDirtyMask, 0u);
}

TEST(SecondLevelWalk, FailedAccessedDirtyUpdateIsAWalkAbort) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k4K, kReadWrite).ok());
  memory.fail_compare_exchange = true;
  auto walk = table.walk(0, kWrite, AccessedDirty::kUpdate);
  ASSERT_FALSE(walk.ok());
  EXPECT_EQ(walk.fault().reason, IOASID_FAULT_REASON_WALK_EABT);
  EXPECT_EQ(walk.fault().fetch_address, entry_address(table.root(), 0, 4));  // the first entry to update
  EXPECT_TRUE(table.walk(0, kWrite).ok());  // without updates the CAS is never needed
}

// ---------------------------------------------------------------------------
// Runs: one walk hands out the contiguous 4 KiB leaves after its own

// A walk of `length` bytes from iova.
WalkResult walk_run(PoolMemory& memory, const SecondLevelTable& table, uint64_t iova, uint64_t length,
                    Access access = kRead, AccessedDirty accessed_dirty = AccessedDirty::kLeave) {
  return walk_second_level(memory, table.root(), table.levels(), iova, access, accessed_dirty, length);
}

TEST(SecondLevelRun, ContiguousLeavesAsFarAsTheRequestReachesInOneTable) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData + k4K, 2 * k2M, kReadWrite).ok());  // IOVA and HPA never both 2M aligned: 4K leaves
  auto one = walk_run(memory, table, k4K + 0x10, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one.translation().leaves, 1u);  // a request within its page: no run

  auto run = walk_run(memory, table, 3 * k4K + 0x10, 10 * k4K);  // reaches 11 pages
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run.translation().hpa, kData + 4 * k4K + 0x10);
  EXPECT_EQ(run.translation().page_size, k4K);
  EXPECT_EQ(run.translation().leaves, 11u);
  EXPECT_EQ(run.translation().permissions, kReadWrite);

  // Up to the end of the leaf table, not past it.
  auto to_end = walk_run(memory, table, k2M - 2 * k4K, k2M);
  ASSERT_TRUE(to_end.ok());
  EXPECT_EQ(to_end.translation().leaves, 2u);
  auto whole = walk_run(memory, table, k2M, ~0ull);  // a length running off the address space
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole.translation().leaves, kEntriesPerTable);
}

TEST(SecondLevelRun, StopsBeforeAHoleARightsChangeOrAnotherFrame) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 4 * k4K, kReadWrite).ok());
  // page 4: a hole
  ASSERT_TRUE(table.map(5 * k4K, kData + 5 * k4K, 3 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.map(8 * k4K, kData + 8 * k4K, 2 * k4K, kReadOnly).ok());             // other rights
  ASSERT_TRUE(table.map(10 * k4K, kData + 10 * k4K, 2 * k4K, kReadOnly, true).ok());     // snoop: another attribute
  ASSERT_TRUE(table.map(12 * k4K, kData + 100 * k4K, 4 * k4K, kReadOnly, true).ok());    // not the next frame
  const uint64_t all = 16 * k4K;
  EXPECT_EQ(walk_run(memory, table, 0, all).translation().leaves, 4u);
  EXPECT_EQ(walk_run(memory, table, 4 * k4K, all).fault().reason, IOASID_FAULT_REASON_ACCESS);  // the hole itself
  EXPECT_EQ(walk_run(memory, table, 5 * k4K, all).translation().leaves, 3u);
  EXPECT_EQ(walk_run(memory, table, 8 * k4K, all).translation().leaves, 2u);
  EXPECT_EQ(walk_run(memory, table, 10 * k4K, all).translation().leaves, 2u);
  auto moved = walk_run(memory, table, 12 * k4K, all);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved.translation().hpa, kData + 100 * k4K);
  EXPECT_EQ(moved.translation().leaves, 4u);
  // A leaf's own rights stop a run even where the request would be allowed: one run,
  // one set of rights to cache.
  EXPECT_EQ(walk_run(memory, table, 6 * k4K, all, kRead).translation().leaves, 2u);
}

TEST(SecondLevelRun, SetsAccessedAndDirtyOnEveryLeafItHandsOutAndNoOther) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 8 * k4K, kReadWrite).ok());
  auto leaf_bits = [&](uint64_t page) {
    return read_entry(memory, entry_hpa_at(memory, table, page * k4K, 1)) & sl::kAccessedDirtyMask;
  };
  // Without A/D updates nothing changes.
  ASSERT_EQ(walk_run(memory, table, k4K, 3 * k4K, kWrite).translation().leaves, 3u);
  for (uint64_t page = 0; page < 8; ++page) EXPECT_EQ(leaf_bits(page), 0u) << page;

  // Pages 1, 2, 3 read (the request ends in page 3): A on each.
  ASSERT_EQ(walk_run(memory, table, k4K + 8, 2 * k4K + 8, kRead, AccessedDirty::kUpdate).translation().leaves, 3u);
  const std::array<uint64_t, 8> after_read{0, sl::kAccessed, sl::kAccessed, sl::kAccessed, 0, 0, 0, 0};
  for (uint64_t page = 0; page < 8; ++page) EXPECT_EQ(leaf_bits(page), after_read[page]) << page;

  // Pages 2 to 5 written: A and D on each, whether A was there or not.
  ASSERT_EQ(walk_run(memory, table, 2 * k4K, 4 * k4K, kWrite, AccessedDirty::kUpdate).translation().leaves, 4u);
  const uint64_t ad = sl::kAccessedDirtyMask;
  const std::array<uint64_t, 8> after_write{0, sl::kAccessed, ad, ad, ad, ad, 0, 0};
  for (uint64_t page = 0; page < 8; ++page) EXPECT_EQ(leaf_bits(page), after_write[page]) << page;

  // A faulting walk sets nothing, nor does a run that stops: the leaf after it keeps its bits.
  ASSERT_TRUE(table.unmap(7 * k4K, k4K).ok());
  ASSERT_EQ(walk_run(memory, table, 6 * k4K, 2 * k4K, kWrite, AccessedDirty::kUpdate).translation().leaves, 1u);
  EXPECT_EQ(leaf_bits(6), ad);
  EXPECT_FALSE(walk_run(memory, table, 7 * k4K, k4K, kWrite, AccessedDirty::kUpdate).ok());
}

TEST(SecondLevelRun, SuperpagesAreOneLeaf) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 4 * k2M, kReadWrite).ok());
  auto walk = walk_run(memory, table, k2M, 3 * k2M);
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(walk.translation().page_size, k2M);
  EXPECT_EQ(walk.translation().leaves, 1u);
}

// ---------------------------------------------------------------------------
// Unmap

TEST(SecondLevelUnmap, RemovesWholeLeavesAndReturnsTheirBytes) {
  PoolMemory memory;
  auto table = make_table(memory);
  const uint64_t iova = k1G - k2M - k4K;
  const uint64_t length = k4K + k2M + k1G + k4K;  // 4K, 2M, 1G, 4K
  ASSERT_TRUE(table.map(iova, kData + k1G - k2M - k4K, length, kReadWrite).ok());

  auto part = table.unmap(iova, k4K + k2M);
  ASSERT_TRUE(part.ok()) << part.error().why;
  EXPECT_EQ(*part, k4K + k2M);
  EXPECT_FALSE(table.walk(iova, kRead).ok());
  EXPECT_FALSE(table.walk(k1G - 1, kRead).ok());
  EXPECT_TRUE(table.walk(k1G, kRead).ok());

  auto rest = table.unmap(k1G, k1G + k4K);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(*rest, k1G + k4K);
  EXPECT_FALSE(table.walk(2 * k1G, kRead).ok());
  EXPECT_EQ(table.table_pages(), 1u);
}

TEST(SecondLevelUnmap, CuttingALargePageIsEinvalAndChangesNothing) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k2M, kData, k2M, kReadWrite).ok());
  ASSERT_TRUE(table.map(k1G, kData, k1G, kReadWrite).ok());
  ASSERT_TRUE(table.map(0, kData, 4 * k4K, kReadWrite).ok());
  const auto before = memory.snapshot();

  EXPECT_EQ(table.unmap(k2M + k4K, k4K).code(), EINVAL);       // inside the 2M page
  EXPECT_EQ(table.unmap(0, k2M + k4K).code(), EINVAL);         // the 4K pages, then part of it
  EXPECT_EQ(table.unmap(k2M + k4K, k2M).code(), EINVAL);       // its tail and beyond
  EXPECT_EQ(table.unmap(k1G - k2M, 2 * k2M).code(), EINVAL);   // the head of the 1G page
  EXPECT_EQ(table.unmap(2 * k1G - k4K, k2M).code(), EINVAL);   // its last page and beyond
  EXPECT_EQ(memory.snapshot(), before);

  auto whole = table.unmap(0, 2 * k1G);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(*whole, 4 * k4K + k2M + k1G);
}

TEST(SecondLevelUnmap, FreesTablesThatBecomeEmpty) {
  PoolMemory memory;
  auto table = make_table(memory, kFiveLevels);
  const size_t baseline = memory.pages_in_use();
  const uint64_t high = 5ull << 48;
  ASSERT_TRUE(table.map(high + 3 * k4K, kData, 5 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.map(high + 7 * k2M, kData + k4K, 1000 * k4K, kReadWrite).ok());  // 4K leaves
  EXPECT_EQ(memory.pages_in_use(), baseline + 4 + 2);  // PML4, PDPT, PD, 3 PTs

  auto first = table.unmap(high + 3 * k4K, 5 * k4K);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(memory.pages_in_use(), baseline + 4 + 1);  // that PT is gone, the rest stays
  auto second = table.unmap(high + 7 * k2M, 1000 * k4K);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 1000 * k4K);
  EXPECT_EQ(memory.pages_in_use(), baseline);
  EXPECT_EQ(table.table_pages(), baseline);
  EXPECT_EQ(read_entry(memory, entry_address(table.root(), high, 5)), 0u);
}

TEST(SecondLevelUnmap, NothingMappedIsZeroBytes) {
  PoolMemory memory;
  auto table = make_table(memory);
  auto empty = table.unmap(0, 1ull << 40);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, 0u);
  ASSERT_TRUE(table.map(k1G, kData, k4K, kReadWrite).ok());
  auto beside = table.unmap(k1G + k4K, k2M);
  ASSERT_TRUE(beside.ok());
  EXPECT_EQ(*beside, 0u);
  auto zero_length = table.unmap(k1G, 0);
  ASSERT_TRUE(zero_length.ok());
  EXPECT_EQ(*zero_length, 0u);
  auto beyond = table.unmap(1ull << 50, k4K);
  ASSERT_TRUE(beyond.ok());
  EXPECT_EQ(*beyond, 0u);
}

TEST(SecondLevelUnmap, AllOnesLengthUnmapsEverything) {
  PoolMemory memory;
  auto table = make_table(memory, kFiveLevels);
  ASSERT_TRUE(table.map(0, kData, k1G + k4K, kReadWrite).ok());
  ASSERT_TRUE(table.map((1ull << 57) - k2M, kData, k2M, kReadWrite).ok());
  auto all = table.unmap(0, ~0ull);
  ASSERT_TRUE(all.ok()) << all.error().why;
  EXPECT_EQ(*all, k1G + k4K + k2M);
  EXPECT_EQ(memory.pages_in_use(), 1u);
}

TEST(SecondLevelUnmap, RejectsUnalignedRanges) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k2M, kReadWrite).ok());
  EXPECT_EQ(table.unmap(0x800, k4K).code(), EINVAL);
  EXPECT_EQ(table.unmap(0, 0x800).code(), EINVAL);
  EXPECT_TRUE(table.walk(0, kRead).ok());
}

// ---------------------------------------------------------------------------
// Dirty tracking

std::vector<uint64_t> read_dirty(SecondLevelTable& table, uint64_t iova, uint64_t length, uint64_t page_size,
                                 DirtyRead mode) {
  std::vector<uint64_t> pages;
  auto read = table.read_and_clear_dirty(iova, length, page_size, mode, [&](uint64_t page) { pages.push_back(page); });
  EXPECT_TRUE(read.ok()) << read.error().why;
  return pages;
}

TEST(SecondLevelDirty, ADirtyTwoMegLeafIsReportedAsFourKPages) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k2M, kData, 2 * k2M, kReadWrite).ok());
  EXPECT_TRUE(read_dirty(table, 0, k1G, k4K, DirtyRead::kAndClear).empty());

  ASSERT_TRUE(table.walk(k2M + 5 * k4K, kWrite, AccessedDirty::kUpdate).ok());
  ASSERT_TRUE(table.walk(2 * k2M, kRead, AccessedDirty::kUpdate).ok());  // reads do not dirty
  const auto pages = read_dirty(table, 0, k1G, k4K, DirtyRead::kAndClear);
  ASSERT_EQ(pages.size(), 512u);
  for (size_t index = 0; index < pages.size(); ++index) EXPECT_EQ(pages[index], k2M + index * k4K);
  EXPECT_TRUE(read_dirty(table, 0, k1G, k4K, DirtyRead::kAndClear).empty());  // cleared
  EXPECT_TRUE(table.walk(k2M, kRead).ok());
  EXPECT_NE(read_entry(memory, table.walk(k2M, kRead).translation().leaf_entry) & sl::kAccessed, 0u);
}

TEST(SecondLevelDirty, NoClearLeavesTheBitsSet) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 8 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.walk(3 * k4K, kWrite, AccessedDirty::kUpdate).ok());
  ASSERT_TRUE(table.walk(6 * k4K, kWrite, AccessedDirty::kUpdate).ok());
  const std::vector<uint64_t> expected{3 * k4K, 6 * k4K};
  EXPECT_EQ(read_dirty(table, 0, k2M, k4K, DirtyRead::kNoClear), expected);
  EXPECT_EQ(read_dirty(table, 0, k2M, k4K, DirtyRead::kNoClear), expected);
  EXPECT_EQ(read_dirty(table, 0, k2M, k4K, DirtyRead::kAndClear), expected);
  EXPECT_TRUE(read_dirty(table, 0, k2M, k4K, DirtyRead::kAndClear).empty());
}

TEST(SecondLevelDirty, PagesLargerThanLeavesAreReportedOnce) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData + k4K, 2 * k2M, kReadWrite).ok());  // the HPA forces 4K leaves
  for (uint64_t page : {k4K, 9 * k4K, k2M + 100 * k4K})
    ASSERT_TRUE(table.walk(page, kWrite, AccessedDirty::kUpdate).ok());
  const std::vector<uint64_t> expected{0, k2M};
  EXPECT_EQ(read_dirty(table, 0, k1G, k2M, DirtyRead::kAndClear), expected);
  EXPECT_TRUE(read_dirty(table, 0, k1G, k4K, DirtyRead::kAndClear).empty());
}

TEST(SecondLevelDirty, ALeafPartlyInsideTheRangeStaysDirtyOutsideIt) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k2M, kReadWrite).ok());
  ASSERT_TRUE(table.walk(0, kWrite, AccessedDirty::kUpdate).ok());
  // A quarter: inside the lower half, which stays dirty like the upper one.
  EXPECT_EQ(read_dirty(table, 0, k2M / 4, k4K, DirtyRead::kAndClear).size(), 128u);
  const uint64_t before = read_entry(memory, table.walk(0, kRead).translation().leaf_entry);
  EXPECT_EQ(before & (sl::kDirty | sl::kHalfDirtyMask), sl::kDirty) << "no half read whole: D stays";
  EXPECT_EQ(read_dirty(table, 0, k2M, k4K, DirtyRead::kNoClear).size(), 512u);
  // The lower half wholly inside: clean afterwards; D became the upper half's bit.
  const auto first_half = read_dirty(table, 0, k2M / 2, k4K, DirtyRead::kAndClear);
  EXPECT_EQ(first_half.size(), 256u);
  EXPECT_EQ(first_half.back(), k2M / 2 - k4K);
  const uint64_t entry = read_entry(memory, table.walk(0, kRead).translation().leaf_entry);
  EXPECT_EQ(entry & (sl::kDirty | sl::kHalfDirtyMask), sl::kHalfDirtyHigh);
  const auto whole = read_dirty(table, 0, k2M, k4K, DirtyRead::kAndClear);
  ASSERT_EQ(whole.size(), 256u);
  EXPECT_EQ(whole.front(), k2M / 2);
  EXPECT_TRUE(read_dirty(table, 0, k2M, k4K, DirtyRead::kAndClear).empty());
}

std::vector<std::pair<uint64_t, uint64_t>> read_ranges(SecondLevelTable& table, uint64_t iova, uint64_t length,
                                                       DirtyRead mode) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  auto read = table.read_and_clear_dirty_ranges(iova, length, mode,
                                                [&](uint64_t at, uint64_t size) { ranges.emplace_back(at, size); });
  EXPECT_TRUE(read.ok()) << read.error().why;
  return ranges;
}

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

TEST(SecondLevelDirty, HalfDirtyBitsReportHalvesOfFourKLeaves) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 4 * k4K, kReadWrite).ok());
  auto upper = table.mark_half_dirty(0x800);
  ASSERT_TRUE(upper.ok());
  EXPECT_TRUE(*upper);
  ASSERT_TRUE(table.mark_half_dirty(2 * k4K + 0x7ff).ok());  // the lower half of the third leaf
  const uint64_t entry = read_entry(memory, table.walk(0, kRead).translation().leaf_entry);
  EXPECT_EQ(entry & (sl::kDirty | sl::kHalfDirtyMask), sl::kHalfDirtyHigh);
  const Ranges expected{{0x800, 0x800}, {2 * k4K, 0x800}};
  EXPECT_EQ(read_ranges(table, 0, 4 * k4K, DirtyRead::kNoClear), expected);
  // Per page of 4K, a dirty half is its page.
  EXPECT_EQ(read_dirty(table, 0, 4 * k4K, k4K, DirtyRead::kNoClear), (std::vector<uint64_t>{0, 2 * k4K}));
  EXPECT_EQ(read_ranges(table, 0, 4 * k4K, DirtyRead::kAndClear), expected);
  EXPECT_TRUE(read_ranges(table, 0, 4 * k4K, DirtyRead::kAndClear).empty());
  // Nothing maps it: nothing marked.
  auto unmapped = table.mark_half_dirty(k2M);
  ASSERT_TRUE(unmapped.ok());
  EXPECT_FALSE(*unmapped);
}

TEST(SecondLevelDirty, AWriteMakesTheWholeLeafDirty) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 2 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.mark_half_dirty(0).ok());
  ASSERT_TRUE(table.walk(0x900, kWrite, AccessedDirty::kUpdate).ok());
  ASSERT_TRUE(table.walk(k4K, kWrite, AccessedDirty::kUpdate).ok());
  EXPECT_EQ(read_ranges(table, 0, 2 * k4K, DirtyRead::kAndClear), (Ranges{{0, k4K}, {k4K, k4K}}));
  EXPECT_EQ(read_entry(memory, table.walk(0, kRead).translation().leaf_entry) & (sl::kDirty | sl::kHalfDirtyMask),
            0u);
  // Read half by half: the half outside keeps its dirt until it is read.
  ASSERT_TRUE(table.walk(0, kWrite, AccessedDirty::kUpdate).ok());
  EXPECT_EQ(read_ranges(table, 0x800, 0x800, DirtyRead::kAndClear), (Ranges{{0x800, 0x800}}));
  EXPECT_EQ(read_ranges(table, 0, 2 * k4K, DirtyRead::kNoClear), (Ranges{{0, 0x800}}));
  EXPECT_EQ(read_ranges(table, 0, 0x800, DirtyRead::kAndClear), (Ranges{{0, 0x800}}));
  EXPECT_TRUE(read_ranges(table, 0, 2 * k4K, DirtyRead::kAndClear).empty());
}

TEST(SecondLevelDirty, HalvesOfATwoMegLeafAreOneMeg) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k2M, kData, 2 * k2M, kReadWrite).ok());
  ASSERT_TRUE(table.mark_half_dirty(k2M + 5 * k4K).ok());      // lower half of the first
  ASSERT_TRUE(table.mark_half_dirty(3 * k2M - k4K).ok());      // upper half of the second
  EXPECT_EQ(read_ranges(table, 0, k1G, DirtyRead::kNoClear), (Ranges{{k2M, k2M / 2}, {2 * k2M + k2M / 2, k2M / 2}}));
  // A read inside a half reports its part and leaves the half dirty.
  EXPECT_EQ(read_ranges(table, k2M + k4K, k4K, DirtyRead::kAndClear), (Ranges{{k2M + k4K, k4K}}));
  EXPECT_EQ(read_dirty(table, 0, k1G, k2M, DirtyRead::kAndClear), (std::vector<uint64_t>{k2M, 2 * k2M}));
  EXPECT_TRUE(read_ranges(table, 0, k1G, DirtyRead::kNoClear).empty());
}

TEST(SecondLevelDirty, ClearAllAndRestoreCoverTheHalves) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 2 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.mark_half_dirty(0).ok());
  ASSERT_TRUE(table.mark_half_dirty(k4K + 0x800).ok());
  ASSERT_TRUE(table.clear_all_dirty().ok());
  EXPECT_TRUE(read_ranges(table, 0, 2 * k4K, DirtyRead::kNoClear).empty());
  // A bitmap that could not be delivered: D again, a superset of the half cleared.
  ASSERT_TRUE(table.mark_half_dirty(k4K).ok());
  std::vector<uint64_t> bitmap(1, 0);
  ASSERT_TRUE(table.read_and_clear_dirty_bitmap(0, 2 * k4K, k4K, DirtyRead::kAndClear, bitmap).ok());
  EXPECT_EQ(bitmap[0], 2u);
  ASSERT_TRUE(table.restore_dirty_bitmap(0, 2 * k4K, k4K, bitmap).ok());
  EXPECT_EQ(read_ranges(table, 0, 2 * k4K, DirtyRead::kNoClear), (Ranges{{k4K, k4K}}));
}

TEST(SecondLevelDirty, TheWalkerKeepsHalfBitsAndDumpShowsThem) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, k4K, kReadWrite).ok());
  ASSERT_TRUE(table.mark_half_dirty(0x800).ok());
  ASSERT_TRUE(table.walk(0, kRead, AccessedDirty::kUpdate).ok());
  const uint64_t entry = read_entry(memory, table.walk(0, kRead).translation().leaf_entry);
  EXPECT_EQ(entry & (sl::kAccessed | sl::kDirty | sl::kHalfDirtyMask), sl::kAccessed | sl::kHalfDirtyHigh);
  EXPECT_EQ(table.walk(0, kRead).translation().hpa, kData);  // an ignored bit: not the address
  auto lines = dump_second_level(memory, table.root(), table.levels(), DumpOptions{.coalesce = false});
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 1u);
  EXPECT_EQ((*lines)[0], fmt::format("iova 0x0 -> hpa {:#x} 4K RW- A - D1", kData));
}

TEST(SecondLevelMap, LargestPageCapsTheLeaves) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, kData, 2 * k2M, kReadWrite, false, k4K).ok());
  EXPECT_EQ(table.walk(k2M + k4K, kRead).translation().page_size, k4K);
  ASSERT_TRUE(table.map(k1G, kData, k1G, kReadWrite, false, k2M).ok());
  EXPECT_EQ(table.walk(k1G + k2M, kRead).translation().page_size, k2M);
  ASSERT_TRUE(table.map(2 * k1G, kData, k1G, kReadWrite).ok());
  EXPECT_EQ(table.walk(2 * k1G, kRead).translation().page_size, k1G);
  EXPECT_EQ(table.map(4 * k1G, kData, k4K, kReadWrite, false, 3 * k4K).code(), EINVAL);
}

TEST(SecondLevelDirty, BitmapHasOneBitPerPage) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k1G, kData, k2M + 4 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.walk(k1G + k2M + 2 * k4K, kWrite, AccessedDirty::kUpdate).ok());
  ASSERT_TRUE(table.walk(k1G, kWrite, AccessedDirty::kUpdate).ok());
  std::vector<uint64_t> bitmap(9, 0);  // 516 pages
  ASSERT_TRUE(table.read_and_clear_dirty_bitmap(k1G, k2M + 4 * k4K, k4K, DirtyRead::kAndClear, bitmap).ok());
  for (size_t word = 0; word < 8; ++word) EXPECT_EQ(bitmap[word], ~0ull) << word;
  EXPECT_EQ(bitmap[8], 1ull << 2);
  std::vector<uint64_t> small(8, 0);
  EXPECT_EQ(table.read_and_clear_dirty_bitmap(k1G, k2M + 4 * k4K, k4K, DirtyRead::kAndClear, small).code(), EINVAL);
}

TEST(SecondLevelDirty, ClearAllDirtyStartsTrackingClean) {
  PoolMemory memory;
  auto table = make_table(memory, kFiveLevels);
  ASSERT_TRUE(table.map(0, kData, k1G, kReadWrite).ok());
  ASSERT_TRUE(table.map(3ull << 50, kData, 3 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.walk(5, kWrite, AccessedDirty::kUpdate).ok());
  ASSERT_TRUE(table.walk((3ull << 50) + k4K, kWrite, AccessedDirty::kUpdate).ok());
  ASSERT_TRUE(table.clear_all_dirty().ok());
  EXPECT_TRUE(read_dirty(table, 0, 1ull << 57, k1G, DirtyRead::kNoClear).empty());
  EXPECT_NE(read_entry(memory, table.walk(5, kRead).translation().leaf_entry) & sl::kAccessed, 0u);  // A stays
}

TEST(SecondLevelDirty, RejectsBadRanges) {
  PoolMemory memory;
  auto table = make_table(memory);
  const auto ignore = [](uint64_t) {};
  EXPECT_EQ(table.read_and_clear_dirty(0, k2M, 0, DirtyRead::kNoClear, ignore).code(), EINVAL);
  EXPECT_EQ(table.read_and_clear_dirty(0, k2M, 3 * k4K, DirtyRead::kNoClear, ignore).code(), EINVAL);
  EXPECT_EQ(table.read_and_clear_dirty(0, k2M, 0x800, DirtyRead::kNoClear, ignore).code(), EINVAL);
  EXPECT_EQ(table.read_and_clear_dirty(k4K, k2M, k2M, DirtyRead::kNoClear, ignore).code(), EINVAL);
  EXPECT_EQ(table.read_and_clear_dirty(0, 0, k4K, DirtyRead::kNoClear, ignore).code(), EINVAL);
  EXPECT_EQ(table.read_and_clear_dirty(0, 1ull << 49, k4K, DirtyRead::kNoClear, ignore).code(), EINVAL);
}

// ---------------------------------------------------------------------------
// Table memory and the dump

TEST(SecondLevelTableMemory, OneGigOfFourKPagesFitsInTwoPointOneMiB) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k1G, kData + k4K, k1G, kReadWrite).ok());
  EXPECT_EQ(table.walk(k1G + 12345 * k4K, kRead).translation().page_size, k4K);
  EXPECT_EQ(table.table_pages(), 512u + 3u);
  EXPECT_EQ(table.table_bytes(), 2 * 1024 * 1024 + 12 * 1024u);
  EXPECT_LE(table.table_bytes(), 2.1 * 1024 * 1024);
  EXPECT_EQ(memory.pages_in_use(), table.table_pages());
}

TEST(SecondLevelDump, ListsEveryLeaf) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(k2M, 0x7f00'0000, k2M, kReadWrite).ok());
  ASSERT_TRUE(table.map(2 * k2M, 0x1000, 3 * k4K, kReadOnly, /*snoop=*/true).ok());
  ASSERT_TRUE(table.map(k1G, k1G, k1G, Permissions{.read = true, .write = true, .exec = true}).ok());
  ASSERT_TRUE(table.walk(k2M, kWrite, AccessedDirty::kUpdate).ok());

  auto lines = dump_second_level(memory, table.root(), table.levels(), DumpOptions{.coalesce = false});
  ASSERT_TRUE(lines.ok());
  const std::vector<std::string> expected{
      "iova 0x200000 -> hpa 0x7f000000 2M RW- A D",
      "iova 0x400000 -> hpa 0x1000 4K R-- - - SNP",
      "iova 0x401000 -> hpa 0x2000 4K R-- - - SNP",
      "iova 0x402000 -> hpa 0x3000 4K R-- - - SNP",
      "iova 0x40000000 -> hpa 0x40000000 1G RWX - -",
  };
  EXPECT_EQ(*lines, expected);

  auto coalesced = dump_second_level(memory, table.root(), table.levels());
  ASSERT_TRUE(coalesced.ok());
  ASSERT_EQ(coalesced->size(), 3u);
  EXPECT_EQ((*coalesced)[1], "iova 0x400000 -> hpa 0x1000 4K x3 R-- - - SNP");

  auto range = dump_second_level(memory, table.root(), table.levels(), DumpOptions{.begin = k1G, .end = 2 * k1G});
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->size(), 1u);
}

TEST(SecondLevelDump, CoalescingStopsWhereBitsOrAddressesDiffer) {
  PoolMemory memory;
  auto table = make_table(memory);
  ASSERT_TRUE(table.map(0, 0x10000, 4 * k4K, kReadWrite).ok());
  ASSERT_TRUE(table.map(4 * k4K, 0x90000, 2 * k4K, kReadWrite).ok());  // HPA jumps
  ASSERT_TRUE(table.walk(k4K, kWrite, AccessedDirty::kUpdate).ok());    // bits differ
  auto lines = dump_second_level(memory, table.root(), table.levels());
  ASSERT_TRUE(lines.ok());
  const std::vector<std::string> expected{
      "iova 0x0 -> hpa 0x10000 4K RW- - -",
      "iova 0x1000 -> hpa 0x11000 4K RW- A D",
      "iova 0x2000 -> hpa 0x12000 4K x2 RW- - -",
      "iova 0x4000 -> hpa 0x90000 4K x2 RW- - -",
  };
  EXPECT_EQ(*lines, expected);
}

// ---------------------------------------------------------------------------
// Randomized against a reference model

struct ReferenceLeaf {
  uint64_t size;
  Hpa hpa;
  Permissions permissions;
};

// The leaves, by IOVA, a correct table holds: map() greedily takes the largest page
// both addresses' alignment and the remaining length allow.
class ReferenceModel {
 public:
  bool overlaps(uint64_t begin, uint64_t end) const {
    auto next = leaves_.lower_bound(begin);
    if (next != leaves_.end() && next->first < end) return true;
    if (next == leaves_.begin()) return false;
    auto previous = std::prev(next);
    return previous->first + previous->second.size > begin;
  }

  void map(uint64_t iova, Hpa hpa, uint64_t length, Permissions permissions) {
    while (length > 0) {
      for (uint64_t size : {k1G, k2M, k4K}) {
        if (is_aligned(iova | hpa, size) && length >= size) {
          leaves_[iova] = ReferenceLeaf{size, hpa, permissions};
          iova += size;
          hpa += size;
          length -= size;
          break;
        }
      }
    }
  }

  // nullopt when a leaf straddles the range (the table must refuse).
  std::optional<uint64_t> unmap(uint64_t begin, uint64_t end) {
    uint64_t bytes = 0;
    std::vector<uint64_t> inside;
    for (auto leaf = first_overlapping(begin); leaf != leaves_.end() && leaf->first < end; ++leaf) {
      if (leaf->first < begin || leaf->first + leaf->second.size > end) return std::nullopt;
      inside.push_back(leaf->first);
      bytes += leaf->second.size;
    }
    for (uint64_t iova : inside) leaves_.erase(iova);
    return bytes;
  }

  const ReferenceLeaf* find(uint64_t iova) const {
    auto leaf = first_overlapping(iova);
    if (leaf == leaves_.end() || leaf->first > iova) return nullptr;
    return &leaf->second;
  }

  const std::map<uint64_t, ReferenceLeaf>& leaves() const { return leaves_; }

 private:
  std::map<uint64_t, ReferenceLeaf>::const_iterator first_overlapping(uint64_t iova) const {
    auto next = leaves_.lower_bound(iova);
    if (next != leaves_.begin()) {
      auto previous = std::prev(next);
      if (previous->first + previous->second.size > iova) return previous;
    }
    return next;
  }

  std::map<uint64_t, ReferenceLeaf> leaves_;
};

void expect_walk_matches(const SecondLevelTable& table, const ReferenceModel& model, uint64_t iova) {
  auto walk = table.walk(iova, Access{});
  const ReferenceLeaf* leaf = model.find(iova);
  if (leaf == nullptr) {
    ASSERT_FALSE(walk.ok()) << fmt::format("IOVA {:#x} should not be mapped", iova);
    EXPECT_EQ(walk.fault().reason, IOASID_FAULT_REASON_ACCESS);
    return;
  }
  ASSERT_TRUE(walk.ok()) << fmt::format("IOVA {:#x} should be mapped", iova);
  const uint64_t leaf_iova = align_down(iova, leaf->size);
  EXPECT_EQ(walk.translation().page_size, leaf->size) << fmt::format("{:#x}", iova);
  EXPECT_EQ(walk.translation().hpa, leaf->hpa + (iova - leaf_iova)) << fmt::format("{:#x}", iova);
  EXPECT_EQ(walk.translation().permissions, leaf->permissions) << fmt::format("{:#x}", iova);
}

void expect_leaves_match(PoolMemory& memory, const SecondLevelTable& table, const ReferenceModel& model) {
  std::map<uint64_t, ReferenceLeaf> found;
  auto listed = for_each_second_level_leaf(memory, table.root(), table.levels(), 0, ~0ull,
                                           [&](const LeafEntry& leaf) -> Result<void> {
                                             found[leaf.iova] = ReferenceLeaf{
                                                 leaf.size, sl::output_address(leaf.value),
                                                 sl::permissions_of(leaf.value)};
                                             return success();
                                           });
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(found.size(), model.leaves().size());
  for (const auto& [iova, leaf] : model.leaves()) {
    auto match = found.find(iova);
    ASSERT_NE(match, found.end()) << fmt::format("leaf {:#x} missing", iova);
    EXPECT_EQ(match->second.size, leaf.size);
    EXPECT_EQ(match->second.hpa, leaf.hpa);
    EXPECT_EQ(match->second.permissions, leaf.permissions);
  }
}

struct RandomOpsConfig {
  int levels;
  uint64_t window;        // IOVAs in [base, base + window)
  uint64_t base;
  uint64_t max_length;    // of runs that may be 4K-granular
  uint64_t max_large_length;  // of 2M/1G-granular runs, whose HPA follows the IOVA's alignment
  int operations;
  bool walk_every_page;   // else: walk both ends of every leaf and random probes
};

void run_random_operations(const RandomOpsConfig& config, uint32_t seed) {
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937_64 random(seed);
  PoolMemory memory;
  auto table = make_table(memory, config.levels);
  ReferenceModel model;
  const auto pick = [&](uint64_t bound) { return std::uniform_int_distribution<uint64_t>(0, bound - 1)(random); };
  const auto pick_aligned = [&](uint64_t bound) {
    // Bias towards 2M and 1G alignment so large pages appear.
    const uint64_t alignment = std::array{k4K, k4K, k2M, k2M, k1G}[pick(5)];
    return align_down(pick(bound), std::min(alignment, bound));
  };
  const Permissions choices[] = {kReadWrite, kReadOnly, kWriteOnly, Permissions{true, true, true}};
  // Outcomes seen, so the test shows it reached every path (errno 0 is success).
  std::map<std::pair<bool, int>, int> outcomes;
  std::set<uint64_t> leaf_sizes;

  for (int step = 0; step < config.operations; ++step) {
    const bool do_map = pick(100) < 60;
    const uint64_t iova = config.base + pick_aligned(config.window);
    const bool large = pick(4) == 0;
    uint64_t length = large ? pick_aligned(config.max_large_length) : align_down(pick(config.max_length), k4K);
    length = std::min(std::max(length, k4K), config.base + config.window - iova);
    if (length == 0) continue;
    const auto before_pages = memory.pages_in_use();

    if (do_map) {
      // The HPA shares the IOVA's alignment half the time, so all page sizes occur;
      // always for large runs, which would otherwise be millions of 4K leaves.
      const bool congruent = large || pick(2) == 0;
      const Hpa hpa = congruent ? kData + (iova % (64 * k1G)) : kData + pick_aligned(64 * k1G);
      const Permissions permissions = choices[pick(4)];
      const bool limit_pages = pick(8) == 0;
      if (limit_pages) memory.set_page_limit(memory.pages_in_use() + pick(3));
      auto result = table.map(iova, hpa, length, permissions);
      memory.set_page_limit(std::numeric_limits<size_t>::max());
      ++outcomes[{true, result.code()}];
      if (model.overlaps(iova, iova + length)) {
        EXPECT_TRUE(result.code() == EEXIST || (limit_pages && result.code() == ENOMEM))
            << fmt::format("map {:#x}+{:#x}: {}", iova, length, result.code());
      } else if (result.ok()) {
        model.map(iova, hpa, length, permissions);
      } else {
        EXPECT_TRUE(limit_pages && result.code() == ENOMEM) << result.error().why;
      }
      if (!result.ok()) {
        EXPECT_EQ(memory.pages_in_use(), before_pages);
      }
    } else {
      auto result = table.unmap(iova, length);
      auto expected = model.unmap(iova, iova + length);
      ++outcomes[{false, result.code()}];
      if (!expected) {
        EXPECT_EQ(result.code(), EINVAL) << fmt::format("unmap {:#x}+{:#x}", iova, length);
        EXPECT_EQ(memory.pages_in_use(), before_pages);
      } else {
        ASSERT_TRUE(result.ok()) << result.error().why;
        EXPECT_EQ(*result, *expected);
      }
    }

    ASSERT_EQ(table.table_pages(), memory.pages_in_use());
    for (const auto& [leaf_iova, leaf] : model.leaves()) leaf_sizes.insert(leaf.size);
    if (config.walk_every_page) {
      for (uint64_t page = config.base; page < config.base + config.window; page += k4K)
        expect_walk_matches(table, model, page);
    } else {
      // Around the range just changed every time; the whole table now and then.
      for (const uint64_t probe : {iova - k4K, iova, iova + length - k4K, iova + length}) {
        if (probe >= config.base && probe < config.base + config.window) expect_walk_matches(table, model, probe);
      }
      for (int probe = 0; probe < 16; ++probe) expect_walk_matches(table, model, config.base + pick(config.window));
      if (step % 16 == 0 || step + 1 == config.operations) {
        expect_leaves_match(memory, table, model);
        for (const auto& [leaf_iova, leaf] : model.leaves()) {
          expect_walk_matches(table, model, leaf_iova);
          expect_walk_matches(table, model, leaf_iova + leaf.size - k4K);
        }
      }
    }
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_EQ(count_reachable_tables(memory, table.root(), table.levels()), table.table_pages());
  for (const auto& outcome : {std::pair{true, 0}, {true, EEXIST}, {true, ENOMEM}, {false, 0}, {false, EINVAL}})
    EXPECT_GT(outcomes[outcome], 0) << (outcome.first ? "map" : "unmap") << " errno " << outcome.second;
  EXPECT_TRUE(leaf_sizes.count(k4K) && leaf_sizes.count(k2M)) << "no 4K or 2M leaves";
  if (config.window >= 2 * k1G) {
    EXPECT_TRUE(leaf_sizes.count(k1G)) << "no 1G leaves";
  }
  auto all = table.unmap(0, ~0ull);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(memory.pages_in_use(), 1u);
}

TEST(SecondLevelRandomized, DenseWindowWalkEveryPage) {
  for (uint32_t seed : {1u, 2u, 3u})
    run_random_operations(RandomOpsConfig{kFourLevels, 24 * k2M, k1G - 8 * k2M, 6 * k2M, 8 * k2M, 300, true}, seed);
}

TEST(SecondLevelRandomized, WideWindowWithGigPages) {
  for (uint32_t seed : {11u, 12u})
    run_random_operations(RandomOpsConfig{kFourLevels, 8 * k1G, 0, 4 * k2M, 3 * k1G, 400, false}, seed);
}

TEST(SecondLevelRandomized, FiveLevelsAbove48Bits) {
  run_random_operations(RandomOpsConfig{kFiveLevels, 4 * k1G, (1ull << 56) - 2 * k1G, 4 * k2M, 2 * k1G, 400, false}, 21);
}

}  // namespace
}  // namespace ioasid::pgtable
