#include "iommu/pasid_table.h"

namespace ioasid::iommu {

std::optional<PasidEntry> PasidTable::lookup(uint32_t pasid) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pasid);
  return it == entries_.end() ? std::nullopt : std::optional(it->second);
}

std::optional<PasidEntry> PasidTable::set(uint32_t pasid, PasidEntry entry) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.try_emplace(pasid, entry);
  if (inserted) return std::nullopt;
  return std::exchange(it->second, entry);
}

std::optional<PasidEntry> PasidTable::clear(uint32_t pasid) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pasid);
  if (it == entries_.end()) return std::nullopt;
  PasidEntry old = it->second;
  entries_.erase(it);
  return old;
}

std::vector<std::pair<uint32_t, PasidEntry>> PasidTable::entries() const {
  std::lock_guard lock(mutex_);
  return {entries_.begin(), entries_.end()};
}

}  // namespace ioasid::iommu
