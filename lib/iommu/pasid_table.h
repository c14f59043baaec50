// SPDX-License-Identifier: MIT
// A device's scalable-mode PASID table as the IOMMU walks it: for each PASID (and the
// RID's own requests, at RID_PASID 0) how requests translate. Entries are decoded
// through the IOMMU's PASID cache; every change here invalidates the cached copy
// before it returns, as the kernel's PASID-cache flush after a PASID-entry update.
#pragma once

#include "iommu/pasid_cache.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ioasid::iommu {

class PasidTable {
 public:
  explicit PasidTable(PasidCache& cache);
  ~PasidTable();
  PasidTable(const PasidTable&) = delete;
  PasidTable& operator=(const PasidTable&) = delete;

  // The entry as the IOMMU sees it: from the PASID cache, else read and cached.
  std::optional<PasidEntry> translate_lookup(uint32_t pasid) const;

  std::optional<PasidEntry> lookup(uint32_t pasid) const;
  // Sets the entry; returns what it replaced.
  std::optional<PasidEntry> set(uint32_t pasid, PasidEntry entry);
  std::optional<PasidEntry> clear(uint32_t pasid);
  std::vector<std::pair<uint32_t, PasidEntry>> entries() const;
  // Drops the cached copy of one entry (a PASID-cache invalidation): the next request
  // reads the table again.
  void invalidate_cached(uint32_t pasid) const;

 private:
  PasidCache& cache_;
  const uint32_t id_;  // the cache tag: unique for the daemon's life, never reused
  mutable std::mutex mutex_;
  std::map<uint32_t, PasidEntry> entries_;
};

}  // namespace ioasid::iommu
