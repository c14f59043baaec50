// SPDX-License-Identifier: MIT
// A kernel-managed I/O address space: the daemon's second-level table, the IOVA
// areas mapped in it, and the pinned client segments behind them. Every change the
// daemon makes flushes the IOTLB for the domain before it returns.
#pragma once

#include "iommu/iommu.h"
#include "iommu/iova_space.h"
#include "base/user_quota.h"
#include "memory/backing.h"
#include "memory/pin_accounting.h"
#include "pgtable/second_level_table.h"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ioasid::iommu {

struct MapRequest {
  std::shared_ptr<Backing> backing;  // the pinned client range, length = backing->size()
  PinCharge charge;                  // released when the area goes
  UserQuota::Charge mapping;         // one of the user's --max-maps-per-user, likewise
  std::optional<uint64_t> iova;      // fixed IOVA, else the lowest aligned hole
  bool readable = false;
  bool writeable = false;
};

struct AreaInfo {
  uint64_t iova;
  uint64_t length;
  Hpa hpa;
  bool readable;
  bool writeable;
  std::string source;
};

class IoPageTable {
 public:
  // `largest_page` (4K, 2M or 1G) caps the leaves map() writes: a domain whose driver
  // has smaller IOPTEs keeps its leaves to a size whose halves are its IOPTEs.
  static Result<std::unique_ptr<IoPageTable>> create(Iommu& iommu, uint64_t largest_page = pgtable::kPageSize1G);
  ~IoPageTable();
  IoPageTable(const IoPageTable&) = delete;
  IoPageTable& operator=(const IoPageTable&) = delete;

  uint16_t domain() const { return domain_; }
  Hpa root() const { return table_.root(); }
  int levels() const { return table_.levels(); }

  // Maps the whole backing; returns the IOVA. EINVAL/EEXIST/EOVERFLOW for a bad fixed
  // IOVA, ENOSPC for no hole, ENOMEM for no table page or HPA room.
  Result<uint64_t> map(MapRequest request);
  // Unmaps every area inside [iova, iova + length); returns the bytes unmapped.
  // ENOENT if an area is only partly inside or nothing is inside, except that
  // iova 0 with length ~0 unmaps everything (0 when empty).
  Result<uint64_t> unmap(uint64_t iova, uint64_t length);

  // Dirty tracking: second-level D bits set by DMA writes. Enabling clears every D
  // bit first, so tracking starts clean.
  Result<void> set_dirty_tracking(bool enabled);
  bool dirty_tracking() const;
  // Reports the dirty `page_size` pages of [iova, iova + length) into `bitmap` (bit i:
  // page iova + i * page_size), clearing D unless `clear` is false. The translations
  // of the range are flushed afterwards, so the next write sets D again. EINVAL:
  // tracking off, the range not wholly mapped, misaligned or a bad page size.
  Result<void> read_dirty(uint64_t iova, uint64_t length, uint64_t page_size, bool clear, std::span<uint64_t> bitmap);
  // The same as dirty byte ranges (SecondLevelTable::read_and_clear_dirty_ranges): a
  // whole leaf whose D a write set, or a half of a leaf mark_half_dirty marked; any
  // alignment. EINVAL: tracking off or the range not wholly mapped.
  Result<void> read_dirty_ranges(uint64_t iova, uint64_t length, bool clear,
                                 const pgtable::SecondLevelTable::DirtyRangeCallback& report);
  // Marks the half of the leaf mapping `iova` dirty, as a driver whose IOPTE is half a
  // leaf records a write it saw (the selftest's mock domain); false if `iova` is not
  // mapped. EINVAL while tracking is off.
  Result<bool> mark_half_dirty(uint64_t iova);
  // Marks the pages of a bitmap read_dirty cleared dirty again (it could not be delivered).
  void restore_dirty(uint64_t iova, uint64_t length, uint64_t page_size, std::span<const uint64_t> bitmap);
  // EINVAL unless [iova, iova + length) is covered by areas without a gap.
  Result<void> check_mapped(uint64_t iova, uint64_t length) const;

  // Nested address spaces translate their GPAs through this table and cache the
  // combined translations under their own domain: every unmap flushes those domains
  // whole (which guest addresses used the range is not known).
  void add_nested_domain(uint16_t domain);
  void remove_nested_domain(uint16_t domain);

  // The HPA `iova` translates to for a read, by the walk the IOMMU does (A/D left
  // alone); nullopt where nothing is mapped.
  std::optional<Hpa> lookup(uint64_t iova) const;
  HpaSpace& memory() const { return iommu_.memory(); }

  std::vector<IovaRange> allowed_ranges() const;
  std::vector<AreaInfo> areas() const;
  size_t table_pages() const;

 private:
  struct Area {
    uint64_t length;
    Hpa hpa;
    bool readable;
    bool writeable;
    std::shared_ptr<Backing> backing;
    PinCharge charge;
    UserQuota::Charge mapping;
  };
  IoPageTable(Iommu& iommu, uint16_t domain, pgtable::SecondLevelTable table, uint64_t largest_page);
  void drop_area_locked(uint64_t iova, Area& area);
  Result<void> check_mapped_locked(uint64_t iova, uint64_t length) const;

  Iommu& iommu_;
  const uint16_t domain_;
  const uint64_t largest_page_;
  mutable std::mutex mutex_;
  pgtable::SecondLevelTable table_;
  IovaSpace iovas_;
  std::map<uint64_t, Area> areas_;
  std::vector<uint16_t> nested_domains_;
};

}  // namespace ioasid::iommu
