// SPDX-License-Identifier: MIT
// The `dma` device's engine: it moves bytes between a client's buffer and an IOVA
// range as a PCI function does, through the IOMMU (its device-TLB first when it has
// ATS), and stops at the first fault with everything before it transferred.
//
// It translates the range first, each request asking for the rest of it (so a run of
// contiguous 4 KiB IOPTEs is one translation), merging translations contiguous in HPA
// into runs; the runs are then copied in one vectored call straight between the
// client's buffer and the daemon's mapping of the memory (memfd, shm: one copy), or,
// for memory reached through /proc/<pid>/mem, through a staging buffer.
#pragma once

#include "base/result.h"
#include "iommu/iommu.h"
#include "memory/client_memory.h"

#include <linux/ioasid.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace ioasid::devices {

struct DmaTransfer {
  uint32_t pasid = iommu::kRidPasid;  // kRidPasid: requests without PASID
  uint64_t iova = 0;
  uint64_t length = 0;     // the caller checked that iova + length does not wrap
  bool to_memory = false;  // true: the device writes memory from the buffer; false: reads memory into it
  bool privileged = false;  // supervisor requests (PRIV)
  ClientMemory* buffer_memory = nullptr;
  uint64_t buffer_address = 0;
};

struct DmaFault {
  uint64_t address = 0;  // the IOVA that could not be accessed
  uint32_t reason = 0;   // IOASID_FAULT_REASON_*
  uint32_t ioasid = 0;   // the route's IOASID, 0 when there was none
  std::optional<Hpa> fetch_address;
  std::optional<uint64_t> second_stage_gpa = std::nullopt;  // nested: the parent's table refused this GPA
};

// A range as the device sees it after translation, translations contiguous in HPA
// merged into runs, up to the first byte that would not translate.
struct TranslatedRun {
  uint64_t offset;  // from the start of the range
  HpaRange range;
};
struct TranslatedRange {
  std::vector<TranslatedRun> runs;
  uint64_t bytes = 0;    // leading bytes translated
  uint32_t ioasid = 0;   // the route's IOASID (for faults found past the walk)
  std::optional<DmaFault> fault;  // what stopped it short
};
TranslatedRange translate_range(iommu::Iommu& iommu, const iommu::PasidTable& table, iommu::Iotlb* device_tlb,
                                uint32_t pasid, uint64_t iova, uint64_t length, pgtable::Access access,
                                bool privileged);

// A fault the device's owner can resolve by mapping the page, which a page request
// (PRI) asks for: a missing or too weak translation. Not a nested walk's second-stage
// fault: the guest cannot map what its VMM did not give it (VT-d reports those as
// non-recoverable faults, never as page requests).
inline bool resolvable_by_page_request(const DmaFault& fault) {
  return !fault.second_stage_gpa &&
         (fault.reason == IOASID_FAULT_REASON_ACCESS || fault.reason == IOASID_FAULT_REASON_PERMISSION);
}

struct DmaOutcome {
  uint64_t bytes_done = 0;  // leading bytes transferred
  std::optional<DmaFault> fault;
};

// An error (EFAULT, EPERM) is the client's buffer failing, not the device: bytes
// before it may have been transferred.
Result<DmaOutcome> run_dma(iommu::Iommu& iommu, const iommu::PasidTable& table, iommu::Iotlb* device_tlb,
                           const DmaTransfer& transfer);

}  // namespace ioasid::devices
