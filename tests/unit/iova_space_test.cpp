// SPDX-License-Identifier: MIT
#include "iommu/iova_space.h"

#include <gtest/gtest.h>

#include <random>

namespace ioasid::iommu {
namespace {

constexpr uint64_t kLast48 = (1ull << 48) - 1;
constexpr uint64_t k4K = 4096, k2M = 2ull << 20;

TEST(IovaSpace, AllowedRangesAreTheWidthMinusReservedWindows) {
  IovaSpace space(kLast48, {kMsiWindow});
  const std::vector<IovaRange> expected{{0, 0xfedfffff}, {0xfef00000, kLast48}};
  EXPECT_EQ(space.allowed_ranges(), expected);
  IovaSpace merged(0xffff, {{0x100, 0x1ff}, {0x180, 0x2ff}, {0xff00, 0xffffffff}});
  const std::vector<IovaRange> expected_merged{{0, 0xff}, {0x300, 0xfeff}};
  EXPECT_EQ(merged.allowed_ranges(), expected_merged);
}

TEST(IovaSpace, FixedClaimsFollowUnmapRules) {
  IovaSpace space(kLast48, {kMsiWindow});
  ASSERT_TRUE(space.claim(0x100000, 0x10000).ok());
  EXPECT_EQ(space.claim(0x108000, 0x10000).code(), EEXIST);
  EXPECT_EQ(space.claim(0xff000, 0x2000).code(), EEXIST);
  EXPECT_EQ(space.claim(0xfee00000 - k4K, 2 * k4K).code(), EINVAL);  // into the MSI window
  EXPECT_EQ(space.claim(kLast48 - k4K + 1, 2 * k4K).code(), EINVAL);  // beyond the width
  EXPECT_EQ(space.claim(~0ull - k4K + 1, 2 * k4K).code(), EOVERFLOW);
  EXPECT_EQ(space.claim(0, 0).code(), EINVAL);
  EXPECT_TRUE(space.claim(0, k4K).ok());  // IOVA 0 may be named, just never chosen
  EXPECT_EQ(space.areas().size(), 2u);
}

TEST(IovaSpace, AutomaticClaimsAreAlignedLowestHolesNeverZero) {
  IovaSpace space(kLast48, {kMsiWindow});
  auto first = space.claim_any(k4K, k4K);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, k4K);
  auto huge = space.claim_any(k2M, k2M);
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(*huge, k2M);
  auto next = space.claim_any(k4K, k4K);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 2 * k4K);  // fills the hole below the 2M area
  space.release(*huge);
  EXPECT_EQ(*space.claim_any(k4K, k4K), 3 * k4K);
}

TEST(IovaSpace, AutomaticClaimsSkipTheReservedWindowAndReportExhaustion) {
  IovaSpace small(0xfeffffff, {kMsiWindow});  // 32-bit space ending just after the window
  ASSERT_TRUE(small.claim(k4K, 0xfee00000 - k4K).ok());  // everything below the window
  auto above = small.claim_any(k4K, k4K);
  ASSERT_TRUE(above.ok());
  EXPECT_EQ(*above, 0xfef00000u);
  EXPECT_EQ(small.claim_any(2 * 0x100000, k4K).code(), ENOSPC);
}

TEST(IovaSpace, OverlappingListsEveryAreaTouched) {
  IovaSpace space(kLast48, {});
  ASSERT_TRUE(space.claim(0x1000, 0x1000).ok());
  ASSERT_TRUE(space.claim(0x3000, 0x2000).ok());
  ASSERT_TRUE(space.claim(0x8000, 0x1000).ok());
  const std::vector<IovaRange> touched{{0x3000, 0x4fff}, {0x8000, 0x8fff}};
  EXPECT_EQ(space.overlapping(0x4000, 0x8000), touched);
  EXPECT_TRUE(space.overlapping(0x2000, 0x2fff).empty());
  EXPECT_EQ(space.overlapping(0, ~0ull).size(), 3u);
}

// Random claims and releases against a page bitmap: no two areas ever overlap and
// automatic claims take the lowest fitting hole.
TEST(IovaSpace, RandomClaimsMatchAReferenceModel) {
  constexpr uint64_t kPages = 512;
  IovaSpace space(kPages * k4K - 1, {{100 * k4K, 110 * k4K - 1}});
  std::vector<bool> used(kPages, false);
  for (uint64_t p = 100; p < 110; ++p) used[p] = true;
  used[0] = true;  // never chosen
  std::mt19937_64 random(7);
  std::vector<IovaRange> live;
  for (int step = 0; step < 5000; ++step) {
    if (live.empty() || random() % 3) {
      const uint64_t pages = 1 + random() % 8;
      uint64_t expected = 0;
      for (uint64_t p = 1; p + pages <= kPages; ++p)
        if (std::none_of(used.begin() + p, used.begin() + p + pages, [](bool b) { return b; })) {
          expected = p;
          break;
        }
      auto got = space.claim_any(pages * k4K, k4K);
      if (expected == 0) {
        EXPECT_EQ(got.code(), ENOSPC);
        continue;
      }
      ASSERT_TRUE(got.ok());
      ASSERT_EQ(*got, expected * k4K);
      for (uint64_t p = expected; p < expected + pages; ++p) used[p] = true;
      live.push_back({*got, *got + pages * k4K - 1});
    } else {
      const size_t victim = random() % live.size();
      space.release(live[victim].start);
      for (uint64_t p = live[victim].start / k4K; p <= live[victim].last / k4K; ++p) used[p] = false;
      live.erase(live.begin() + victim);
    }
  }
}

}  // namespace
}  // namespace ioasid::iommu
