// SPDX-License-Identifier: MIT
#include "iommu/io_pagetable.h"

namespace ioasid::iommu {
namespace {

constexpr uint64_t kSuperpageSizes[] = {1ull << 30, 1ull << 21};

// The IOVA alignment that lets the table use the largest page the segment's HPA
// alignment, the length and the table's cap allow.
uint64_t alignment_for(Hpa hpa, uint64_t length, uint64_t largest_page) {
  for (const uint64_t size : kSuperpageSizes)
    if (size <= largest_page && length >= size && hpa % size == 0) return size;
  return kPageSize;
}

}  // namespace

Result<std::unique_ptr<IoPageTable>> IoPageTable::create(Iommu& iommu, uint64_t largest_page) {
  if (largest_page != pgtable::kPageSize4K && largest_page != pgtable::kPageSize2M &&
      largest_page != pgtable::kPageSize1G)
    return fail(EINVAL, "largest page {:#x} is not 4K, 2M or 1G", largest_page);
  auto domain = iommu.allocate_domain();
  IOASID_TRY(domain);
  auto table = pgtable::SecondLevelTable::create(iommu.memory(), iommu.levels());
  if (!table) {
    iommu.free_domain(*domain);
    return std::move(table).error();
  }
  return std::unique_ptr<IoPageTable>(new IoPageTable(iommu, *domain, std::move(*table), largest_page));
}

IoPageTable::IoPageTable(Iommu& iommu, uint16_t domain, pgtable::SecondLevelTable table, uint64_t largest_page)
    : iommu_(iommu), domain_(domain), largest_page_(largest_page), table_(std::move(table)), iovas_(iommu.last_iova(), {kMsiWindow}) {}

IoPageTable::~IoPageTable() {
  {
    std::lock_guard lock(mutex_);
    while (!areas_.empty()) drop_area_locked(areas_.begin()->first, areas_.begin()->second);
  }
  iommu_.free_domain(domain_);
}

Result<uint64_t> IoPageTable::map(MapRequest request) {
  const uint64_t length = request.backing->size();
  std::lock_guard lock(mutex_);
  auto hpa = iommu_.memory().add_segment(request.backing);
  IOASID_TRY(hpa);
  auto undo_segment = [&] { (void)iommu_.memory().remove_segment(*hpa); };

  uint64_t iova = 0;
  if (request.iova) {
    if (auto claimed = iovas_.claim(*request.iova, length); !claimed) {
      undo_segment();
      return std::move(claimed).error();
    }
    iova = *request.iova;
  } else {
    auto chosen = iovas_.claim_any(length, alignment_for(*hpa, length, largest_page_));
    if (!chosen) {
      undo_segment();
      return std::move(chosen).error();
    }
    iova = *chosen;
  }
  const pgtable::Permissions permissions{.read = request.readable, .write = request.writeable};
  if (auto mapped = table_.map(iova, *hpa, length, permissions, /*snoop=*/true, largest_page_); !mapped) {
    iovas_.release(iova);
    undo_segment();
    return std::move(mapped).error();
  }
  // Nothing to flush: the range was unmapped, and faults are never cached.
  areas_.emplace(iova, Area{length, *hpa, request.readable, request.writeable, std::move(request.backing),
                            std::move(request.charge), std::move(request.mapping)});
  return iova;
}

Result<uint64_t> IoPageTable::unmap(uint64_t iova, uint64_t length) {
  std::lock_guard lock(mutex_);
  std::vector<IovaRange> doomed;
  if (iova == 0 && length == ~0ull) {
    doomed = iovas_.areas();
  } else {
    if (length == 0) return fail(ENOENT, "nothing is inside an empty range");
    if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
    const uint64_t last = iova + (length - 1);
    doomed = iovas_.overlapping(iova, last);
    if (doomed.empty()) return fail(ENOENT, "no area in [{:#x}, {:#x}]", iova, last);
    for (const IovaRange& area : doomed)
      if (area.start < iova || area.last > last)
        return fail(ENOENT, "the area [{:#x}, {:#x}] is only partly inside [{:#x}, {:#x}]", area.start, area.last,
                    iova, last);
  }
  uint64_t unmapped = 0;
  for (const IovaRange& area : doomed) {
    unmapped += area.last - area.start + 1;
    drop_area_locked(area.start, areas_.at(area.start));
  }
  return unmapped;
}

void IoPageTable::drop_area_locked(uint64_t iova, Area& area) {
  // Table first, then every cached translation, then the memory: a DMA that still
  // holds a stale translation finishes before remove_segment returns, or faults.
  (void)table_.unmap(iova, area.length);
  iommu_.flush_range(domain_, iova, area.length);
  for (const uint16_t nested : nested_domains_) iommu_.flush_domain(nested);
  iovas_.release(iova);
  (void)iommu_.memory().remove_segment(area.hpa);
  areas_.erase(iova);  // releases the pin charge
}

std::optional<Hpa> IoPageTable::lookup(uint64_t iova) const {
  const auto walked = table_.walk(iova, pgtable::Access{});
  if (!walked) return std::nullopt;
  return walked.translation().hpa;
}

Result<void> IoPageTable::set_dirty_tracking(bool enabled) {
  std::lock_guard lock(mutex_);
  if (enabled && !iommu_.dirty_tracking(domain_)) IOASID_TRY(table_.clear_all_dirty());
  iommu_.set_dirty_tracking(domain_, enabled);
  return success();
}

bool IoPageTable::dirty_tracking() const { return iommu_.dirty_tracking(domain_); }

Result<void> IoPageTable::check_mapped(uint64_t iova, uint64_t length) const {
  std::lock_guard lock(mutex_);
  return check_mapped_locked(iova, length);
}

Result<void> IoPageTable::check_mapped_locked(uint64_t iova, uint64_t length) const {
  if (length == 0) return fail(EINVAL, "empty range");
  const uint64_t last = iova + (length - 1);
  if (last < iova) return fail(EINVAL, "iova {:#x} + length {:#x} wraps", iova, length);
  uint64_t next = iova;  // the first byte not yet known to be mapped
  auto it = areas_.upper_bound(iova);
  if (it == areas_.begin()) return fail(EINVAL, "IOVA {:#x} is not mapped", iova);
  for (--it; it != areas_.end() && it->first <= next; ++it) {
    const uint64_t area_last = it->first + (it->second.length - 1);
    if (area_last >= last) return success();
    if (area_last >= next) next = area_last + 1;
  }
  return fail(EINVAL, "IOVA {:#x} inside [{:#x}, {:#x}] is not mapped", next, iova, last);
}

Result<void> IoPageTable::read_dirty(uint64_t iova, uint64_t length, uint64_t page_size, bool clear,
                                     std::span<uint64_t> bitmap) {
  std::lock_guard lock(mutex_);
  if (!iommu_.dirty_tracking(domain_)) return fail(EINVAL, "dirty tracking is not enabled on this IOASID");
  IOASID_TRY(check_mapped_locked(iova, length));
  IOASID_TRY(table_.read_and_clear_dirty_bitmap(iova, length, page_size,
                                                clear ? pgtable::DirtyRead::kAndClear : pgtable::DirtyRead::kNoClear,
                                                bitmap));
  if (clear) iommu_.flush_range(domain_, iova, length);
  return success();
}

Result<void> IoPageTable::read_dirty_ranges(uint64_t iova, uint64_t length, bool clear,
                                            const pgtable::SecondLevelTable::DirtyRangeCallback& report) {
  std::lock_guard lock(mutex_);
  if (!iommu_.dirty_tracking(domain_)) return fail(EINVAL, "dirty tracking is not enabled on this domain");
  IOASID_TRY(check_mapped_locked(iova, length));
  IOASID_TRY(table_.read_and_clear_dirty_ranges(
      iova, length, clear ? pgtable::DirtyRead::kAndClear : pgtable::DirtyRead::kNoClear, report));
  // Cached translations remember D set: flushed, the next write sets it again.
  if (clear) iommu_.flush_range(domain_, iova, length);
  return success();
}

Result<bool> IoPageTable::mark_half_dirty(uint64_t iova) {
  std::lock_guard lock(mutex_);
  if (!iommu_.dirty_tracking(domain_)) return fail(EINVAL, "dirty tracking is not enabled on this domain");
  return table_.mark_half_dirty(iova);
}

void IoPageTable::restore_dirty(uint64_t iova, uint64_t length, uint64_t page_size,
                                std::span<const uint64_t> bitmap) {
  std::lock_guard lock(mutex_);
  // Cannot fail: the same range and bitmap were just read and cleared.
  (void)table_.restore_dirty_bitmap(iova, length, page_size, bitmap);
}

void IoPageTable::add_nested_domain(uint16_t domain) {
  std::lock_guard lock(mutex_);
  nested_domains_.push_back(domain);
}

void IoPageTable::remove_nested_domain(uint16_t domain) {
  std::lock_guard lock(mutex_);
  std::erase(nested_domains_, domain);
}

std::vector<IovaRange> IoPageTable::allowed_ranges() const {
  std::lock_guard lock(mutex_);
  return iovas_.allowed_ranges();
}

std::vector<AreaInfo> IoPageTable::areas() const {
  std::lock_guard lock(mutex_);
  std::vector<AreaInfo> out;
  for (const auto& [iova, area] : areas_)
    out.push_back({iova, area.length, area.hpa, area.readable, area.writeable, area.backing->description()});
  return out;
}

size_t IoPageTable::table_pages() const {
  std::lock_guard lock(mutex_);
  return table_.table_pages();
}

}  // namespace ioasid::iommu
