// SPDX-License-Identifier: MIT
// A gtest fixture for the translation and DMA-function tests: an IOMMU, a memfd of
// `kMemory` bytes standing for client memory, one I/O page table and a PASID table
// routing `kPasid` to it as IOASID `kIoasid`.
#pragma once

#include "translation_support.h"

#include <gtest/gtest.h>

namespace ioasid::iommu::test_support {

template <uint64_t kMemory, uint32_t kPasid, uint32_t kIoasid>
class RoutedTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(memory_.ok());
    auto table = IoPageTable::create(iommu_);
    ASSERT_TRUE(table.ok()) << table.error().why;
    table_ = std::move(*table);
    pasids_.set(kPasid, second_level_entry(*table_, kIoasid));
  }

  Result<uint64_t> map(uint64_t offset, uint64_t length, std::optional<uint64_t> iova, bool readable = true,
                       bool writeable = true) {
    return memory_.map(iommu_, *table_, offset, length, iova, readable, writeable);
  }

  // Destroyed in reverse: the PASID table, the I/O page table, then the IOMMU.
  Iommu iommu_;
  MemfdMemory memory_{kMemory};
  std::unique_ptr<IoPageTable> table_;
  PasidTable pasids_{iommu_.pasid_cache()};
};

}  // namespace ioasid::iommu::test_support
