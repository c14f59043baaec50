// SPDX-License-Identifier: MIT
// The emulated IOMMU unit: the HPA space its walkers read, its IOTLB and PASID cache,
// the device-TLBs of ATS devices it must flush, the pinned-page accounting of what is
// mapped through it, its domain ids (the IOTLB tags one per I/O page table) and their
// dirty-tracking state. translate() is the hardware's request path.
#pragma once

#include "base/subscription.h"
#include "iommu/ats.h"
#include "iommu/iotlb.h"
#include "iommu/pasid_cache.h"
#include "iommu/pasid_table.h"
#include "iommu/translation.h"
#include "memory/hpa_space.h"
#include "memory/pin_accounting.h"
#include "pgtable/walk.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ioasid::iommu {

struct IommuConfig {
  uint32_t addr_width = 48;  // 48: 4-level tables, 57: 5-level
  uint64_t pin_limit_pages = PinAccounting::kDefaultLimitPages;  // per user; 0 = none
  size_t iotlb_entries = 4096;
  size_t pasid_cache_entries = 1024;
  uint64_t max_table_pages = HpaSpace::kDefaultMaxTablePages;
};

class Iommu;

// A domain id held for the life of an address space: freed (and its IOTLB entries
// flushed) when the holder goes.
class Domain {
 public:
  Domain() = default;
  Domain(Iommu& iommu, uint16_t id) : iommu_(&iommu), id_(id) {}
  Domain(Domain&& other) noexcept : iommu_(std::exchange(other.iommu_, nullptr)), id_(other.id_) {}
  Domain& operator=(Domain&&) = delete;
  ~Domain();
  uint16_t id() const { return id_; }

 private:
  Iommu* iommu_ = nullptr;
  uint16_t id_ = 0;
};

class Iommu {
 public:
  using DeviceTlbRegistration = ScopedSubscription<Iommu>;

  explicit Iommu(IommuConfig config = {});
  Iommu(const Iommu&) = delete;
  Iommu& operator=(const Iommu&) = delete;

  HpaSpace& memory() { return memory_; }
  Iotlb& iotlb() { return iotlb_; }
  PasidCache& pasid_cache() { return pasid_cache_; }
  PinAccounting& pins() { return pins_; }
  int levels() const { return config_.addr_width >= 57 ? 5 : 4; }
  uint64_t last_iova() const { return config_.addr_width >= 64 ? ~0ull : (1ull << config_.addr_width) - 1; }

  // Domain ids 1..65535 (0 is never used). ENOSPC when all are taken.
  Result<uint16_t> allocate_domain();
  void free_domain(uint16_t domain);
  size_t domains_in_use() const;
  Result<Domain> make_domain();

  // Second-level A/D updates (SSADE) for every request translated in the domain.
  void set_dirty_tracking(uint16_t domain, bool enabled);
  bool dirty_tracking(uint16_t domain) const;

  // The request path: the PASID entry (PASID cache, else the table), then the
  // device-TLB when the device has one (ATS), the IOTLB, else a walk that fills both.
  TranslateResult translate(const PasidTable& table, const DmaRequest& request, Iotlb* device_tlb = nullptr);

  // A device-TLB the daemon's own flushes must reach, until the registration ends.
  DeviceTlbRegistration register_device_tlb(Iotlb& device_tlb);
  // A file's ATS holder, whose devices' ATCs the same flushes reach (ats.h).
  DeviceTlbRegistration register_ats_holder(AtsHolder& holder);
  // Flushes for changes the daemon makes itself (MAP/UNMAP, attach/detach, dirty
  // clear): the IOTLB and every device-TLB, synchronously, and an invalidation
  // request to every ATS holder whose records they hit.
  void flush_domain(uint16_t domain);
  void flush_pasid(uint16_t domain, uint32_t pasid);
  void flush_range(uint16_t domain, uint64_t iova, uint64_t length);

 private:
  friend DeviceTlbRegistration;
  void unsubscribe(uint64_t id);
  // The walk a PASID entry asks for: second level, or the guest's first level nested
  // over its parent's second level.
  pgtable::WalkResult walk(const PasidEntry& entry, const DmaRequest& request);
  // The device-TLBs, then the ATS holders' records of `domain` (at `pasid` when given)
  // over [iova, iova + length).
  template <typename Flush>
  void flush_device_tlbs(Flush flush, std::optional<uint32_t> pasid, uint64_t iova, uint64_t length,
                         uint16_t domain);
  static constexpr uint64_t kWholeSpace = ~0ull;

  IommuConfig config_;
  HpaSpace memory_;
  Iotlb iotlb_;
  PasidCache pasid_cache_;
  PinAccounting pins_;
  mutable std::mutex domains_mutex_;
  std::vector<bool> domains_in_use_;
  uint16_t next_domain_ = 1;
  std::unique_ptr<std::atomic<bool>[]> dirty_tracking_;
  std::mutex device_tlbs_mutex_;
  std::map<uint64_t, Iotlb*> device_tlbs_;
  std::map<uint64_t, AtsHolder*> ats_holders_;  // under device_tlbs_mutex_, ids from next_device_tlb_
  uint64_t next_device_tlb_ = 1;
};

}  // namespace ioasid::iommu
