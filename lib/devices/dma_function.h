// The `dma` device's engine: it moves bytes between a buffer and an IOVA range as a
// PCI function does, one translation at a time through the IOMMU (its device-TLB
// first when it has ATS), and stops at the first fault with everything before it
// transferred.
#pragma once

#include "iommu/iommu.h"

#include <cstdint>
#include <optional>
#include <span>

namespace ioasid::devices {

struct DmaTransfer {
  uint32_t pasid = iommu::kRidPasid;  // kRidPasid: requests without PASID
  uint64_t iova = 0;
  bool to_memory = false;  // true: the device writes memory from `data`; false: reads memory into it
  std::span<std::byte> data;
};

struct DmaFault {
  uint64_t address = 0;  // the IOVA that could not be accessed
  uint32_t reason = 0;   // IOASID_FAULT_REASON_*
  uint32_t ioasid = 0;   // the route's IOASID, 0 when there was none
  std::optional<Hpa> fetch_address;
};

struct DmaOutcome {
  uint64_t bytes_done = 0;  // leading bytes transferred
  std::optional<DmaFault> fault;
};

// The caller checked that iova + size does not wrap.
DmaOutcome run_dma(iommu::Iommu& iommu, const iommu::PasidTable& table, iommu::Iotlb* device_tlb,
                   const DmaTransfer& transfer);

}  // namespace ioasid::devices
