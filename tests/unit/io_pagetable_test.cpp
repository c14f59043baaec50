// SPDX-License-Identifier: MIT
// A kernel-managed I/O page table over real memory: a memfd of this process mapped
// through the HPA space, translated by the second-level walker.
#include "iommu/io_pagetable.h"
#include "memory/backing_for_file.h"
#include "pgtable/walk.h"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace ioasid::iommu {
namespace {

constexpr uint64_t k4K = 4096, k2M = 2ull << 20;

class IoPageTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = memfd_create("io_pagetable_test", 0);
    ASSERT_GE(fd_, 0);
    ASSERT_EQ(ftruncate(fd_, 8 * k2M), 0);
    auto table = IoPageTable::create(iommu_);
    ASSERT_TRUE(table.ok());
    table_ = std::move(*table);
  }
  void TearDown() override {
    table_.reset();
    close(fd_);
  }

  Result<uint64_t> map(uint64_t offset, uint64_t length, std::optional<uint64_t> iova = std::nullopt) {
    auto backing = backing_for_file(getpid(), fd_, offset, length, MapAccess::kReadWrite);
    IOASID_TRY(backing);
    auto charge = iommu_.pins().charge(getuid(), length / k4K);
    IOASID_TRY(charge);
    return table_->map({.backing = std::move(*backing), .charge = std::move(*charge), .iova = iova,
                        .readable = true, .writeable = true});
  }

  // Translates iova with the table and reads one byte of what it points at.
  std::optional<uint8_t> byte_at(uint64_t iova) {
    auto walk = pgtable::walk_second_level(iommu_.memory(), table_->root(), table_->levels(), iova,
                                           pgtable::Access{.read = true});
    if (!walk) return std::nullopt;
    std::byte value{};
    if (!iommu_.memory().read(walk.translation().hpa, std::span(&value, 1))) return std::nullopt;
    return static_cast<uint8_t>(value);
  }

  Iommu iommu_;
  int fd_ = -1;
  std::unique_ptr<IoPageTable> table_;
};

TEST_F(IoPageTableTest, MappedFileBytesAreWhatTheWalkReaches) {
  const uint8_t pattern[] = {0x11, 0x22, 0x33};
  ASSERT_EQ(pwrite(fd_, pattern, 1, 0), 1);
  ASSERT_EQ(pwrite(fd_, pattern + 1, 1, k2M + 5), 1);
  auto iova = map(0, 4 * k2M);
  ASSERT_TRUE(iova.ok()) << iova.error().why;
  EXPECT_EQ(*iova % k2M, 0u);  // aligned so the table can use 2M pages
  EXPECT_EQ(byte_at(*iova), 0x11);
  EXPECT_EQ(byte_at(*iova + k2M + 5), 0x22);
  ASSERT_EQ(pwrite(fd_, pattern + 2, 1, 0), 1);  // coherent: no copy in between
  EXPECT_EQ(byte_at(*iova), 0x33);
}

TEST_F(IoPageTableTest, FixedIovaRules) {
  ASSERT_TRUE(map(0, k2M, 0x40000000).ok());
  EXPECT_EQ(map(0, k2M, 0x40000000 + k4K).code(), EEXIST);
  EXPECT_EQ(map(0, k2M, 0xfee00000).code(), EINVAL);  // the MSI window
  EXPECT_EQ(map(0, k2M, 1ull << 48).code(), EINVAL);  // beyond 48 bits
  EXPECT_EQ(table_->areas().size(), 1u);
  EXPECT_EQ(iommu_.memory().segments().size(), 1u);  // failed maps left no segment behind
  const std::vector<IovaRange> allowed{{0, 0xfedfffff}, {0xfef00000, (1ull << 48) - 1}};
  EXPECT_EQ(table_->allowed_ranges(), allowed);
}

TEST_F(IoPageTableTest, UnmapTakesWholeAreasOnly) {
  ASSERT_TRUE(map(0, k2M, 0x100000000).ok());
  ASSERT_TRUE(map(k2M, k4K, 0x100000000 + 2 * k2M).ok());
  EXPECT_EQ(table_->unmap(0x100000000, k4K).code(), ENOENT);  // cuts the first area
  EXPECT_EQ(table_->unmap(0x200000000, k4K).code(), ENOENT);  // nothing there
  EXPECT_EQ(table_->unmap(0x100000000, 0).code(), ENOENT);
  EXPECT_EQ(table_->unmap(~0ull - k4K, 2 * k4K).code(), EOVERFLOW);
  EXPECT_EQ(table_->areas().size(), 2u);
  auto both = table_->unmap(0x100000000, 3 * k2M);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(*both, k2M + k4K);
  EXPECT_EQ(*table_->unmap(0, ~0ull), 0u);  // everything, even when empty
}

TEST_F(IoPageTableTest, UnmapFlushesTheIotlbAndReleasesPinsSegmentsAndTables) {
  auto iova = map(0, k2M);
  ASSERT_TRUE(iova.ok());
  EXPECT_EQ(iommu_.pins().pinned_pages(getuid()), k2M / k4K);
  iommu_.iotlb().fill(table_->domain(), kRidPasid, *iova, 21, 0x1234000000, kPermRead);
  ASSERT_TRUE(iommu_.iotlb().lookup(table_->domain(), kRidPasid, *iova));
  ASSERT_EQ(*table_->unmap(0, ~0ull), k2M);
  EXPECT_FALSE(iommu_.iotlb().lookup(table_->domain(), kRidPasid, *iova));
  EXPECT_FALSE(byte_at(*iova).has_value());
  EXPECT_EQ(iommu_.pins().pinned_pages(getuid()), 0u);
  EXPECT_TRUE(iommu_.memory().segments().empty());
  EXPECT_EQ(table_->table_pages(), 1u);  // just the root
}

TEST_F(IoPageTableTest, PinnedLimitRefusesAndChangesNothing) {
  Iommu small({.pin_limit_pages = 16});
  auto table = IoPageTable::create(small);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(small.pins().charge(getuid(), 17).code(), ENOMEM);
  EXPECT_EQ(small.pins().pinned_pages(getuid()), 0u);
}

TEST_F(IoPageTableTest, DestroyingTheTableReleasesEverythingAndItsDomain) {
  ASSERT_TRUE(map(0, 2 * k2M).ok());
  ASSERT_TRUE(map(2 * k2M, k4K).ok());
  const uint16_t domain = table_->domain();
  table_.reset();
  EXPECT_EQ(iommu_.pins().pinned_pages(getuid()), 0u);
  EXPECT_TRUE(iommu_.memory().segments().empty());
  EXPECT_EQ(iommu_.memory().stats().table_pages, 0u);
  auto next = IoPageTable::create(iommu_);
  ASSERT_TRUE(next.ok());
  EXPECT_NE((*next)->domain(), domain);  // ids are reused as late as possible
}

TEST_F(IoPageTableTest, LargestPageCapsTheLeavesMapWrites) {
  EXPECT_EQ(IoPageTable::create(iommu_, 3 * k4K).code(), EINVAL);
  auto capped = IoPageTable::create(iommu_, k4K);
  ASSERT_TRUE(capped.ok());
  table_ = std::move(*capped);
  auto iova = map(0, 2 * k2M, 4 * k2M);
  ASSERT_TRUE(iova.ok());
  auto walk = pgtable::walk_second_level(iommu_.memory(), table_->root(), table_->levels(), *iova + k2M,
                                         pgtable::Access{.read = true});
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(walk.translation().page_size, k4K);
}

}  // namespace
}  // namespace ioasid::iommu
