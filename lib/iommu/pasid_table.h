// A device's scalable-mode PASID table as the IOMMU walks it: for each PASID (and the
// RID's own requests, at RID_PASID 0) the second-level table a request translates
// through and the domain id its IOTLB entries carry.
#pragma once

#include "memory/physical_memory.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ioasid::iommu {

struct PasidEntry {
  uint32_t ioasid;  // the owner's id of the I/O address space
  uint16_t domain;
  Hpa root;
  int levels;
};

class PasidTable {
 public:
  std::optional<PasidEntry> lookup(uint32_t pasid) const;
  // Sets the entry; returns what it replaced.
  std::optional<PasidEntry> set(uint32_t pasid, PasidEntry entry);
  std::optional<PasidEntry> clear(uint32_t pasid);
  std::vector<std::pair<uint32_t, PasidEntry>> entries() const;

 private:
  mutable std::mutex mutex_;
  std::map<uint32_t, PasidEntry> entries_;
};

}  // namespace ioasid::iommu
