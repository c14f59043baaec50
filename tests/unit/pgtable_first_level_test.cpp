// SPDX-License-Identifier: MIT
// The VT-d first-level (x86-64) page-table format, its walker alone (tables in daemon
// memory, GPAs are HPAs) and nested over a second-level table (guest SVA: the guest's
// tables in guest RAM, a memfd the test maps as a VMM would and the HpaSpace serves as
// a segment), and FirstLevelBuilder.
#include "memory/hpa_space.h"
#include "memory/mapped_file_backing.h"
#include "pgtable/first_level_builder.h"
#include "pgtable/first_level_format.h"
#include "pgtable/first_level_walk.h"
#include "pgtable/geometry.h"
#include "pgtable/second_level_table.h"
#include "pgtable/walk.h"

#include <linux/ioasid.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace ioasid::pgtable {
namespace {

namespace fl = first_level;

constexpr uint64_t k4K = kPageSize4K;
constexpr uint64_t k2M = kPageSize2M;
constexpr uint64_t k1G = kPageSize1G;
constexpr uint64_t k1M = 1ull << 20;

constexpr Access kRead{.read = true};
constexpr Access kWrite{.write = true};
constexpr Access kExec{.read = true, .exec = true};
constexpr Permissions kReadWrite{.read = true, .write = true};
constexpr Permissions kReadOnly{.read = true};

constexpr fl::LeafFlags kUserWritable{.writable = true, .user = true};
constexpr fl::LeafFlags kUserReadOnly{.user = true};

// Output addresses of first-level-only walks: nothing backs them, nothing reads them.
constexpr uint64_t kData = 0x40'0000'0000;  // 1 GiB aligned

// A user-half GVA with distinct indices at every level.
constexpr uint64_t kGva = (0x0f5ull << 39) | (0x1a3ull << 30) | (0x0c7ull << 21) | (0x155ull << 12);

template <typename T>
T take(Result<T> result) {
  EXPECT_TRUE(result.ok()) << result.error().why;
  return std::move(result).value();
}

// Forwards to another PhysicalMemory, with ways to fail or interfere with the walker's
// compare-and-swap.
class HookedMemory final : public PhysicalMemory {
 public:
  explicit HookedMemory(PhysicalMemory& inner) : inner_(inner) {}

  Result<uint64_t> read64(Hpa hpa) override { return inner_.read64(hpa); }
  Result<void> write64(Hpa hpa, uint64_t value) override { return inner_.write64(hpa, value); }
  Result<bool> compare_exchange64(Hpa hpa, uint64_t& expected, uint64_t desired) override {
    ++compare_exchanges;
    if (fail_compare_exchange) return fail(EIO, "compare-and-swap refused");
    if (before_compare_exchange) std::exchange(before_compare_exchange, {})(hpa);
    return inner_.compare_exchange64(hpa, expected, desired);
  }
  Result<Hpa> alloc_table() override { return inner_.alloc_table(); }
  void free_table(Hpa table) override { inner_.free_table(table); }

  bool fail_compare_exchange = false;
  int compare_exchanges = 0;
  std::function<void(Hpa)> before_compare_exchange;  // runs once, before the next CAS

 private:
  PhysicalMemory& inner_;
};

// ---------------------------------------------------------------------------
// Format

TEST(FirstLevelFormat, BitLayoutMatchesTheSpec) {
  EXPECT_EQ(fl::kPresent, 0x1u);
  EXPECT_EQ(fl::kWritable, 0x2u);
  EXPECT_EQ(fl::kUser, 0x4u);
  EXPECT_EQ(fl::kWriteThrough, 0x8u);
  EXPECT_EQ(fl::kCacheDisable, 0x10u);
  EXPECT_EQ(fl::kAccessed, 0x20u);
  EXPECT_EQ(fl::kDirty, 0x40u);
  EXPECT_EQ(fl::kLargePage, 0x80u);
  EXPECT_EQ(fl::kGlobal, 0x100u);
  EXPECT_EQ(fl::kExtendedAccessed, 0x400u);
  EXPECT_EQ(fl::kLargePagePat, 0x1000u);
  EXPECT_EQ(fl::kExecuteDisable, 0x8000'0000'0000'0000u);
  EXPECT_EQ(fl::kAddressMask, 0x000f'ffff'ffff'f000u);
  EXPECT_EQ(fl::kMaxOutputAddressBits, 52);
}

TEST(FirstLevelFormat, EntriesEncodeAndDecode) {
  const uint64_t pointer = fl::make_table_pointer(0xabc000);
  EXPECT_EQ(pointer, 0xabc000u | fl::kPresent | fl::kWritable | fl::kUser);
  EXPECT_FALSE(fl::is_leaf(pointer, 2));
  EXPECT_EQ(fl::table_address(pointer | fl::kExecuteDisable | fl::kAccessed), 0xabc000u);

  const uint64_t leaf = fl::make_leaf(0x1234'4000'0000, 3, fl::leaf_attributes({.writable = true, .execute_disable = true}));
  EXPECT_EQ(leaf, 0x1234'4000'0000u | fl::kPresent | fl::kWritable | fl::kLargePage | fl::kExecuteDisable);
  EXPECT_TRUE(fl::is_leaf(leaf, 3));
  EXPECT_EQ(fl::leaf_frame(leaf | fl::kLargePagePat, 3), 0x1234'4000'0000u);  // PAT is not address
  EXPECT_EQ(fl::make_leaf(0x7000, 1, fl::leaf_attributes(kUserReadOnly)), 0x7000u | fl::kPresent | fl::kUser);
  EXPECT_TRUE(fl::is_leaf(0x7000 | fl::kPresent, 1));
  EXPECT_TRUE(fl::is_present(fl::kPresent));
  EXPECT_FALSE(fl::is_present(~fl::kPresent));  // everything but P: not present
}

TEST(FirstLevelFormat, ReservedFields) {
  constexpr uint64_t kPs = fl::kPresent | fl::kLargePage;
  EXPECT_TRUE(fl::has_reserved_bits_set(kPs, 4));
  EXPECT_TRUE(fl::has_reserved_bits_set(kPs, 5));
  EXPECT_FALSE(fl::has_reserved_bits_set(kPs | k2M, 2));
  EXPECT_FALSE(fl::has_reserved_bits_set(kPs | k2M | fl::kLargePagePat, 2));  // bit 12 is PAT
  EXPECT_TRUE(fl::has_reserved_bits_set(kPs | k2M | (1ull << 13), 2));
  EXPECT_TRUE(fl::has_reserved_bits_set(kPs | k2M | (1ull << 20), 2));
  EXPECT_FALSE(fl::has_reserved_bits_set(kPs | k1G, 3));
  EXPECT_TRUE(fl::has_reserved_bits_set(kPs | k1G | k2M, 3));
  EXPECT_TRUE(fl::has_reserved_bits_set(kPs | k1G | (1ull << 29), 3));
  EXPECT_FALSE(fl::has_reserved_bits_set(kPs | 0x5000, 1));  // bit 7 of a PTE is PAT
  EXPECT_FALSE(fl::has_reserved_bits_set(fl::kPresent | 0x5000, 3));  // a table pointer
  EXPECT_FALSE(fl::has_reserved_bits_set(kPs | k2M | (0x7ffull << 52), 2));  // 62:52 ignored
}

TEST(FirstLevelFormat, CanonicalAddresses) {
  EXPECT_TRUE(fl::is_canonical(0, 4));
  EXPECT_TRUE(fl::is_canonical((1ull << 47) - 1, 4));
  EXPECT_FALSE(fl::is_canonical(1ull << 47, 4));
  EXPECT_FALSE(fl::is_canonical(0xffff'0000'0000'0000, 4));
  EXPECT_TRUE(fl::is_canonical(0xffff'8000'0000'0000, 4));
  EXPECT_TRUE(fl::is_canonical(~0ull, 4));
  EXPECT_TRUE(fl::is_canonical(1ull << 47, 5));
  EXPECT_TRUE(fl::is_canonical((1ull << 56) - 1, 5));
  EXPECT_FALSE(fl::is_canonical(1ull << 56, 5));
  EXPECT_TRUE(fl::is_canonical(0xff00'0000'0000'0000, 5));
  EXPECT_FALSE(fl::is_canonical(0xff80'0000'0000'0000 ^ (1ull << 56), 5));
}

// ---------------------------------------------------------------------------
// First level alone: tables in daemon memory, GPAs are HPAs

class FirstLevelOnly : public ::testing::Test {
 protected:
  FirstLevelBuilder make_builder(int levels = kFourLevels) {
    return take(FirstLevelBuilder::create(over_physical_memory(memory), levels));
  }
  WalkResult walk(const FirstLevelConfig& config, uint64_t gva, Access access, bool privileged = false) {
    return walk_first_level(memory, config, gva, access, privileged, nullptr);
  }
  uint64_t entry_at(const FirstLevelBuilder& builder, uint64_t gva, int level) {
    return take(builder.entry_gpa(gva, level));
  }
  uint64_t load(uint64_t hpa) { return take(memory.read64(hpa)); }
  void store(uint64_t hpa, uint64_t value) { ASSERT_TRUE(memory.write64(hpa, value).ok()); }

  HpaSpace memory;
};

TEST_F(FirstLevelOnly, TranslatesFourKTwoMegAndOneGigPages) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData + 5 * k4K, k4K, kUserWritable).ok());
  ASSERT_TRUE(builder.map(4 * k1G + 6 * k2M, kData + 7 * k2M, k2M, kUserWritable).ok());
  ASSERT_TRUE(builder.map(9 * k1G, kData + 3 * k1G, k1G, kUserWritable).ok());

  struct Case {
    uint64_t gva;
    uint64_t gpa;
    uint64_t page_size;
    int level;
  };
  for (const Case& c : {Case{kGva + 0x123, kData + 5 * k4K + 0x123, k4K, 1},
                        Case{4 * k1G + 6 * k2M + 0x1'2345, kData + 7 * k2M + 0x1'2345, k2M, 2},
                        Case{9 * k1G + 0x1234'5678, kData + 3 * k1G + 0x1234'5678, k1G, 3}}) {
    auto result = walk(builder.config(), c.gva, kRead);
    ASSERT_TRUE(result.ok()) << fmt::format("{:#x}", c.gva);
    const Translation& t = result.translation();
    EXPECT_EQ(t.hpa, c.gpa);
    EXPECT_EQ(t.page_size, c.page_size);
    EXPECT_EQ(t.level, c.level);
    EXPECT_EQ(t.leaf_entry, entry_at(builder, c.gva, c.level));
    EXPECT_EQ(t.permissions, (Permissions{.read = true, .write = true, .exec = true}));
    EXPECT_FALSE(t.snoop);
  }
}

TEST_F(FirstLevelOnly, FiveLevelTablesTranslateAbove47Bits) {
  auto builder = make_builder(kFiveLevels);
  const uint64_t high = (0x5aull << 48) | (3ull << 39) | k2M;  // bit 56 clear: user half
  ASSERT_TRUE(builder.map(high, kData, k2M + k4K, kUserWritable).ok());
  auto big = walk(builder.config(), high + 77, kWrite);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big.translation().hpa, kData + 77);
  EXPECT_EQ(big.translation().page_size, k2M);
  auto small = walk(builder.config(), high + k2M + 8, kRead);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small.translation().hpa, kData + k2M + 8);
  EXPECT_EQ(small.translation().page_size, k4K);
  // The same low 48 bits in another PML5 slot are not mapped: the fault is at level 5.
  auto other = walk(builder.config(), high ^ (1ull << 48), kRead);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(other.fault().level, 5);
  EXPECT_EQ(other.fault().fetch_address, entry_address(builder.root(), high ^ (1ull << 48), 5));
  // A 4-level walk of the same root reads it as a PML4.
  FirstLevelConfig as_four = builder.config();
  as_four.levels = kFourLevels;
  EXPECT_EQ(walk(as_four, high, kRead).fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
}

TEST_F(FirstLevelOnly, KernelHalfAddressesAreCanonical) {
  for (int levels : {kFourLevels, kFiveLevels}) {
    auto builder = make_builder(levels);
    const uint64_t kernel = levels == kFourLevels ? 0xffff'8880'0000'0000 : 0xff11'0000'0000'0000;
    ASSERT_TRUE(builder.map(kernel, kData, k1G, {.writable = true}).ok());
    auto result = walk(FirstLevelConfig{.root = builder.root(), .levels = levels, .supervisor_requests = true},
                       kernel + 0x1234, kWrite, /*privileged=*/true);
    ASSERT_TRUE(result.ok()) << levels;
    EXPECT_EQ(result.translation().hpa, kData + 0x1234);
    // The last page of the address space.
    ASSERT_TRUE(builder.map(~0ull - k4K + 1, kData, k4K, {.writable = true}).ok());
    EXPECT_TRUE(walk(FirstLevelConfig{.root = builder.root(), .levels = levels, .supervisor_requests = true},
                     ~0ull, kRead, true)
                    .ok());
  }
}

TEST_F(FirstLevelOnly, PatBitOfALargeLeafIsNotAddress) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(k1G, kData + k2M, k2M, kUserWritable, k2M).ok());
  const uint64_t pde = entry_at(builder, k1G, 2);
  store(pde, load(pde) | fl::kLargePagePat);
  auto result = walk(builder.config(), k1G + 0x42, kRead);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.translation().hpa, kData + k2M + 0x42);
}

// ---------------------------------------------------------------------------
// First level alone: faults

TEST_F(FirstLevelOnly, AddressOutsideTheWidthOrBadLevelsIsOutOfRange) {
  auto four = make_builder(kFourLevels);
  auto five = make_builder(kFiveLevels);
  const std::pair<FirstLevelConfig, uint64_t> cases[] = {
      {four.config(), 1ull << 47},           {four.config(), 1ull << 48},
      {four.config(), 0xfffe'8000'0000'0000}, {four.config(), 0x8000'0000'0000'0000},
      {five.config(), 1ull << 56},           {five.config(), 0xfe00'0000'0000'0000},
  };
  for (const auto& [config, gva] : cases) {
    for (bool privileged : {false, true}) {
      FirstLevelConfig with_sre = config;
      with_sre.supervisor_requests = true;
      auto result = walk(with_sre, gva, kRead, privileged);
      ASSERT_FALSE(result.ok()) << fmt::format("{:#x}", gva);
      EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
      EXPECT_EQ(result.fault().level, 0);
      EXPECT_FALSE(result.fault().fetch_address.has_value());
      EXPECT_FALSE(result.fault().second_stage);
    }
  }
  for (int levels : {0, 3, 6}) {
    FirstLevelConfig config = four.config();
    config.levels = levels;
    EXPECT_EQ(walk(config, 0, kRead).fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS) << levels;
  }
  // Non-canonical beats the missing SRE.
  EXPECT_EQ(walk(four.config(), 1ull << 47, kRead, true).fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
}

TEST_F(FirstLevelOnly, NotPresentIsAnAccessFaultAtThatEntry) {
  auto builder = make_builder();
  auto empty = walk(builder.config(), kGva, kRead);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(empty.fault().level, 4);
  EXPECT_EQ(empty.fault().fetch_address, entry_address(builder.root(), kGva, 4));
  EXPECT_FALSE(empty.fault().second_stage);

  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  // Neighbours at each level: the entry that stops them is the first one not present.
  const std::pair<uint64_t, int> neighbours[] = {
      {kGva + k4K, 1}, {kGva + k2M, 2}, {kGva + k1G, 3}, {kGva + (1ull << 39), 4}};
  for (const auto& [gva, level] : neighbours) {
    auto result = walk(builder.config(), gva, kRead);
    ASSERT_FALSE(result.ok()) << level;
    EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_ACCESS);
    EXPECT_EQ(result.fault().level, level);
    EXPECT_EQ(result.fault().fetch_address, entry_at(builder, gva, level));
  }
  // Clearing only P hides an entry whatever its other bits.
  const uint64_t pdpte = entry_at(builder, kGva, 3);
  store(pdpte, load(pdpte) & ~fl::kPresent);
  auto hidden = walk(builder.config(), kGva, kRead);
  ASSERT_FALSE(hidden.ok());
  EXPECT_EQ(hidden.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_EQ(hidden.fault().level, 3);
  EXPECT_EQ(hidden.fault().fetch_address, pdpte);
}

TEST_F(FirstLevelOnly, ReservedFieldsAreFetchFaults) {
  for (int levels : {kFourLevels, kFiveLevels}) {
    auto builder = make_builder(levels);
    ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
    const uint64_t top = entry_at(builder, kGva, levels);
    const uint64_t good = load(top);
    store(top, good | fl::kLargePage);  // PS in a PML4E / PML5E
    auto result = walk(builder.config(), kGva, kRead);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
    EXPECT_EQ(result.fault().level, levels);
    EXPECT_EQ(result.fault().fetch_address, top);
    store(top, good);
    if (levels == kFiveLevels) {  // and in the PML4E under it
      const uint64_t pml4e = entry_at(builder, kGva, 4);
      store(pml4e, load(pml4e) | fl::kLargePage);
      EXPECT_EQ(walk(builder.config(), kGva, kRead).fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
      EXPECT_EQ(walk(builder.config(), kGva, kRead).fault().fetch_address, pml4e);
    }
  }

  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, kData, k2M, kUserWritable, k2M).ok());
  ASSERT_TRUE(builder.map(k1G, kData, k1G, kUserWritable, k1G).ok());
  const uint64_t pde = entry_at(builder, 0, 2);
  store(pde, load(pde) | (1ull << 13));  // a 2M frame that is only 8K aligned
  auto two_meg = walk(builder.config(), 0x10, kRead);
  ASSERT_FALSE(two_meg.ok());
  EXPECT_EQ(two_meg.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(two_meg.fault().level, 2);
  EXPECT_EQ(two_meg.fault().fetch_address, pde);
  const uint64_t pdpte = entry_at(builder, k1G, 3);
  store(pdpte, load(pdpte) | k2M);  // a 1G frame that is only 2M aligned
  auto one_gig = walk(builder.config(), k1G, kRead);
  ASSERT_FALSE(one_gig.ok());
  EXPECT_EQ(one_gig.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(one_gig.fault().level, 3);
  EXPECT_EQ(one_gig.fault().fetch_address, pdpte);
}

TEST_F(FirstLevelOnly, UnbackedTableIsAFetchFault) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  constexpr uint64_t kUnbacked = 0x7'0000'0000;  // in the segment window, but no segment is there
  store(entry_at(builder, kGva, 2), fl::make_table_pointer(kUnbacked));
  auto result = walk(builder.config(), kGva, kRead);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(result.fault().level, 1);
  EXPECT_EQ(result.fault().fetch_address, entry_address(kUnbacked, kGva, 1));
  EXPECT_FALSE(result.fault().second_stage);

  auto bad_root = walk(FirstLevelConfig{.root = kUnbacked, .levels = 4}, kGva, kRead);
  ASSERT_FALSE(bad_root.ok());
  EXPECT_EQ(bad_root.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_EQ(bad_root.fault().level, 4);
  EXPECT_EQ(bad_root.fault().fetch_address, entry_address(kUnbacked, kGva, 4));
}

TEST_F(FirstLevelOnly, PrivilegedRequestWithoutSreIsAPermissionFaultBeforeTheWalk) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, {.writable = true}).ok());
  auto result = walk(builder.config(), kGva, kRead, /*privileged=*/true);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_EQ(result.fault().level, 0);
  EXPECT_FALSE(result.fault().fetch_address.has_value());
  // Even where nothing is mapped, and nothing was read or set.
  EXPECT_EQ(walk(builder.config(), kGva + k1G, kRead, true).fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_EQ(load(entry_at(builder, kGva, 4)) & fl::kAccessed, 0u);
  FirstLevelConfig sre = builder.config();
  sre.supervisor_requests = true;
  EXPECT_TRUE(walk(sre, kGva, kRead, true).ok());
}

// ---------------------------------------------------------------------------
// First level alone: permissions

enum class Restriction { kNone, kReadOnly, kSupervisor, kNoExecute };

// The rule, written out as the spec states it (first_level_walk.h, step 4).
std::optional<Permissions> expected_rights(bool privileged, bool sre, bool wpe, Restriction restriction) {
  if (privileged && !sre) return std::nullopt;
  const bool writable = restriction != Restriction::kReadOnly;
  const bool user_page = restriction != Restriction::kSupervisor;
  const bool executable = restriction != Restriction::kNoExecute;
  if (!privileged) {
    if (!user_page) return Permissions{};  // nothing at all
    return Permissions{.read = true, .write = writable, .exec = executable};
  }
  return Permissions{.read = true, .write = writable || !wpe, .exec = executable && !user_page};
}

TEST_F(FirstLevelOnly, PermissionMatrix) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  int walks = 0;
  for (int level = 1; level <= 4; ++level) {
    const uint64_t entry = entry_at(builder, kGva, level);
    for (Restriction restriction :
         {Restriction::kNone, Restriction::kReadOnly, Restriction::kSupervisor, Restriction::kNoExecute}) {
      const uint64_t original = load(entry);
      uint64_t changed = original;
      if (restriction == Restriction::kReadOnly) changed &= ~fl::kWritable;
      if (restriction == Restriction::kSupervisor) changed &= ~fl::kUser;
      if (restriction == Restriction::kNoExecute) changed |= fl::kExecuteDisable;
      store(entry, changed);
      for (bool privileged : {false, true}) {
        for (bool sre : {false, true}) {
          for (bool wpe : {false, true}) {
            const FirstLevelConfig config{
                .root = builder.root(), .levels = 4, .supervisor_requests = sre, .write_protect = wpe};
            const auto rights = expected_rights(privileged, sre, wpe, restriction);
            for (Access access : {kRead, kWrite, kExec, Access{.read = true, .write = true}}) {
              const std::string what = fmt::format("level {} restriction {} privileged {} sre {} wpe {} r{}w{}x{}",
                                                   level, static_cast<int>(restriction), privileged, sre, wpe,
                                                   access.read, access.write, access.exec);
              auto result = walk(config, kGva + 0x18, access, privileged);
              ++walks;
              if (rights && rights->allows(access)) {
                ASSERT_TRUE(result.ok()) << what;
                EXPECT_EQ(result.translation().permissions, *rights) << what;
                EXPECT_EQ(result.translation().hpa, kData + 0x18) << what;
              } else {
                ASSERT_FALSE(result.ok()) << what;
                EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PERMISSION) << what;
                if (rights) {  // refused at the leaf
                  EXPECT_EQ(result.fault().level, 1) << what;
                  EXPECT_EQ(result.fault().fetch_address, entry_at(builder, kGva, 1)) << what;
                } else {  // refused before the walk (SRE)
                  EXPECT_EQ(result.fault().level, 0) << what;
                }
              }
            }
          }
        }
      }
      store(entry, original);
    }
  }
  EXPECT_EQ(walks, 4 * 4 * 8 * 4);
}

TEST_F(FirstLevelOnly, PermissionSpotChecks) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, kData, k4K, {.writable = true}).ok());            // supervisor page
  ASSERT_TRUE(builder.map(k4K, kData, k4K, kUserReadOnly).ok());               // user, read-only
  ASSERT_TRUE(builder.map(2 * k4K, kData, k4K, {.user = true, .execute_disable = true}).ok());
  const FirstLevelConfig user_only = builder.config();
  const FirstLevelConfig sre{.root = builder.root(), .levels = 4, .supervisor_requests = true};
  const FirstLevelConfig sre_wpe{.root = builder.root(), .levels = 4, .supervisor_requests = true, .write_protect = true};
  const auto reason = [&](const FirstLevelConfig& config, uint64_t gva, Access access, bool privileged) {
    auto result = walk(config, gva, access, privileged);
    return result.ok() ? 0u : result.fault().reason;
  };
  constexpr uint32_t kOk = 0, kDenied = IOASID_FAULT_REASON_PERMISSION;
  EXPECT_EQ(reason(user_only, 0, kRead, false), kDenied);  // a user request to a supervisor page
  EXPECT_EQ(reason(sre, 0, kWrite, true), kOk);
  EXPECT_EQ(reason(sre, 0, kExec, true), kOk);
  EXPECT_EQ(reason(user_only, k4K, kRead, false), kOk);
  EXPECT_EQ(reason(user_only, k4K, kWrite, false), kDenied);
  EXPECT_EQ(reason(sre, k4K, kWrite, true), kOk);        // WPE off: R/W ignored for supervisor writes
  EXPECT_EQ(reason(sre_wpe, k4K, kWrite, true), kDenied);  // WPE on: honoured
  EXPECT_EQ(reason(sre, k4K, kRead, true), kOk);         // no SMAP
  EXPECT_EQ(reason(sre, k4K, kExec, true), kDenied);     // SMEP: not from a user page
  EXPECT_EQ(reason(user_only, k4K, kExec, false), kOk);
  EXPECT_EQ(reason(user_only, 2 * k4K, kExec, false), kDenied);  // XD
  EXPECT_EQ(reason(user_only, 2 * k4K, kRead, false), kOk);
}

TEST_F(FirstLevelOnly, XdOrReadOnlyAtAnUpperLevelCoversEveryPageBelow) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, kData, 4 * k2M, kUserWritable, k4K).ok());
  const uint64_t pdpte = entry_at(builder, 0, 3);
  store(pdpte, load(pdpte) | fl::kExecuteDisable);
  const uint64_t pde = entry_at(builder, k2M, 2);
  store(pde, load(pde) & ~fl::kWritable);
  for (uint64_t gva : {uint64_t{0}, k2M, 3 * k2M + 5 * k4K}) {
    EXPECT_EQ(walk(builder.config(), gva, kExec).fault().reason, IOASID_FAULT_REASON_PERMISSION);
    EXPECT_EQ(walk(builder.config(), gva, kWrite).ok(), gva / k2M != 1) << gva;
  }
  EXPECT_EQ(walk(builder.config(), k2M + k4K, kRead).translation().permissions, kReadOnly);
}

// ---------------------------------------------------------------------------
// First level alone: accessed and dirty

TEST_F(FirstLevelOnly, SetsAccessedInEveryEntryAndDirtyInTheLeafOnWrites) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, 2 * k4K, kUserWritable).ok());
  ASSERT_TRUE(builder.map(k1G, kData, k2M, kUserWritable, k2M).ok());
  const auto ad = [&](uint64_t gva, int level) { return load(entry_at(builder, gva, level)) & fl::kAccessedDirtyMask; };

  ASSERT_TRUE(walk(builder.config(), kGva, kRead).ok());
  for (int level = 1; level <= 4; ++level) EXPECT_EQ(ad(kGva, level), fl::kAccessed) << level;
  EXPECT_EQ(ad(kGva + k4K, 1), 0u);  // the neighbour was not used

  ASSERT_TRUE(walk(builder.config(), kGva, kWrite).ok());
  EXPECT_EQ(ad(kGva, 1), fl::kAccessed | fl::kDirty);
  for (int level = 2; level <= 4; ++level) EXPECT_EQ(ad(kGva, level), fl::kAccessed) << level;  // D in leaves only

  ASSERT_TRUE(walk(builder.config(), k1G + 99, kWrite).ok());  // a 2M leaf gets D too
  EXPECT_EQ(ad(k1G, 2), fl::kAccessed | fl::kDirty);
  EXPECT_EQ(ad(k1G, 3), fl::kAccessed);
}

TEST_F(FirstLevelOnly, ExtendedAccessedOnlyWithEafe) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, kData, 2 * k4K, kUserWritable).ok());
  ASSERT_TRUE(walk(builder.config(), 0, kRead).ok());
  EXPECT_EQ(load(entry_at(builder, 0, 1)) & fl::kExtendedAccessed, 0u);

  FirstLevelConfig eafe = builder.config();
  eafe.extended_accessed = true;
  ASSERT_TRUE(walk(eafe, k4K, kWrite).ok());
  EXPECT_EQ(load(entry_at(builder, k4K, 1)) & fl::kAccessedDirtyMask, fl::kAccessedDirtyMask);
  // Upper entries had A already: EA is still added.
  for (int level = 2; level <= 4; ++level)
    EXPECT_EQ(load(entry_at(builder, 0, level)) & fl::kAccessedDirtyMask, fl::kAccessed | fl::kExtendedAccessed);
  // The first leaf had A but not EA: a walk with EAFE adds it.
  ASSERT_TRUE(walk(eafe, 0, kRead).ok());
  EXPECT_EQ(load(entry_at(builder, 0, 1)) & fl::kAccessedDirtyMask, fl::kAccessed | fl::kExtendedAccessed);
}

TEST_F(FirstLevelOnly, FaultingWalksSetNothing) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserReadOnly).ok());
  EXPECT_FALSE(walk(builder.config(), kGva, kWrite).ok());
  EXPECT_FALSE(walk(builder.config(), kGva + k4K, kRead).ok());  // not present at level 1
  for (int level = 1; level <= 4; ++level)
    EXPECT_EQ(load(entry_at(builder, kGva, level)) & fl::kAccessedDirtyMask, 0u) << level;
}

TEST_F(FirstLevelOnly, EntriesWithTheBitsAlreadySetAreNotWritten) {
  HookedMemory hooked(memory);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  ASSERT_TRUE(walk_first_level(hooked, builder.config(), kGva, kRead, false, nullptr).ok());
  EXPECT_EQ(hooked.compare_exchanges, 4);
  ASSERT_TRUE(walk_first_level(hooked, builder.config(), kGva, kRead, false, nullptr).ok());
  EXPECT_EQ(hooked.compare_exchanges, 4);
  ASSERT_TRUE(walk_first_level(hooked, builder.config(), kGva, kWrite, false, nullptr).ok());
  EXPECT_EQ(hooked.compare_exchanges, 5);  // D in the leaf
  hooked.fail_compare_exchange = true;
  EXPECT_TRUE(walk_first_level(hooked, builder.config(), kGva, kWrite, false, nullptr).ok());
}

TEST_F(FirstLevelOnly, FailedUpdateIsAWalkAbort) {
  HookedMemory hooked(memory);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  ASSERT_TRUE(walk_first_level(hooked, builder.config(), kGva, kRead, false, nullptr).ok());
  hooked.fail_compare_exchange = true;
  auto result = walk_first_level(hooked, builder.config(), kGva, kWrite, false, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_WALK_EABT);
  EXPECT_EQ(result.fault().level, 1);  // A is set everywhere: only the leaf's D was needed
  EXPECT_EQ(result.fault().fetch_address, entry_at(builder, kGva, 1));
  EXPECT_FALSE(result.fault().second_stage);
}

TEST_F(FirstLevelOnly, RetriesWhenOnlyAccessedDirtyChangedUnderTheUpdate) {
  HookedMemory hooked(memory);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  const uint64_t pml4e = entry_at(builder, kGva, 4);
  hooked.before_compare_exchange = [&](Hpa hpa) {
    EXPECT_EQ(hpa, pml4e);
    store(pml4e, load(pml4e) | fl::kExtendedAccessed);  // another walker with EAFE
  };
  auto result = walk_first_level(hooked, builder.config(), kGva, kWrite, false, nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.translation().hpa, kData);
  EXPECT_EQ(load(pml4e) & fl::kAccessedDirtyMask, fl::kAccessed | fl::kExtendedAccessed);
  EXPECT_EQ(hooked.compare_exchanges, 1 + 4);  // one failed swap, then one per entry
}

TEST_F(FirstLevelOnly, RestartsWhenAnEntryChangedUnderTheUpdate) {
  HookedMemory hooked(memory);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, kData, k4K, kUserWritable).ok());
  ASSERT_TRUE(walk(builder.config(), kGva, kRead).ok());  // A everywhere: the leaf's D is the only update
  const uint64_t pte = entry_at(builder, kGva, 1);
  hooked.before_compare_exchange = [&](Hpa hpa) {
    EXPECT_EQ(hpa, pte);
    store(pte, fl::make_leaf(kData + 9 * k4K, 1, fl::leaf_attributes(kUserWritable)));  // the guest remapped
  };
  auto result = walk_first_level(hooked, builder.config(), kGva + 4, kWrite, false, nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.translation().hpa, kData + 9 * k4K + 4);  // the new mapping, walked again
  EXPECT_EQ(load(pte) & fl::kAccessedDirtyMask, fl::kAccessed | fl::kDirty);

  // Remapped read-only under the update: the second walk refuses the write.
  hooked.before_compare_exchange = [&](Hpa) {
    store(pte, fl::make_leaf(kData, 1, fl::leaf_attributes(kUserReadOnly)));
  };
  store(pte, fl::make_leaf(kData, 1, fl::leaf_attributes(kUserWritable)));
  auto refused = walk_first_level(hooked, builder.config(), kGva, kWrite, false, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.fault().reason, IOASID_FAULT_REASON_PERMISSION);
}

// ---------------------------------------------------------------------------
// Nested: guest tables in guest RAM, translated by a second-level table

// A guest's RAM: a memfd the test maps as a VMM would (the guest's own view), and that
// the HpaSpace serves as one segment (the IOMMU's view). Guest page-table pages come
// from a bump allocator at kTableArea.
class GuestRam {
 public:
  GuestRam(uint64_t size, uint64_t table_area) : size_(size), next_table_(table_area) {
    fd_ = memfd_create("guest-ram", MFD_CLOEXEC);
    if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(size)) != 0) return;
    void* view = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (view != MAP_FAILED) view_ = static_cast<uint64_t*>(view);
  }
  ~GuestRam() {
    if (view_ != nullptr) munmap(view_, size_);
    if (fd_ >= 0) close(fd_);
  }
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  bool ok() const { return view_ != nullptr; }
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

  uint64_t load(uint64_t gpa) const { return std::atomic_ref<uint64_t>(view_[gpa / 8]).load(); }
  void store(uint64_t gpa, uint64_t value) { std::atomic_ref<uint64_t>(view_[gpa / 8]).store(value); }

  GuestTableMemory tables(size_t page_limit = SIZE_MAX) {
    return GuestTableMemory{
        .alloc_page = [this, page_limit]() -> Result<uint64_t> {
          if (allocated_ >= page_limit || next_table_ + k4K > size_) return fail(ENOMEM, "guest out of table pages");
          ++allocated_;
          const uint64_t page = next_table_;
          next_table_ += k4K;
          return page;  // a fresh memfd page: zero
        },
        .read64 = [this](uint64_t gpa) -> Result<uint64_t> {
          if (gpa >= size_ || gpa % 8 != 0) return fail(EFAULT, "GPA {:#x} is not RAM", gpa);
          return load(gpa);
        },
        .write64 = [this](uint64_t gpa, uint64_t value) -> Result<void> {
          if (gpa >= size_ || gpa % 8 != 0) return fail(EFAULT, "GPA {:#x} is not RAM", gpa);
          store(gpa, value);
          return success();
        },
        .free_page = [this](uint64_t gpa) { freed.push_back(gpa); },
    };
  }

  std::vector<uint64_t> freed;

 private:
  uint64_t size_;
  uint64_t next_table_;
  size_t allocated_ = 0;
  int fd_ = -1;
  uint64_t* view_ = nullptr;
};

class NestedWalk : public ::testing::Test {
 protected:
  // 2 GiB of guest RAM (sparse): data in the first GiB, tables from 1.5 GiB.
  static constexpr uint64_t kRamSize = 2 * k1G;
  static constexpr uint64_t kTableArea = k1G + 512 * k1M;

  void SetUp() override {
    ASSERT_TRUE(ram.ok());
    auto backing = MappedFileBacking::create(ram.fd(), 0, kRamSize, MapAccess::kReadWrite, "guest RAM");
    ASSERT_TRUE(backing.ok()) << backing.error().why;
    base = take(hpa.add_segment(std::move(*backing)));
    ASSERT_EQ(base % k1G, 0u);
    reset_second_level();
  }

  void reset_second_level() {
    sl.reset();
    sl.emplace(take(SecondLevelTable::create(hpa, kFourLevels)));
  }

  // GPA [gpa, gpa + length) -> its HPA, with leaves of exactly `page` bytes.
  void map_guest(uint64_t gpa, uint64_t length, uint64_t page, Permissions rights = kReadWrite, bool snoop = false) {
    for (uint64_t at = gpa; at < gpa + length; at += page)
      ASSERT_TRUE(sl->map(at, base + at, page, rights, snoop).ok()) << fmt::format("{:#x}", at);
  }
  // The data gigabyte with 1G pages and the table area with 4K pages.
  void map_everything() {
    map_guest(0, k1G, k1G);
    map_guest(kTableArea, 64 * k4K, k4K);
  }

  WalkResult second_level(uint64_t gpa, Access access) {
    return walk_second_level(hpa, sl->root(), kFourLevels, gpa, access, sl_accessed_dirty);
  }

  WalkResult walk(const FirstLevelConfig& config, uint64_t gva, Access access, bool privileged = false) {
    const SecondLevelGpaTranslation translation{&hpa, sl->root(), kFourLevels, sl_accessed_dirty};
    const GpaTranslator to_host(translation);
    return walk_first_level(hpa, config, gva, access, privileged, &to_host);
  }

  FirstLevelBuilder make_builder(int levels = kFourLevels) {
    return take(FirstLevelBuilder::create(ram.tables(), levels));
  }
  uint64_t entry_at(const FirstLevelBuilder& builder, uint64_t gva, int level) {
    return take(builder.entry_gpa(gva, level));
  }

  GuestRam ram{kRamSize, kTableArea};
  HpaSpace hpa;
  Hpa base = 0;
  std::optional<SecondLevelTable> sl;
  AccessedDirty sl_accessed_dirty = AccessedDirty::kLeave;
};

TEST_F(NestedWalk, TranslatesGvaToGpaToHpa) {
  map_everything();
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x1234'5000, k4K, kUserWritable).ok());
  auto result = walk(builder.config(), kGva + 0x9a, kWrite);
  ASSERT_TRUE(result.ok());
  const Translation& t = result.translation();
  EXPECT_EQ(t.hpa, base + 0x1234'509a);
  EXPECT_EQ(t.page_size, k4K);
  EXPECT_EQ(t.level, 1);
  EXPECT_EQ(t.leaf_entry, base + entry_at(builder, kGva, 1));  // the leaf's HPA, in guest RAM
  EXPECT_EQ(t.permissions, (Permissions{.read = true, .write = true}));  // the second level has no X
  // A/D landed in guest RAM, where the guest sees them.
  for (int level = 1; level <= 4; ++level)
    EXPECT_NE(ram.load(entry_at(builder, kGva, level)) & fl::kAccessed, 0u) << level;
  EXPECT_NE(ram.load(entry_at(builder, kGva, 1)) & fl::kDirty, 0u);
}

TEST_F(NestedWalk, TranslatesEveryTableAndTheOutputThroughTheSecondLevel) {
  map_everything();
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x4000, k4K, kUserWritable).ok());
  std::vector<std::pair<uint64_t, Access>> calls;
  auto recording = [&](uint64_t gpa, Access access) {
    calls.emplace_back(gpa, access);
    return second_level(gpa, access);
  };
  const GpaTranslator to_host(recording);
  const auto entries = [&] {
    std::vector<uint64_t> gpas;
    for (int level = 4; level >= 1; --level) gpas.push_back(entry_at(builder, kGva, level));
    return gpas;
  }();

  ASSERT_TRUE(walk_first_level(hpa, builder.config(), kGva, kWrite, false, &to_host).ok());
  // Four entry reads, the output with the request's access, then each entry again for
  // writing: A is set in all of them and D in the leaf.
  ASSERT_EQ(calls.size(), 9u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(calls[i].first, entries[i]);
    EXPECT_TRUE(calls[i].second.read && !calls[i].second.write);
  }
  EXPECT_EQ(calls[4].first, 0x4000u);
  EXPECT_TRUE(calls[4].second.write && !calls[4].second.read);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(calls[5 + i].first, entries[i]);
    EXPECT_TRUE(calls[5 + i].second.read && calls[5 + i].second.write);
  }

  // With A/D already set, a walk is five translations and no writes.
  calls.clear();
  ASSERT_TRUE(walk_first_level(hpa, builder.config(), kGva, kWrite, false, &to_host).ok());
  EXPECT_EQ(calls.size(), 5u);
}

TEST_F(NestedWalk, PageSizeIsTheSmallerOfTheTwoStages) {
  struct Case {
    uint64_t first;   // first-level leaf size
    uint64_t second;  // second-level leaf size over the data
    uint64_t expected;
  };
  for (const Case& c : {Case{k4K, k1G, k4K}, Case{k2M, k4K, k4K}, Case{k2M, k1G, k2M}, Case{k1G, k2M, k2M},
                        Case{k1G, k4K, k4K}, Case{k1G, k1G, k1G}, Case{k2M, k2M, k2M}}) {
    const std::string what = fmt::format("first {:#x} second {:#x}", c.first, c.second);
    reset_second_level();
    map_guest(kTableArea, 64 * k4K, k4K);
    const uint64_t data_gpa = 0;  // aligned for every page size
    const uint64_t gva = 3 * k1G;
    const uint64_t offset = c.first - 8;  // the last word of the first-level page
    // One second-level leaf of c.second, around the GPA the walk reaches.
    map_guest(align_down(data_gpa + offset, c.second), c.second, c.second);
    auto builder = make_builder();
    ASSERT_TRUE(builder.map(gva, data_gpa, c.first, kUserWritable, c.first).ok()) << what;
    auto result = walk(builder.config(), gva + offset, kRead);
    ASSERT_TRUE(result.ok()) << what;
    EXPECT_EQ(result.translation().page_size, c.expected) << what;
    EXPECT_EQ(result.translation().hpa, base + data_gpa + offset) << what;
    EXPECT_EQ(result.translation().level, c.first == k4K ? 1 : c.first == k2M ? 2 : 3) << what;
    // The IOTLB-entry invariant: the GVA page of page_size maps to one HPA page of it.
    EXPECT_EQ((gva + offset) % c.expected, result.translation().hpa % c.expected) << what;
  }
}

TEST_F(NestedWalk, RightsIntersectAndSnoopComesFromTheSecondLevel) {
  map_guest(kTableArea, 64 * k4K, k4K);
  map_guest(0, k2M, k4K, kReadOnly, /*snoop=*/true);
  map_guest(k2M, k2M, k4K, kReadWrite);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, 0, 2 * k2M, kUserWritable).ok());
  ASSERT_TRUE(builder.map(k1G, k2M, k4K, kUserReadOnly).ok());

  auto read_only_below = walk(builder.config(), 0x10, kRead);
  ASSERT_TRUE(read_only_below.ok());
  EXPECT_EQ(read_only_below.translation().permissions, kReadOnly);  // writable above, read-only below
  EXPECT_TRUE(read_only_below.translation().snoop);
  auto read_only_above = walk(builder.config(), k1G, kRead);
  ASSERT_TRUE(read_only_above.ok());
  EXPECT_EQ(read_only_above.translation().permissions, kReadOnly);  // read-only above, writable below
  EXPECT_FALSE(read_only_above.translation().snoop);
  auto both = walk(builder.config(), k2M, kRead);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both.translation().permissions, kReadWrite);

  // A write the first level refuses is a first-stage fault; one the second refuses, a
  // second-stage fault named by the second level's leaf.
  auto first = walk(builder.config(), k1G, kWrite);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_FALSE(first.fault().second_stage);
  EXPECT_EQ(first.fault().fetch_address, entry_at(builder, k1G, 1));
  auto second = walk(builder.config(), 0x10, kWrite);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_TRUE(second.fault().second_stage);
  EXPECT_EQ(second.fault().gpa, 0x10u);  // the GPA the second level refused (gva 0 maps GPA 0)
  const WalkFault direct = second_level(0x10, kWrite).fault();
  EXPECT_EQ(second.fault().level, direct.level);
  EXPECT_EQ(second.fault().fetch_address, direct.fetch_address);  // an HPA of a second-level entry
  EXPECT_GE(*second.fault().fetch_address, HpaSpace::kTableWindowBase);
  // Nothing was set in the first level for the refused write (gva 0 is a 2M leaf).
  EXPECT_EQ(ram.load(entry_at(builder, 0, 2)) & fl::kDirty, 0u);
}

TEST_F(NestedWalk, SecondLevelFaultWhileFetchingATableNamesTheFirstLevelEntry) {
  map_everything();
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x5000, k4K, kUserWritable).ok());
  ASSERT_TRUE(walk(builder.config(), kGva, kRead).ok());

  for (int level = 1; level <= 4; ++level) {
    const uint64_t entry = entry_at(builder, kGva, level);
    const uint64_t page = align_down(entry, k4K);
    ASSERT_EQ(take(sl->unmap(page, k4K)), k4K);
    auto result = walk(builder.config(), kGva, kRead);
    ASSERT_FALSE(result.ok()) << level;
    EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_ACCESS) << level;  // the second level's
    EXPECT_TRUE(result.fault().second_stage) << level;
    EXPECT_EQ(result.fault().level, level);
    EXPECT_EQ(result.fault().fetch_address, entry) << level;  // the GPA of the first-level entry
    EXPECT_EQ(result.fault().gpa, entry) << level;            // which is the GPA refused
    map_guest(page, k4K, k4K);
  }
  EXPECT_TRUE(walk(builder.config(), kGva, kRead).ok());

  // A root GPA beyond the second level's 48 bits: its out-of-range fault.
  auto far = walk(FirstLevelConfig{.root = 1ull << 50, .levels = 4}, kGva, kRead);
  ASSERT_FALSE(far.ok());
  EXPECT_EQ(far.fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
  EXPECT_TRUE(far.fault().second_stage);
  EXPECT_EQ(far.fault().level, 4);
  EXPECT_EQ(far.fault().fetch_address, entry_address(1ull << 50, kGva, 4));
}

TEST_F(NestedWalk, SecondLevelFaultOnTheOutputGpaIsTheSecondLevels) {
  map_everything();
  auto builder = make_builder();
  const uint64_t unmapped_gpa = k1G + 16 * k4K;  // RAM, but the second level maps no data there
  ASSERT_TRUE(builder.map(kGva, unmapped_gpa, k4K, kUserWritable).ok());
  ASSERT_TRUE(builder.map(kGva + k4K, 1ull << 50, k4K, kUserWritable).ok());  // beyond 48 bits

  auto missing = walk(builder.config(), kGva + 0x30, kWrite);
  ASSERT_FALSE(missing.ok());
  const WalkFault direct = second_level(unmapped_gpa + 0x30, kWrite).fault();
  EXPECT_EQ(missing.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_TRUE(missing.fault().second_stage);
  EXPECT_EQ(missing.fault().gpa, unmapped_gpa + 0x30) << "the output GPA, byte-exact";
  EXPECT_EQ(missing.fault().level, direct.level);
  EXPECT_EQ(missing.fault().fetch_address, direct.fetch_address);
  ASSERT_TRUE(missing.fault().fetch_address.has_value());
  EXPECT_GE(*missing.fault().fetch_address, HpaSpace::kTableWindowBase);  // a second-level entry's HPA
  // A faulting output sets no A/D in the first level.
  for (int level = 1; level <= 4; ++level)
    EXPECT_EQ(ram.load(entry_at(builder, kGva, level)) & fl::kAccessedDirtyMask, 0u) << level;

  auto far = walk(builder.config(), kGva + k4K, kRead);
  ASSERT_FALSE(far.ok());
  EXPECT_EQ(far.fault().reason, IOASID_FAULT_REASON_OOR_ADDRESS);
  EXPECT_TRUE(far.fault().second_stage);
  EXPECT_EQ(far.fault().gpa, 1ull << 50);
  EXPECT_FALSE(far.fault().fetch_address.has_value());
}

TEST_F(NestedWalk, FirstLevelFaultsNameGpas) {
  map_everything();
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x5000, k4K, kUserReadOnly).ok());
  auto absent = walk(builder.config(), kGva + k2M, kRead);
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.fault().reason, IOASID_FAULT_REASON_ACCESS);
  EXPECT_FALSE(absent.fault().second_stage);
  EXPECT_EQ(absent.fault().level, 2);
  EXPECT_EQ(absent.fault().fetch_address, entry_at(builder, kGva + k2M, 2));
  EXPECT_LT(*absent.fault().fetch_address, kRamSize);  // a GPA, not the HPA base + GPA

  const uint64_t pml4e = entry_at(builder, kGva, 4);
  ram.store(pml4e, ram.load(pml4e) | fl::kLargePage);
  auto reserved = walk(builder.config(), kGva, kRead);
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_FALSE(reserved.fault().second_stage);
  EXPECT_EQ(reserved.fault().fetch_address, pml4e);
}

TEST_F(NestedWalk, TableAtAnUnbackedHpaIsAFetchFault) {
  map_guest(0, k1G, k1G);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x5000, k4K, kUserWritable).ok());
  const uint64_t pde = entry_at(builder, kGva, 2);
  // The second level maps every table page where it is, but the PD's page to an HPA
  // nothing backs (past the end of the guest's segment).
  for (uint64_t page = kTableArea; page < kTableArea + 8 * k4K; page += k4K) {
    const Hpa target = page == align_down(pde, k4K) ? base + 4 * k1G : base + page;
    ASSERT_TRUE(sl->map(page, target, k4K, kReadWrite).ok());
  }
  auto result = walk(builder.config(), kGva, kRead);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PTE_FETCH);
  EXPECT_FALSE(result.fault().second_stage);  // the second level translated it; the read failed
  EXPECT_EQ(result.fault().level, 2);
  EXPECT_EQ(result.fault().fetch_address, pde);
}

TEST_F(NestedWalk, TablesTheSecondLevelMapsReadOnlyCannotTakeAccessedDirty) {
  map_guest(0, k1G, k1G);
  map_guest(kTableArea, 64 * k4K, k4K, kReadOnly);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x5000, k4K, kUserWritable).ok());

  auto needs_accessed = walk(builder.config(), kGva, kRead);
  ASSERT_FALSE(needs_accessed.ok());
  EXPECT_EQ(needs_accessed.fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_TRUE(needs_accessed.fault().second_stage);
  EXPECT_EQ(needs_accessed.fault().level, 4);
  EXPECT_EQ(needs_accessed.fault().fetch_address, entry_at(builder, kGva, 4));
  for (int level = 1; level <= 4; ++level)
    EXPECT_EQ(ram.load(entry_at(builder, kGva, level)) & fl::kAccessedDirtyMask, 0u) << level;

  // A guest that sets A itself needs no write for a read; a write still needs D.
  for (int level = 1; level <= 4; ++level) {
    const uint64_t entry = entry_at(builder, kGva, level);
    ram.store(entry, ram.load(entry) | fl::kAccessed);
  }
  EXPECT_TRUE(walk(builder.config(), kGva, kRead).ok());
  auto needs_dirty = walk(builder.config(), kGva, kWrite);
  ASSERT_FALSE(needs_dirty.ok());
  EXPECT_EQ(needs_dirty.fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_TRUE(needs_dirty.fault().second_stage);
  EXPECT_EQ(needs_dirty.fault().level, 1);
  EXPECT_EQ(needs_dirty.fault().fetch_address, entry_at(builder, kGva, 1));
  EXPECT_EQ(ram.load(entry_at(builder, kGva, 1)) & fl::kDirty, 0u);
}

TEST_F(NestedWalk, AccessedDirtyUpdatesAreSecondLevelWrites) {
  sl_accessed_dirty = AccessedDirty::kUpdate;  // dirty tracking on the parent IOASID
  map_guest(0, 16 * k4K, k4K);
  map_guest(kTableArea, 64 * k4K, k4K);
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 3 * k4K, k4K, kUserWritable).ok());
  ASSERT_TRUE(sl->clear_all_dirty().ok());

  const auto dirty_pages = [&] {
    std::set<uint64_t> pages;
    EXPECT_TRUE(sl->read_and_clear_dirty(0, k1G + k1G, k4K, DirtyRead::kAndClear,
                                         [&](uint64_t page) { pages.insert(page); })
                    .ok());
    return pages;
  };
  std::set<uint64_t> tables;
  for (int level = 1; level <= 4; ++level) tables.insert(align_down(entry_at(builder, kGva, level), k4K));
  ASSERT_EQ(tables.size(), 4u);

  ASSERT_TRUE(walk(builder.config(), kGva, kWrite).ok());
  std::set<uint64_t> expected = tables;
  expected.insert(3 * k4K);  // the data page the DMA writes
  EXPECT_EQ(dirty_pages(), expected);

  // Bits set already: only the data page is written.
  ASSERT_TRUE(walk(builder.config(), kGva, kWrite).ok());
  EXPECT_EQ(dirty_pages(), std::set<uint64_t>{3 * k4K});
  ASSERT_TRUE(walk(builder.config(), kGva, kRead).ok());
  EXPECT_TRUE(dirty_pages().empty());
}

TEST_F(NestedWalk, ExtendedAccessedInGuestMemory) {
  map_everything();
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(kGva, 0x5000, k4K, kUserWritable).ok());
  FirstLevelConfig eafe = builder.config();
  eafe.extended_accessed = true;
  ASSERT_TRUE(walk(eafe, kGva, kRead).ok());
  for (int level = 1; level <= 4; ++level)
    EXPECT_EQ(ram.load(entry_at(builder, kGva, level)) & fl::kAccessedDirtyMask,
              fl::kAccessed | fl::kExtendedAccessed)
        << level;
}

TEST_F(NestedWalk, PrivilegedRequestsThroughAGuestTable) {
  map_everything();
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0xffff'8880'0000'0000, 0x20'0000, k2M, {.writable = false}).ok());
  FirstLevelConfig config = builder.config();
  EXPECT_EQ(walk(config, 0xffff'8880'0000'0010, kRead, true).fault().reason, IOASID_FAULT_REASON_PERMISSION);
  config.supervisor_requests = true;
  auto write = walk(config, 0xffff'8880'0000'0010, kWrite, true);  // WPE off
  ASSERT_TRUE(write.ok());
  EXPECT_EQ(write.translation().hpa, base + 0x20'0010);
  EXPECT_EQ(write.translation().page_size, k2M);
  config.write_protect = true;
  EXPECT_EQ(walk(config, 0xffff'8880'0000'0010, kWrite, true).fault().reason, IOASID_FAULT_REASON_PERMISSION);
  EXPECT_EQ(walk(config, 0xffff'8880'0000'0010, kRead, false).fault().reason, IOASID_FAULT_REASON_PERMISSION);
}

TEST_F(NestedWalk, FiveLevelGuestTableOverAFourLevelSecondLevel) {
  map_everything();
  auto builder = make_builder(kFiveLevels);
  const uint64_t gva = (0x3cull << 48) | kGva;
  ASSERT_TRUE(builder.map(gva, 0x7000, k4K, kUserWritable).ok());
  auto result = walk(builder.config(), gva + 1, kRead);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.translation().hpa, base + 0x7001);
  EXPECT_EQ(walk(builder.config(), kGva, kRead).fault().level, 5);
}

// ---------------------------------------------------------------------------
// FirstLevelBuilder

TEST_F(FirstLevelOnly, BuilderTakesTheLargestPageEachStep) {
  auto builder = make_builder();
  // From 8K below a 2M boundary that is 2M below a 1G boundary: 4K, 4K, 2M, 1G, 2M, 4K.
  const uint64_t gva = 5 * k1G - k2M - 2 * k4K;
  const uint64_t gpa = kData + 3 * k1G - k2M - 2 * k4K;
  const uint64_t length = 2 * k4K + k2M + k1G + k2M + k4K;
  ASSERT_TRUE(builder.map(gva, gpa, length, kUserWritable).ok());
  const std::pair<uint64_t, uint64_t> steps[] = {{gva, k4K},         {gva + k4K, k4K},        {5 * k1G - k2M, k2M},
                                                 {5 * k1G, k1G},     {6 * k1G, k2M},          {6 * k1G + k2M, k4K}};
  for (const auto& [step, size] : steps) {
    auto result = walk(builder.config(), step + size - 1, kRead);
    ASSERT_TRUE(result.ok()) << fmt::format("{:#x}", step);
    EXPECT_EQ(result.translation().page_size, size) << fmt::format("{:#x}", step);
    EXPECT_EQ(result.translation().hpa, gpa + (step - gva) + size - 1);
  }
  EXPECT_FALSE(walk(builder.config(), gva - 1, kRead).ok());
  EXPECT_FALSE(walk(builder.config(), gva + length, kRead).ok());
}

TEST_F(FirstLevelOnly, BuilderHonoursAnExplicitPageSizeAndFlags) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, kData, k1G, {.writable = true, .user = false, .execute_disable = true}, k4K).ok());
  auto result = walk(builder.config(), k1G - 1, kRead, false);
  EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PERMISSION);  // supervisor page
  const FirstLevelConfig sre{.root = builder.root(), .levels = 4, .supervisor_requests = true, .write_protect = true};
  auto privileged = walk(sre, k1G - 1, kWrite, true);
  ASSERT_TRUE(privileged.ok());
  EXPECT_EQ(privileged.translation().page_size, k4K);
  EXPECT_EQ(privileged.translation().permissions, kReadWrite);  // XD: no exec
  const uint64_t leaf = load(entry_at(builder, 0, 1));
  EXPECT_EQ(leaf & ~fl::kAccessedDirtyMask, kData | fl::kPresent | fl::kWritable | fl::kExecuteDisable);
  // Table pointers grant everything.
  EXPECT_EQ(load(entry_at(builder, 0, 2)) & ~fl::kAddressMask & ~fl::kAccessed,
            fl::kPresent | fl::kWritable | fl::kUser);
}

TEST_F(FirstLevelOnly, BuilderRejectsBadArguments) {
  auto builder = make_builder();
  EXPECT_EQ(builder.map(0x800, kData, k4K, kUserWritable).code(), EINVAL);
  EXPECT_EQ(builder.map(0, kData + 0x800, k4K, kUserWritable).code(), EINVAL);
  EXPECT_EQ(builder.map(0, kData, 0, kUserWritable).code(), EINVAL);
  EXPECT_EQ(builder.map(0, kData, 0x1800, kUserWritable).code(), EINVAL);
  EXPECT_EQ(builder.map(0, kData, k4K, kUserWritable, 3 * k4K).code(), EINVAL);
  EXPECT_EQ(builder.map(k4K, kData, k2M, kUserWritable, k2M).code(), EINVAL);
  EXPECT_EQ(builder.map(0, kData + k4K, k2M, kUserWritable, k2M).code(), EINVAL);
  EXPECT_EQ(builder.map(1ull << 47, kData, k4K, kUserWritable).code(), EINVAL);           // non-canonical
  EXPECT_EQ(builder.map((1ull << 47) - k4K, kData, 2 * k4K, kUserWritable).code(), EINVAL);  // runs into the hole
  EXPECT_EQ(builder.map(0, (1ull << 52) - k4K, 2 * k4K, kUserWritable).code(), EINVAL);     // GPA beyond 52 bits
  EXPECT_EQ(builder.map(~0ull - k4K + 1, kData, 2 * k4K, kUserWritable).code(), EINVAL);   // wraps
  EXPECT_EQ(builder.unmap(0x800, k4K).code(), EINVAL);
  EXPECT_EQ(builder.entry_gpa(0, 5).code(), EINVAL);
  EXPECT_EQ(builder.entry_gpa(1ull << 47, 1).code(), EINVAL);
  EXPECT_EQ(FirstLevelBuilder::create(over_physical_memory(memory), 3).code(), EINVAL);
  EXPECT_EQ(FirstLevelBuilder::create(GuestTableMemory{}, 4).code(), EINVAL);
  EXPECT_EQ(walk(builder.config(), 0, kRead).fault().level, 4);  // nothing was mapped
}

TEST_F(FirstLevelOnly, BuilderOverlapIsEexistAndUndoesThePartialMap) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(k1G + 10 * k4K, kData, k4K, kUserWritable).ok());
  ASSERT_TRUE(builder.map(2 * k1G, kData, k2M, kUserWritable).ok());
  EXPECT_EQ(builder.map(k1G, kData, 16 * k4K, kUserWritable).code(), EEXIST);  // ends on the 4K page
  EXPECT_EQ(builder.map(k1G, kData, k2M, kUserWritable, k2M).code(), EEXIST);  // a 2M leaf over 4K leaves
  EXPECT_EQ(builder.map(2 * k1G + k4K, kData, k4K, kUserWritable).code(), EEXIST);  // inside the 2M leaf
  EXPECT_EQ(builder.map(2 * k1G - k2M, kData, 2 * k2M, kUserWritable).code(), EEXIST);
  for (uint64_t gva : {k1G, k1G + 9 * k4K, k1G + 11 * k4K, 2 * k1G - k2M})
    EXPECT_EQ(walk(builder.config(), gva, kRead).fault().reason, IOASID_FAULT_REASON_ACCESS) << gva;
  EXPECT_TRUE(walk(builder.config(), k1G + 10 * k4K, kRead).ok());
  EXPECT_TRUE(walk(builder.config(), 2 * k1G + k4K, kRead).ok());
}

TEST_F(FirstLevelOnly, BuilderUnmapsWholeLeavesOnly) {
  auto builder = make_builder();
  ASSERT_TRUE(builder.map(0, kData, k2M + 3 * k4K, kUserWritable).ok());  // one 2M leaf, three 4K
  EXPECT_EQ(builder.unmap(k4K, k2M).code(), EINVAL);  // half of the 2M leaf
  EXPECT_TRUE(walk(builder.config(), k4K, kRead).ok());  // nothing changed
  EXPECT_TRUE(walk(builder.config(), k2M, kRead).ok());
  EXPECT_EQ(take(builder.unmap(k2M + k4K, k1G)), k4K * 2);
  EXPECT_TRUE(walk(builder.config(), k2M, kRead).ok());
  EXPECT_FALSE(walk(builder.config(), k2M + k4K, kRead).ok());
  EXPECT_EQ(take(builder.unmap(0, 1ull << 47)), k2M + k4K);  // the whole user half
  EXPECT_FALSE(walk(builder.config(), 0, kRead).ok());
  EXPECT_EQ(take(builder.unmap(0, k2M)), 0u);
  // The kernel half, up to the last page.
  ASSERT_TRUE(builder.map(~0ull - k2M + 1, kData, k2M, kUserWritable, k4K).ok());
  EXPECT_EQ(take(builder.unmap(0xffff'8000'0000'0000, 1ull << 47)), k2M);
}

TEST(FirstLevelBuilder, LargePageReplacesAnEmptyTableAndFreesIt) {
  GuestRam ram(64 * k1M, 0);
  ASSERT_TRUE(ram.ok());
  auto builder = take(FirstLevelBuilder::create(ram.tables(), kFourLevels));
  ASSERT_TRUE(builder.map(k1G + k4K, 0x10'0000, k4K, kUserWritable).ok());
  const uint64_t page_table = align_down(take(builder.entry_gpa(k1G, 1)), k4K);
  ASSERT_EQ(take(builder.unmap(k1G, k2M)), k4K);
  ASSERT_TRUE(builder.map(k1G, 0x20'0000, k2M, kUserWritable).ok());  // a 2M leaf where the PT was
  EXPECT_EQ(ram.freed, std::vector<uint64_t>{page_table});
  EXPECT_EQ(ram.load(take(builder.entry_gpa(k1G, 2))) & ~fl::kAddressMask, fl::kPresent | fl::kWritable | fl::kUser | fl::kLargePage);
  EXPECT_EQ(builder.entry_gpa(k1G, 1).code(), ENOENT);  // a leaf above level 1 now
  // The same for a 1G leaf over a PD with an empty PT under it.
  ASSERT_TRUE(builder.map(4 * k1G + k2M + k4K, 0x10'0000, k4K, kUserWritable).ok());
  ASSERT_EQ(take(builder.unmap(4 * k1G, k1G)), k4K);
  ram.freed.clear();
  ASSERT_TRUE(builder.map(4 * k1G, 0, k1G, kUserWritable, k1G).ok());
  EXPECT_EQ(ram.freed.size(), 2u);  // the PT, then the PD
}

TEST(FirstLevelBuilder, AllocationFailureIsPassedOnAndUndone) {
  GuestRam ram(64 * k1M, 0);
  ASSERT_TRUE(ram.ok());
  auto builder = take(FirstLevelBuilder::create(ram.tables(/*page_limit=*/4), kFourLevels));  // root + 3
  ASSERT_TRUE(builder.map(0, 0, k4K, kUserWritable).ok());  // PDPT, PD, PT
  // A 2M run that crosses into a second page table runs out of pages half way.
  EXPECT_EQ(builder.map(k2M - 4 * k4K, 0, 8 * k4K, kUserWritable).code(), ENOMEM);
  for (uint64_t gva = k2M - 4 * k4K; gva < k2M; gva += k4K) {
    auto entry = take(builder.entry_gpa(gva, 1));
    EXPECT_EQ(ram.load(entry), 0u) << gva;  // the leaves written before the failure are gone
  }
  EXPECT_NE(ram.load(take(builder.entry_gpa(0, 1))), 0u);  // the earlier map stays
}

TEST(FirstLevelBuilder, EntryGpaFollowsTheTables) {
  GuestRam ram(64 * k1M, 0);
  ASSERT_TRUE(ram.ok());
  auto builder = take(FirstLevelBuilder::create(ram.tables(), kFiveLevels));
  EXPECT_EQ(builder.levels(), kFiveLevels);
  EXPECT_EQ(take(builder.entry_gpa(kGva, 5)), entry_address(builder.root(), kGva, 5));
  EXPECT_EQ(builder.entry_gpa(kGva, 4).code(), ENOENT);
  ASSERT_TRUE(builder.map(kGva, 0x3000, k4K, kUserWritable).ok());
  uint64_t table = builder.root();
  for (int level = 5; level >= 1; --level) {
    const uint64_t entry = take(builder.entry_gpa(kGva, level));
    EXPECT_EQ(entry, entry_address(table, kGva, level)) << level;
    table = fl::table_address(ram.load(entry));
  }
  EXPECT_EQ(table, 0x3000u);  // the leaf's frame
  const FirstLevelConfig config = builder.config();
  EXPECT_EQ(config.root, builder.root());
  EXPECT_EQ(config.levels, kFiveLevels);
  EXPECT_FALSE(config.supervisor_requests || config.write_protect || config.extended_accessed);
}

// A random sequence of maps and unmaps, checked page by page against a plain map.
TEST_F(FirstLevelOnly, BuilderAndWalkerAgreeWithAModel) {
  auto builder = make_builder();
  std::mt19937_64 random(7);
  std::map<uint64_t, std::pair<uint64_t, bool>> model;  // 4K GVA page -> GPA page, writable
  constexpr uint64_t kWindow = 4 * k1G;                  // GVAs in [k1G, k1G + kWindow)
  for (int op = 0; op < 300; ++op) {
    const uint64_t size = random() % 4 == 0 ? k2M : k4K;
    const uint64_t gva = k1G + align_down(random() % kWindow, size) % kWindow;
    const uint64_t gpa = kData + align_down(random() % (64 * k1G), size);
    const bool writable = random() % 2 == 0;
    if (random() % 3 != 0) {
      bool overlaps = false;
      for (uint64_t page = gva; page < gva + size; page += k4K) overlaps = overlaps || model.count(page) != 0;
      // A 2M map over a 4K page is EEXIST, and so is a 4K map inside a 2M leaf (whose
      // pages are all in the model).
      const auto mapped = builder.map(gva, gpa, size, {.writable = writable, .user = true}, size);
      if (overlaps) {
        EXPECT_EQ(mapped.code(), EEXIST);
        continue;
      }
      ASSERT_TRUE(mapped.ok()) << mapped.error().why;
      for (uint64_t page = 0; page < size; page += k4K) model[gva + page] = {gpa + page, writable};
    } else {
      auto unmapped = builder.unmap(align_down(gva, k2M), k2M);
      ASSERT_TRUE(unmapped.ok());
      uint64_t removed = 0;
      for (uint64_t page = align_down(gva, k2M); page < align_down(gva, k2M) + k2M; page += k4K)
        removed += model.erase(page) * k4K;
      EXPECT_EQ(*unmapped, removed);
    }
  }
  size_t checked = 0;
  for (uint64_t page = k1G; page < k1G + kWindow + k2M; page += k4K) {
    if (const auto next = model.lower_bound(page); page % k2M == 0 && (next == model.end() || next->first >= page + k2M)) {
      EXPECT_FALSE(walk(builder.config(), page + k2M / 2, kRead).ok());  // an empty 2M range: one probe
      page += k2M - k4K;
      continue;
    }
    auto result = walk(builder.config(), page + 0x10, kWrite);
    auto expected = model.find(page);
    if (expected == model.end()) {
      ASSERT_FALSE(result.ok()) << fmt::format("{:#x}", page);
      EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_ACCESS);
      continue;
    }
    ++checked;
    if (expected->second.second) {
      ASSERT_TRUE(result.ok()) << fmt::format("{:#x}", page);
      EXPECT_EQ(result.translation().hpa, expected->second.first + 0x10);
    } else {
      ASSERT_FALSE(result.ok());
      EXPECT_EQ(result.fault().reason, IOASID_FAULT_REASON_PERMISSION);
      EXPECT_EQ(walk(builder.config(), page + 0x10, kRead).translation().hpa, expected->second.first + 0x10);
    }
  }
  EXPECT_EQ(checked, model.size());
}

}  // namespace
}  // namespace ioasid::pgtable
