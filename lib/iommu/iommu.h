// The emulated IOMMU unit: the HPA space its walkers read, its IOTLB, the pinned-page
// accounting of what is mapped through it, and its domain ids (the IOTLB tags one
// per I/O page table).
#pragma once

#include "iommu/iotlb.h"
#include "memory/hpa_space.h"
#include "memory/pin_accounting.h"

#include <cstdint>
#include <mutex>
#include <vector>

namespace ioasid::iommu {

struct IommuConfig {
  uint32_t addr_width = 48;  // 48: 4-level tables, 57: 5-level
  uint64_t pin_limit_pages = PinAccounting::kDefaultLimitPages;  // per user; 0 = none
  size_t iotlb_entries = 4096;
  uint64_t max_table_pages = HpaSpace::kDefaultMaxTablePages;
};

class Iommu {
 public:
  explicit Iommu(IommuConfig config = {});
  Iommu(const Iommu&) = delete;
  Iommu& operator=(const Iommu&) = delete;

  HpaSpace& memory() { return memory_; }
  Iotlb& iotlb() { return iotlb_; }
  PinAccounting& pins() { return pins_; }
  int levels() const { return config_.addr_width >= 57 ? 5 : 4; }
  uint64_t last_iova() const { return config_.addr_width >= 64 ? ~0ull : (1ull << config_.addr_width) - 1; }

  // Domain ids 1..65535 (0 is never used). ENOSPC when all are taken.
  Result<uint16_t> allocate_domain();
  void free_domain(uint16_t domain);

 private:
  IommuConfig config_;
  HpaSpace memory_;
  Iotlb iotlb_;
  PinAccounting pins_;
  std::mutex domains_mutex_;
  std::vector<bool> domains_in_use_;
  uint16_t next_domain_ = 1;
};

}  // namespace ioasid::iommu
