#include "devices/dma_function.h"

#include <linux/ioasid.h>

#include <algorithm>

namespace ioasid::devices {

DmaOutcome run_dma(iommu::Iommu& iommu, const iommu::PasidTable& table, iommu::Iotlb* device_tlb,
                   const DmaTransfer& transfer) {
  DmaOutcome outcome;
  const pgtable::Access access{.read = !transfer.to_memory, .write = transfer.to_memory};
  while (outcome.bytes_done < transfer.data.size()) {
    const uint64_t iova = transfer.iova + outcome.bytes_done;
    const auto translated = iommu.translate(table, {.pasid = transfer.pasid, .iova = iova, .access = access},
                                            device_tlb);
    if (!translated.ok()) {
      const auto& fault = translated.fault();
      outcome.fault = DmaFault{iova, fault.reason, fault.ioasid, fault.fetch_address};
      return outcome;
    }
    const auto& target = translated.translated();
    const size_t chunk = std::min<uint64_t>(target.contiguous, transfer.data.size() - outcome.bytes_done);
    const auto piece = transfer.data.subspan(outcome.bytes_done, chunk);
    size_t moved = 0;
    const auto copied = transfer.to_memory ? iommu.memory().write(target.hpa, piece, &moved)
                                           : iommu.memory().read(target.hpa, piece, &moved);
    outcome.bytes_done += moved;
    if (!copied) {
      // The translation held but the memory behind it is gone: the client that pinned
      // it unmapped it, truncated its file or exited.
      outcome.fault = DmaFault{transfer.iova + outcome.bytes_done, IOASID_FAULT_REASON_UNKNOWN, target.ioasid, {}};
      return outcome;
    }
  }
  return outcome;
}

}  // namespace ioasid::devices
