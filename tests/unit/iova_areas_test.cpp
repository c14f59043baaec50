// SPDX-License-Identifier: MIT
// IovaAreas, the IOVA side of one /dev/iommu IOAS (iommufd's io_pagetable), without a
// daemon or a client: the areas are this process's memory (Pages::record of
// getpid()), the domains engine tables of an Iommu of the test's own. The rules are
// iommufd's (docs/research/iommufd-selftest-6.12.md, "IOAS semantics used"): where
// automatic IOVAs go, what a fixed IOVA may overlap, UNMAP's whole-areas rule, COPY's
// byte-granular pieces, reserved and allowed ranges, the IOVA alignment, and domains
// (their aperture, and the pins they need). Without a domain nothing is pinned, so
// most tests record addresses nothing maps, as iommufd's area_auto_iova does.
#include "dev_iommu/iova_areas.h"
#include "iommu/iommu.h"
#include "memory/locate_pages.h"
#include "memory/pinned_pages.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <vector>

namespace ioasid::dev_iommu {
namespace {

constexpr uint64_t k2K = 2048, k4K = 4096, k64K = 64 << 10, k1M = 1ull << 20, k2M = 2ull << 20;
// The selftest's mock domain: 2 KiB IO pages in [1 << 24, (1 << 31) - 1].
constexpr uint64_t kApertureStart = 1ull << 24, kApertureLast = (1ull << 31) - 1;
// User addresses nothing maps in this process (recorded only: no domain pins them).
constexpr uint64_t kFarVa = 0x4000'0000'0000;  // 64 TiB: aligned to every size used here

std::vector<IovaRange> ranges(std::initializer_list<IovaRange> list) { return list; }

std::string describe(const std::vector<AreaView>& areas) {
  std::string out;
  for (const AreaView& area : areas) out += fmt::format("[{:#x}, +{:#x}) from {:#x}; ", area.iova, area.length, area.user_va);
  return out;
}

class IovaAreasTest : public ::testing::Test {
 protected:
  void TearDown() override {
    areas_.remove_domain(&domain_owner_);
    areas_.remove_domain(&second_owner_);
    for (void* memory : memory_) ::munmap(memory, kMemorySize);
  }

  std::unique_ptr<IovaAreas> fresh() { return std::make_unique<IovaAreas>(maps_, ::getuid()); }

  std::shared_ptr<Pages> record(uint64_t uptr, uint64_t length, bool writable = true) {
    auto pages = Pages::record(::getpid(), {&iommu_.pins(), ::getuid()}, uptr, length, writable);
    EXPECT_TRUE(pages.ok()) << pages.error().why;
    return pages.ok() ? std::move(*pages) : nullptr;
  }

  // IOAS_MAP of [uptr, uptr + length) at `iova` (nullopt: an automatic IOVA).
  Result<uint64_t> map(IovaAreas& areas, uint64_t uptr, uint64_t length, std::optional<uint64_t> iova = std::nullopt) {
    auto pages = Pages::record(::getpid(), {&iommu_.pins(), ::getuid()}, uptr, length, true);
    IOASID_TRY(pages);
    const PagesPiece piece{std::move(*pages), 0, length};
    return areas.map(std::span(&piece, 1), iova, true, true);
  }
  Result<uint64_t> map(uint64_t uptr, uint64_t length, std::optional<uint64_t> iova = std::nullopt) {
    return map(areas_, uptr, length, iova);
  }

  // Real memory of this process, populated: what a domain pins.
  static constexpr uint64_t kMemorySize = 16 * k4K;
  uint64_t memory() {
    void* memory = ::mmap(nullptr, kMemorySize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    EXPECT_NE(memory, MAP_FAILED) << std::strerror(errno);
    if (memory == MAP_FAILED) return 0;
    memory_.push_back(memory);
    return reinterpret_cast<uint64_t>(memory);
  }

  // The pins of each page of [va, va + length), as the mock driver's MD_CHECK_REFS
  // counts them.
  std::vector<uint32_t> pins(uint64_t va, uint64_t length) {
    auto pages = locate_pages(::getpid(), va, length);
    EXPECT_TRUE(pages.ok()) << pages.error().why;
    std::vector<uint32_t> out;
    if (pages.ok())
      for (const LocatedPage& page : *pages) out.push_back(PinnedPages::global().pins_at(page.location));
    return out;
  }
  static std::vector<uint32_t> all(uint32_t count, uint64_t length) { return std::vector<uint32_t>(length / k4K, count); }

  // A mock-like paging domain: an engine table with 2 KiB IO pages in the mock aperture.
  iommu::IoPageTable& table(std::unique_ptr<iommu::IoPageTable>& slot) {
    if (!slot) {
      auto made = iommu::IoPageTable::create(iommu_);
      EXPECT_TRUE(made.ok()) << made.error().why;
      if (made.ok()) slot = std::move(*made);
    }
    return *slot;
  }
  DomainSlot mock_domain(std::unique_ptr<iommu::IoPageTable>& slot) {
    return {.table = &table(slot), .page_size = k2K, .aperture = {kApertureStart, kApertureLast}};
  }
  DomainSlot mock_domain() { return mock_domain(table_); }

  iommu::Iommu iommu_;
  UserQuota maps_{"mappings", "--max-maps-per-user", ENOSPC, 0, /*root_exempt=*/true};
  std::unique_ptr<iommu::IoPageTable> table_, second_table_;  // outlive the areas that map into them
  const char domain_owner_ = 0, second_owner_ = 0;
  IovaAreas areas_{maps_, ::getuid()};
  std::vector<void*> memory_;
};

// ---------------------------------------------------------------- automatic IOVAs

// Never IOVA 0, even where it is allowed: the window for automatic IOVAs starts at
// PAGE_SIZE and ends a page before ~0.
TEST_F(IovaAreasTest, AutomaticIovaIsNeverZero) {
  auto first = map(kFarVa, k4K);
  ASSERT_TRUE(first.ok()) << first.error().why;
  EXPECT_EQ(*first, k4K);

  auto allowed = fresh();
  ASSERT_TRUE(allowed->allow(ranges({{0, k4K - 1}})).ok());
  EXPECT_EQ(map(*allowed, kFarVa, k4K).code(), ENOSPC) << "page 0 is the only one allowed";
  EXPECT_EQ(map(*allowed, kFarVa, 1).code(), ENOSPC) << "not even one byte at IOVA 0";
  ASSERT_TRUE(allowed->allow(ranges({{0, 0xffff}})).ok());
  auto next = map(*allowed, kFarVa, k4K);
  ASSERT_TRUE(next.ok()) << next.error().why;
  EXPECT_EQ(*next, k4K);

  auto top = fresh();
  ASSERT_TRUE(top->allow(ranges({{~0ull - k4K + 1, ~0ull}})).ok());
  EXPECT_EQ(map(*top, kFarVa, 1).code(), ENOSPC) << "nor the last page";
}

// The alignment is roundup_pow_of_two(length), lowered to the user address's own
// alignment, capped at 2 MiB; the user address's offset in its page is OR'd in.
TEST_F(IovaAreasTest, AutomaticIovaAlignment) {
  struct Case {
    const char* what;
    uint64_t uptr, length, expected;
  } cases[] = {
      {"the length's power of two", kFarVa, 0x3000, 0x4000},
      {"capped at 2 MiB (4 MiB uncapped)", kFarVa, 3 * k1M, k2M},
      {"capped at 2 MiB for a huge length", kFarVa, 64 * k1M, k2M},
      {"lowered to the user address's", kFarVa + k64K, k1M, k64K},
      {"the page offset OR'd in", kFarVa + 0x800, 0x800, 0x1800},
      {"any byte offset", kFarVa + 0x123, 0x100, 0x1123},
      {"a 1-byte area", kFarVa, 1, k4K},
  };
  for (const Case& c : cases) {
    auto areas = fresh();
    auto iova = map(*areas, c.uptr, c.length);
    ASSERT_TRUE(iova.ok()) << c.what << ": " << iova.error().why;
    EXPECT_EQ(*iova, c.expected) << c.what;
    EXPECT_EQ(*iova % k4K, c.uptr % k4K) << c.what;
  }

  // The search goes on past what is taken, keeping the alignment.
  auto areas = fresh();
  ASSERT_TRUE(map(*areas, kFarVa, k4K).ok());                    // [0x1000, 0x2000)
  auto aligned = map(*areas, kFarVa + 0x10000, 0x10000);         // 64 KiB aligned
  ASSERT_TRUE(aligned.ok()) << aligned.error().why;
  EXPECT_EQ(*aligned, 0x10000u);
  auto offset = map(*areas, kFarVa + 0x123, 0x100);               // byte aligned
  ASSERT_TRUE(offset.ok()) << offset.error().why;
  EXPECT_EQ(*offset, 0x2123u) << "the first hole, with the page offset";
  EXPECT_EQ(areas->areas().size(), 3u) << describe(areas->areas());
}

// An alignment below the IOAS's (large pages disabled: PAGE_SIZE) is EINVAL, automatic
// or fixed; so is a length or page offset below it.
TEST_F(IovaAreasTest, AutomaticIovaBelowTheIoasAlignmentIsEinval) {
  ASSERT_TRUE(areas_.disable_large_pages().ok());
  EXPECT_EQ(areas_.alignment(), k4K);
  EXPECT_EQ(map(kFarVa + 0x800, 0x800).code(), EINVAL) << "a 2 KiB-aligned user address";
  EXPECT_EQ(map(kFarVa, 0x800).code(), EINVAL) << "a 2 KiB length";
  EXPECT_EQ(map(kFarVa, k4K, 0x10800).code(), EINVAL) << "a fixed IOVA off the alignment";
  EXPECT_EQ(map(kFarVa, 0x1800, 0x10000).code(), EINVAL) << "a fixed IOVA with a length off the alignment";
  EXPECT_FALSE(areas_.has_areas());
  auto fine = map(kFarVa, 0x2000);
  ASSERT_TRUE(fine.ok()) << fine.error().why;
  EXPECT_EQ(*fine % k4K, 0u);
}

// ENOSPC when no hole of the allowed ranges fits; nothing changes.
TEST_F(IovaAreasTest, NoRoomIsEnospc) {
  ASSERT_TRUE(areas_.allow(ranges({{k1M, k2M - 1}})).ok());
  auto whole = map(kFarVa, k1M);
  ASSERT_TRUE(whole.ok()) << whole.error().why;
  EXPECT_EQ(*whole, k1M);
  EXPECT_EQ(map(kFarVa, k4K).code(), ENOSPC);
  EXPECT_EQ(map(kFarVa, 1).code(), ENOSPC);
  EXPECT_EQ(areas_.areas().size(), 1u);

  // Two allowed ranges: the second is searched when the first is full.
  ASSERT_TRUE(areas_.allow(ranges({{k1M, k2M - 1}, {0x10000000, 0x10000fff}})).ok());
  auto second = map(kFarVa, k4K);
  ASSERT_TRUE(second.ok()) << second.error().why;
  EXPECT_EQ(*second, 0x10000000u);
  EXPECT_EQ(map(kFarVa, 0x2000, std::nullopt).code(), ENOSPC) << "8 KiB fits no allowed hole";

  // Reserved ranges are holes too.
  auto reserved = fresh();
  ASSERT_TRUE(reserved->reserve(0, 0xffffffff, nullptr).ok());
  ASSERT_TRUE(reserved->reserve(0x100000000, ~0ull, nullptr).ok());
  EXPECT_EQ(map(*reserved, kFarVa, 1).code(), ENOSPC);
  EXPECT_FALSE(reserved->has_areas());
}

// ---------------------------------------------------------------- fixed IOVAs

TEST_F(IovaAreasTest, FixedIovaOverAnAreaIsEexistOverReservedEinval) {
  ASSERT_TRUE(map(kFarVa, k4K, 0x100000).ok());
  EXPECT_EQ(map(kFarVa, k4K, 0x100000).code(), EEXIST);
  EXPECT_EQ(map(kFarVa, k4K, 0xff001).code(), EEXIST) << "ending inside it";
  EXPECT_EQ(map(kFarVa, 1, 0x100fff).code(), EEXIST) << "its last byte";
  ASSERT_TRUE(map(kFarVa, 1, 0x101000).ok()) << "right after it";
  ASSERT_TRUE(map(kFarVa, 1, 0xfffff).ok()) << "right before it";

  ASSERT_TRUE(areas_.reserve(0x200000, 0x2fffff, nullptr).ok());
  EXPECT_EQ(map(kFarVa, k4K, 0x2ff000).code(), EINVAL);
  EXPECT_EQ(map(kFarVa, 0x2000, 0x1ff000).code(), EINVAL) << "ending inside it";
  EXPECT_EQ(map(kFarVa, 0x200000, 0x100000).code(), EINVAL) << "over an area and a reserved range: reserved first";
  ASSERT_TRUE(map(kFarVa, k4K, 0x300000).ok()) << "right after it";
  EXPECT_EQ(map(kFarVa, 0x2000, ~0ull - 0xfff).code(), EOVERFLOW);
  EXPECT_EQ(areas_.areas().size(), 4u) << describe(areas_.areas());
}

// A fixed IOVA needs no allowed range (allowed ranges steer automatic IOVAs only).
TEST_F(IovaAreasTest, FixedIovaOutsideTheAllowedRangesIsMapped) {
  ASSERT_TRUE(areas_.allow(ranges({{k1M, k2M - 1}})).ok());
  auto fixed = map(kFarVa, k4K, 0x40000000);
  ASSERT_TRUE(fixed.ok()) << fixed.error().why;
  EXPECT_EQ(*fixed, 0x40000000u);
}

// ---------------------------------------------------------------- UNMAP

// Every area meeting the range must lie inside it (no splitting): ENOENT for one only
// partly inside, and those met before it stay unmapped. Nothing there is 0 bytes.
TEST_F(IovaAreasTest, CoversNeedsAreasWithoutAGap) {
  ASSERT_TRUE(map(kFarVa, k4K, 0x100000).ok());
  ASSERT_TRUE(map(kFarVa + k4K, k4K, 0x101000).ok());
  ASSERT_TRUE(map(kFarVa + 3 * k4K, k4K, 0x103000).ok());
  EXPECT_TRUE(areas_.covers(0x100000, 0x2000)) << "two adjacent areas";
  EXPECT_TRUE(areas_.covers(0x100800, 0x1000)) << "any byte range inside";
  EXPECT_TRUE(areas_.covers(0x103fff, 1));
  EXPECT_FALSE(areas_.covers(0x100000, 0x3000)) << "a gap at 0x102000";
  EXPECT_FALSE(areas_.covers(0xfffff, 2)) << "starts before the first area";
  EXPECT_FALSE(areas_.covers(0x104000, 1));
  EXPECT_FALSE(areas_.covers(0x100000, 0)) << "empty";
  EXPECT_FALSE(areas_.covers(0x100000, ~0ull)) << "wraps";
}

TEST_F(IovaAreasTest, UnmapTakesWholeAreasOnly) {
  ASSERT_TRUE(map(kFarVa, k4K, 0x100000).ok());            // A
  ASSERT_TRUE(map(kFarVa + k4K, k4K, 0x101000).ok());      // B
  ASSERT_TRUE(map(kFarVa + 2 * k4K, 0x2000, 0x102000).ok());  // C

  EXPECT_EQ(areas_.unmap(0x100800, 0x800).code(), ENOENT) << "the second half of A";
  EXPECT_EQ(areas_.unmap(0xff000, 0x1800).code(), ENOENT) << "the first half of A";
  EXPECT_EQ(areas_.areas().size(), 3u) << "a first area partly inside unmaps nothing";

  EXPECT_EQ(areas_.unmap(0x100000, 0x3000).code(), ENOENT) << "A and B whole, half of C";
  const auto left = areas_.areas();
  ASSERT_EQ(left.size(), 1u) << describe(left);
  EXPECT_EQ(left[0].iova, 0x102000u) << "A and B, met before C, stay unmapped";

  auto none = areas_.unmap(0x100000, 0x2000);
  ASSERT_TRUE(none.ok()) << none.error().why;
  EXPECT_EQ(*none, 0u) << "nothing there: 0 bytes (IOAS_UNMAP turns that into ENOENT)";
  auto whole = areas_.unmap(0, 0x200000);
  ASSERT_TRUE(whole.ok()) << whole.error().why;
  EXPECT_EQ(*whole, 0x2000u);
  EXPECT_FALSE(areas_.has_areas());

  auto empty = areas_.unmap(0, ~0ull);
  ASSERT_TRUE(empty.ok()) << empty.error().why;
  EXPECT_EQ(*empty, 0u);
  EXPECT_EQ(areas_.unmap(0x1000, 0).code(), EINVAL);
  EXPECT_EQ(areas_.unmap(~0ull - 0xfff, 0x2000).code(), EOVERFLOW);
}

TEST_F(IovaAreasTest, UnmapAllReturnsTheBytes) {
  EXPECT_EQ(areas_.unmap_all(), 0u);
  ASSERT_TRUE(map(kFarVa, k4K).ok());
  ASSERT_TRUE(map(kFarVa, 0x123).ok());
  EXPECT_EQ(areas_.unmap_all(), k4K + 0x123);
  EXPECT_FALSE(areas_.has_areas());
}

// ---------------------------------------------------------------- COPY

// Any byte range of contiguous areas, in pieces of the Pages behind each; a gap is
// ENOENT. The pieces map elsewhere as areas of the same memory.
TEST_F(IovaAreasTest, CopyPiecesAreByteRangesOfContiguousAreas) {
  const uint64_t a = kFarVa, b = kFarVa + 0x100000;
  ASSERT_TRUE(map(a, k4K, 0x200000).ok());
  ASSERT_TRUE(map(b, k4K, 0x201000).ok());
  ASSERT_TRUE(map(kFarVa, k4K, 0x203000).ok());  // after a gap

  auto pieces = areas_.pieces(0x2001ff, k4K);
  ASSERT_TRUE(pieces.ok()) << pieces.error().why;
  ASSERT_EQ(pieces->size(), 2u);
  EXPECT_EQ((*pieces)[0].pages->uptr(), a);
  EXPECT_EQ((*pieces)[0].start_byte, 0x1ffu);
  EXPECT_EQ((*pieces)[0].length, k4K - 0x1ff);
  EXPECT_EQ((*pieces)[1].pages->uptr(), b);
  EXPECT_EQ((*pieces)[1].start_byte, 0u);
  EXPECT_EQ((*pieces)[1].length, 0x1ffu);

  // The selftest's copy_sweep: 511-byte steps over the two areas.
  for (uint64_t start = 0x200000; start < 0x202000; start += 511) {
    const uint64_t length = std::min<uint64_t>(0x202000 - start, 0x1000);
    auto some = areas_.pieces(start, length);
    ASSERT_TRUE(some.ok()) << std::hex << start << ": " << some.error().why;
    uint64_t total = 0;
    for (const PagesPiece& piece : *some) total += piece.length;
    EXPECT_EQ(total, length) << std::hex << start;
  }

  EXPECT_EQ(areas_.pieces(0x201800, k4K).code(), ENOENT) << "across the gap";
  EXPECT_EQ(areas_.pieces(0x202000, 1).code(), ENOENT) << "in the gap";
  EXPECT_EQ(areas_.pieces(0x1fffff, 2).code(), ENOENT) << "starting before the areas";
  EXPECT_EQ(areas_.pieces(0x203fff, 2).code(), ENOENT) << "ending after the last";
  EXPECT_EQ(areas_.pieces(0x200000, 0).code(), EINVAL);

  auto destination = fresh();
  auto copied = destination->map(*pieces, 0x5000, true, false);
  ASSERT_TRUE(copied.ok()) << copied.error().why;
  const auto views = destination->areas();
  ASSERT_EQ(views.size(), 2u) << describe(views);
  EXPECT_EQ(views[0].iova, 0x5000u);
  EXPECT_EQ(views[0].user_va, a + 0x1ff);
  EXPECT_EQ(views[1].iova, 0x5000 + k4K - 0x1ff);
  EXPECT_EQ(views[1].user_va, b);
  EXPECT_FALSE(views[0].writeable);
}

// ---------------------------------------------------------------- reserved and allowed ranges

TEST_F(IovaAreasTest, ReserveOverAnAreaOrAnAllowedRangeIsEaddrinuse) {
  ASSERT_TRUE(map(kFarVa, k4K, 0x100000).ok());
  EXPECT_EQ(areas_.reserve(0x100800, 0x100fff, nullptr).code(), EADDRINUSE);
  EXPECT_EQ(areas_.reserve(0, 0x100000, nullptr).code(), EADDRINUSE) << "its first byte";
  ASSERT_TRUE(areas_.reserve(0, 0xfffff, nullptr).ok()) << "right below it";

  ASSERT_TRUE(areas_.allow(ranges({{0x400000, 0x4fffff}})).ok());
  EXPECT_EQ(areas_.reserve(0x4ff000, 0x500fff, nullptr).code(), EADDRINUSE);
  ASSERT_TRUE(areas_.reserve(0x500000, 0x500fff, nullptr).ok());
  EXPECT_EQ(areas_.usable(), ranges({{0x100000, 0x4fffff}, {0x501000, ~0ull}}));
}

TEST_F(IovaAreasTest, AllowRulesAndTheListIsReplacedWhole) {
  ASSERT_TRUE(areas_.reserve(0, 0xfffff, nullptr).ok());
  ASSERT_TRUE(areas_.allow(ranges({{0x400000, 0x4fffff}})).ok());

  EXPECT_EQ(areas_.allow(ranges({{0x1000000, 0x1ffffff}, {0x1800000, 0x2ffffff}})).code(), EINVAL) << "overlap";
  EXPECT_EQ(areas_.allow(ranges({{0x2000000, 0x2ffffff}, {0x1000000, 0x2000000}})).code(), EINVAL)
      << "overlap, given in the other order";
  EXPECT_EQ(areas_.allow(ranges({{0x5000, 0x4fff}})).code(), EINVAL) << "last before start";
  EXPECT_EQ(areas_.allow(ranges({{0x1000000, 0x1ffffff}, {0x80000, 0x80fff}})).code(), EADDRINUSE)
      << "over the reserved range";

  // Every failure kept the list: [0x400000, 0x4fffff] is still allowed.
  EXPECT_EQ(areas_.reserve(0x480000, 0x480fff, nullptr).code(), EADDRINUSE);
  ASSERT_TRUE(areas_.reserve(0x1800000, 0x1800fff, nullptr).ok());
  auto iova = map(kFarVa, k4K);
  ASSERT_TRUE(iova.ok()) << iova.error().why;
  EXPECT_EQ(*iova, 0x400000u);

  ASSERT_TRUE(areas_.allow({}).ok()) << "no ranges: everything is allowed again";
  ASSERT_TRUE(areas_.reserve(0x480000, 0x480fff, nullptr).ok());
}

// iommufd's ALLOW_IOVAS takes only ranges with start < last (iommufd_ioas_load_iovas:
// "if (range.start >= range.last) return -EINVAL"): a range of one IOVA is EINVAL.
TEST_F(IovaAreasTest, AllowedRangeOfOneIovaIsEinval) {
  EXPECT_EQ(areas_.allow(ranges({{0x5000, 0x5000}})).code(), EINVAL);
}

// IOVA_RANGES: [0, ~0] less the reserved ranges, overlapping or nested ones merged;
// allowed ranges do not narrow it.
TEST_F(IovaAreasTest, UsableRangesAreTheHolesOfTheReserved) {
  EXPECT_EQ(areas_.usable(), ranges({{0, ~0ull}}));
  ASSERT_TRUE(areas_.allow(ranges({{0x400000, 0x4fffff}})).ok());
  EXPECT_EQ(areas_.usable(), ranges({{0, ~0ull}}));

  ASSERT_TRUE(areas_.reserve(0x1000, 0x1fff, nullptr).ok());
  ASSERT_TRUE(areas_.reserve(0x5000, 0x5fff, nullptr).ok());
  ASSERT_TRUE(areas_.reserve(0x5800, 0x6fff, nullptr).ok());   // overlaps the previous
  ASSERT_TRUE(areas_.reserve(0x10000, 0x1ffff, nullptr).ok());
  ASSERT_TRUE(areas_.reserve(0x12000, 0x12fff, nullptr).ok());  // nested
  EXPECT_EQ(areas_.usable(), ranges({{0, 0xfff}, {0x2000, 0x4fff}, {0x7000, 0xffff}, {0x20000, ~0ull}}));

  ASSERT_TRUE(areas_.reserve(0, 0, nullptr).ok());
  ASSERT_TRUE(areas_.reserve(0xffff0000, ~0ull, nullptr).ok());
  EXPECT_EQ(areas_.usable(), ranges({{1, 0xfff}, {0x2000, 0x4fff}, {0x7000, 0xffff}, {0x20000, 0xfffeffff}}));
}

// ---------------------------------------------------------------- the alignment

// HUGE_PAGES off: EINVAL while domains map areas, EADDRINUSE when an area (its IOVA,
// length or page offset) is not PAGE_SIZE aligned; a failure changes nothing.
TEST_F(IovaAreasTest, DisableLargePagesRules) {
  ASSERT_TRUE(map(kFarVa, 0x800, 0x100000).ok());
  EXPECT_EQ(areas_.disable_large_pages().code(), EADDRINUSE) << "a 2 KiB length";
  EXPECT_TRUE(areas_.large_pages());
  EXPECT_EQ(areas_.alignment(), 1u);
  ASSERT_EQ(areas_.unmap_all(), 0x800u);

  ASSERT_TRUE(map(kFarVa + 0x800, k4K, 0x100800).ok());
  EXPECT_EQ(areas_.disable_large_pages().code(), EADDRINUSE) << "a 2 KiB-aligned IOVA";
  ASSERT_EQ(areas_.unmap_all(), k4K);
  ASSERT_TRUE(map(kFarVa + 0x800, k4K, 0x100000).ok());
  EXPECT_EQ(areas_.disable_large_pages().code(), EADDRINUSE) << "a page offset of 2 KiB";
  ASSERT_EQ(areas_.unmap_all(), k4K);

  ASSERT_TRUE(map(kFarVa, 0x2000, 0x100000).ok());
  ASSERT_TRUE(areas_.disable_large_pages().ok()) << "aligned areas";
  EXPECT_FALSE(areas_.large_pages());
  EXPECT_EQ(areas_.alignment(), k4K);
  ASSERT_TRUE(areas_.disable_large_pages().ok()) << "again: nothing to do";
  areas_.enable_large_pages();
  EXPECT_EQ(areas_.alignment(), 1u);
  ASSERT_TRUE(map(kFarVa, 0x800, 0x200800).ok()) << "2 KiB granules again";
}

TEST_F(IovaAreasTest, DisableLargePagesWithDomainsAndAreasIsEinval) {
  const uint64_t va = memory();
  ASSERT_NE(va, 0u);
  ASSERT_TRUE(areas_.add_domain(mock_domain(), &domain_owner_).ok());
  ASSERT_TRUE(areas_.disable_large_pages().ok()) << "a domain, no area";
  EXPECT_EQ(areas_.alignment(), k4K);
  areas_.enable_large_pages();
  EXPECT_EQ(areas_.alignment(), k2K) << "the domain's IO page";

  ASSERT_TRUE(map(va, k4K).ok());
  EXPECT_EQ(areas_.disable_large_pages().code(), EINVAL);
  EXPECT_TRUE(areas_.large_pages());
}

// ---------------------------------------------------------------- domains

// A domain reserves what lies outside its aperture; an area there makes the attach
// EADDRINUSE and leaves nothing reserved. Its IO page raises the alignment.
TEST_F(IovaAreasTest, DomainApertureIsReserved) {
  ASSERT_TRUE(map(kFarVa, k4K, 0x100000).ok());  // below the aperture
  EXPECT_EQ(areas_.add_domain(mock_domain(), &domain_owner_).code(), EADDRINUSE);
  EXPECT_FALSE(areas_.has_domains());
  EXPECT_EQ(areas_.usable(), ranges({{0, ~0ull}})) << "the failed attach reserved nothing";
  EXPECT_EQ(areas_.alignment(), 1u);
  ASSERT_EQ(areas_.unmap_all(), k4K);

  ASSERT_TRUE(map(kFarVa, k4K, kApertureLast + 1).ok());  // above it
  EXPECT_EQ(areas_.add_domain(mock_domain(), &domain_owner_).code(), EADDRINUSE);
  EXPECT_EQ(areas_.usable(), ranges({{0, ~0ull}}));
  ASSERT_EQ(areas_.unmap_all(), k4K);

  ASSERT_TRUE(areas_.allow(ranges({{0x100000, 0x1ffffff}})).ok());
  EXPECT_EQ(areas_.add_domain(mock_domain(), &domain_owner_).code(), EADDRINUSE) << "over an allowed range";
  ASSERT_TRUE(areas_.allow({}).ok());

  ASSERT_TRUE(areas_.add_domain(mock_domain(), &domain_owner_).ok());
  EXPECT_EQ(areas_.usable(), ranges({{kApertureStart, kApertureLast}}));
  EXPECT_EQ(areas_.alignment(), k2K);
  EXPECT_EQ(areas_.domain_page_sizes(), std::vector<uint64_t>{k2K});
  const uint64_t va = memory();
  ASSERT_NE(va, 0u);
  auto iova = map(va, k4K);
  ASSERT_TRUE(iova.ok()) << iova.error().why;
  EXPECT_GE(*iova, kApertureStart);
  EXPECT_LE(*iova + k4K - 1, kApertureLast);
  EXPECT_EQ(map(va, k4K, 0x100000).code(), EINVAL) << "outside the aperture is reserved";
  auto granule = map(va + k4K, k2K);
  ASSERT_TRUE(granule.ok()) << "2 KiB (one IO page) of a page-aligned address: " << granule.error().why;
  EXPECT_EQ(*granule % k2K, 0u);
  ASSERT_EQ(areas_.unmap_all(), k4K + k2K);

  areas_.remove_domain(&domain_owner_);
  EXPECT_FALSE(areas_.has_domains());
  EXPECT_EQ(areas_.usable(), ranges({{0, ~0ull}}));
  EXPECT_EQ(areas_.alignment(), 1u);
}

// An IO page above the CPU's is EINVAL; so is a domain whose IO page misaligns an area.
TEST_F(IovaAreasTest, DomainPageSizeRules) {
  DomainSlot big = mock_domain();
  big.page_size = 2 * k4K;
  EXPECT_EQ(areas_.add_domain(big, &domain_owner_).code(), EINVAL);
  EXPECT_FALSE(areas_.has_domains());

  ASSERT_TRUE(map(kFarVa + 0x100, 0x100, kApertureStart + 0x100).ok());
  EXPECT_EQ(areas_.add_domain(mock_domain(), &domain_owner_).code(), EADDRINUSE) << "a 256-byte area";
  EXPECT_FALSE(areas_.has_domains());
  EXPECT_EQ(areas_.usable(), ranges({{0, ~0ull}}));
}

// With a domain the pages are pinned (once per MAP, whatever the number of domains)
// and mapped in it; without one they are not. The pins go with the last domain, with
// UNMAP, and are shared by COPY.
TEST_F(IovaAreasTest, DomainsPinThePages) {
  const uint64_t va = memory();
  ASSERT_NE(va, 0u);
  constexpr uint64_t kLength = 4 * k4K;
  ASSERT_EQ(pins(va, kMemorySize), all(0, kMemorySize));

  auto iova = map(va, kLength, kApertureStart);
  ASSERT_TRUE(iova.ok()) << iova.error().why;
  EXPECT_EQ(pins(va, kLength), all(0, kLength)) << "no domain: recorded, not pinned";

  // An attach that fails after pinning the first area (the second's memory is gone:
  // EFAULT, as GUP fails) leaves no pin.
  ASSERT_TRUE(map(kFarVa, k4K, kApertureStart + k1M).ok());
  EXPECT_EQ(areas_.add_domain(mock_domain(), &domain_owner_).code(), EFAULT);
  EXPECT_FALSE(areas_.has_domains());
  EXPECT_EQ(pins(va, kLength), all(0, kLength)) << "the failed attach left no pin";
  EXPECT_FALSE(table_->lookup(*iova).has_value()) << "nor a mapping";
  ASSERT_EQ(*areas_.unmap(kApertureStart + k1M, k4K), k4K);

  ASSERT_TRUE(areas_.add_domain(mock_domain(), &domain_owner_).ok()) << "an area at " << std::hex << *iova;
  EXPECT_EQ(pins(va, kLength), all(1, kLength));
  EXPECT_EQ(pins(va + kLength, k4K), all(0, k4K)) << "only the area's pages";
  EXPECT_TRUE(table_->lookup(*iova).has_value());
  EXPECT_TRUE(table_->lookup(*iova + kLength - 1).has_value());

  ASSERT_TRUE(areas_.add_domain(mock_domain(second_table_), &second_owner_).ok());
  EXPECT_EQ(pins(va, kLength), all(1, kLength)) << "one pin per MAP, not per domain";
  EXPECT_TRUE(second_table_->lookup(*iova).has_value());
  areas_.remove_domain(&second_owner_);
  EXPECT_EQ(pins(va, kLength), all(1, kLength)) << "a domain is left";

  areas_.remove_domain(&domain_owner_);
  EXPECT_EQ(pins(va, kLength), all(0, kLength)) << "no domain is left";
  EXPECT_FALSE(table_->lookup(*iova).has_value());

  // MAP with a domain pins at once; UNMAP unpins.
  ASSERT_TRUE(areas_.add_domain(mock_domain(), &domain_owner_).ok());
  EXPECT_EQ(pins(va, kLength), all(1, kLength));
  ASSERT_EQ(*areas_.unmap(*iova, kLength), kLength);
  EXPECT_EQ(pins(va, kLength), all(0, kLength));
  EXPECT_FALSE(table_->lookup(*iova).has_value());
  auto again = map(va + 8 * k4K, kLength);
  ASSERT_TRUE(again.ok()) << again.error().why;
  EXPECT_EQ(pins(va + 8 * k4K, kLength), all(1, kLength));
  EXPECT_TRUE(table_->lookup(*again).has_value());

  // COPY into another IOAS with a domain shares the pin.
  auto pieces = areas_.pieces(*again, kLength);
  ASSERT_TRUE(pieces.ok()) << pieces.error().why;
  auto destination = fresh();
  ASSERT_TRUE(destination->add_domain(mock_domain(second_table_), &second_owner_).ok());
  auto copied = destination->map(*pieces, std::nullopt, true, true);
  ASSERT_TRUE(copied.ok()) << copied.error().why;
  EXPECT_EQ(pins(va + 8 * k4K, kLength), all(1, kLength)) << "COPY shares the pages and their pin";
  ASSERT_EQ(*areas_.unmap(*again, kLength), kLength);
  EXPECT_EQ(pins(va + 8 * k4K, kLength), all(1, kLength)) << "the copy still needs them";
  destination->remove_domain(&second_owner_);
  EXPECT_EQ(pins(va + 8 * k4K, kLength), all(0, kLength));
}

// A domain maps 4 KiB pages: two areas may not share an IOVA page while one exists
// (EADDRINUSE), and an IOVA must share its offset in the page with its user address.
TEST_F(IovaAreasTest, DomainAreasMayNotShareAnIovaPage) {
  const uint64_t va = memory();
  ASSERT_NE(va, 0u);
  ASSERT_TRUE(areas_.add_domain(mock_domain(), &domain_owner_).ok());
  ASSERT_TRUE(map(va, k2K, kApertureStart).ok());
  EXPECT_EQ(map(va + k4K + k2K, k2K, kApertureStart + k2K).code(), EADDRINUSE);
  EXPECT_EQ(map(va + k4K, k2K, kApertureStart + 2 * k4K + k2K).code(), EINVAL) << "offsets 0 and 2 KiB";
  EXPECT_EQ(areas_.areas().size(), 1u) << describe(areas_.areas());
  EXPECT_EQ(pins(va + k4K, k4K), all(0, k4K)) << "failed MAPs leave no pin";
}

// Pins are charged to the account the MAP recorded: the user's by default, the mapping
// process's under IOMMU_OPTION_RLIMIT_MODE 1 (a separate accounting with the same
// limit), and given back when the domain no longer needs them.
TEST_F(IovaAreasTest, PinsAreChargedToTheAccountTheMapRecorded) {
  const uint64_t va = memory();
  PinAccounting per_process(iommu_.pins().limit_pages());
  const uid_t process_key = static_cast<uid_t>(::getpid());
  const uint64_t user_before = iommu_.pins().pinned_pages(::getuid());
  auto pages = Pages::record(::getpid(), {&per_process, process_key}, va, 4 * k4K, true);
  ASSERT_TRUE(pages.ok()) << pages.error().why;
  const PagesPiece piece{std::move(*pages), 0, 4 * k4K};
  ASSERT_TRUE(areas_.add_domain(mock_domain(), &domain_owner_).ok());
  auto iova = areas_.map(std::span(&piece, 1), kApertureStart, true, true);
  ASSERT_TRUE(iova.ok()) << iova.error().why;
  EXPECT_EQ(per_process.pinned_pages(process_key), 4u);
  EXPECT_EQ(iommu_.pins().pinned_pages(::getuid()), user_before) << "nothing charged to the user";

  PinAccounting tight(2);  // fewer pages than the area has
  auto over = Pages::record(::getpid(), {&tight, process_key}, va + 4 * k4K, 4 * k4K, true);
  ASSERT_TRUE(over.ok());
  const PagesPiece too_big{std::move(*over), 0, 4 * k4K};
  EXPECT_EQ(areas_.map(std::span(&too_big, 1), std::nullopt, true, true).code(), ENOMEM)
      << "the account's limit applies";

  areas_.remove_domain(&domain_owner_);
  EXPECT_EQ(per_process.pinned_pages(process_key), 0u) << "no domain needs the pages pinned";
}

}  // namespace
}  // namespace ioasid::dev_iommu
