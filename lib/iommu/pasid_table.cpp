// SPDX-License-Identifier: MIT
#include "iommu/pasid_table.h"

#include <atomic>

namespace ioasid::iommu {
namespace {
uint32_t next_table_id() {
  static std::atomic<uint32_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

PasidTable::PasidTable(PasidCache& cache) : cache_(cache), id_(next_table_id()) {}

PasidTable::~PasidTable() { cache_.invalidate_table(id_); }

std::optional<PasidEntry> PasidTable::translate_lookup(uint32_t pasid) const {
  // One named result on every path: returning the cache's optional by copy made the
  // CPU reload the fields it had just stored, a store-forwarding stall on every hit.
  std::optional<PasidEntry> entry = cache_.lookup(id_, pasid);
  if (entry) return entry;
  // Filled under the table's lock: a set() or clear() either precedes this read or
  // invalidates the fill.
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pasid);
  if (it == entries_.end()) return entry;
  cache_.fill(id_, pasid, it->second);
  entry = it->second;
  return entry;
}

std::optional<PasidEntry> PasidTable::lookup(uint32_t pasid) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pasid);
  return it == entries_.end() ? std::nullopt : std::optional(it->second);
}

std::optional<PasidEntry> PasidTable::set(uint32_t pasid, PasidEntry entry) {
  std::lock_guard lock(mutex_);
  cache_.invalidate(id_, pasid);
  auto [it, inserted] = entries_.try_emplace(pasid, entry);
  if (inserted) return std::nullopt;
  return std::exchange(it->second, entry);
}

std::optional<PasidEntry> PasidTable::clear(uint32_t pasid) {
  std::lock_guard lock(mutex_);
  cache_.invalidate(id_, pasid);
  auto it = entries_.find(pasid);
  if (it == entries_.end()) return std::nullopt;
  PasidEntry old = it->second;
  entries_.erase(it);
  return old;
}

void PasidTable::invalidate_cached(uint32_t pasid) const {
  std::lock_guard lock(mutex_);
  cache_.invalidate(id_, pasid);
}

std::vector<std::pair<uint32_t, PasidEntry>> PasidTable::entries() const {
  std::lock_guard lock(mutex_);
  return {entries_.begin(), entries_.end()};
}

}  // namespace ioasid::iommu
