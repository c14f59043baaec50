// Iommu::translate: the request path of the emulated IOMMU.
#include "iommu/iommu.h"
#include "pgtable/walk.h"

#include <linux/ioasid.h>

#include <bit>

namespace ioasid::iommu {
namespace {

Translated from_cache(const IotlbTranslation& hit, uint64_t iova, uint32_t ioasid) {
  const uint64_t page_size = 1ull << hit.page_shift;
  return Translated{hit.hpa, page_size - (iova & (page_size - 1)), ioasid};
}

}  // namespace

TranslateResult Iommu::translate(const PasidTable& table, const DmaRequest& request, Iotlb* device_tlb) {
  auto entry = table.translate_lookup(request.pasid);
  if (!entry) return TranslationFault{.reason = IOASID_FAULT_REASON_PASID_INVALID};
  const uint64_t iova = request.iova;
  if (iova > last_iova())
    return TranslationFault{.reason = IOASID_FAULT_REASON_OOR_ADDRESS, .ioasid = entry->ioasid};
  if (entry->type == TranslationType::kPassThrough)
    return Translated{iova, kPageSize - (iova & (kPageSize - 1)), entry->ioasid};

  const uint8_t required = permission_bits(request.access);
  if (device_tlb)
    if (auto hit = device_tlb->lookup(entry->domain, request.pasid, iova, required))
      return from_cache(*hit, iova, entry->ioasid);
  const uint64_t device_epoch = device_tlb ? device_tlb->epoch() : 0;
  auto cached = iotlb_.lookup(entry->domain, request.pasid, iova, required);
  const uint64_t epoch = iotlb_.epoch();
  uint8_t shift = 0;
  uint8_t rights = 0;
  Hpa page_hpa = 0;
  if (cached) {
    shift = cached->page_shift;
    rights = cached->permissions;
    page_hpa = cached->hpa & ~((1ull << shift) - 1);
  } else {
    // Re-read inside the guard: the entry read before it may point at a table that
    // was freed meanwhile.
    const auto guard = memory_.guard_walk();
    const auto current = table.translate_lookup(request.pasid);
    if (!current) return TranslationFault{.reason = IOASID_FAULT_REASON_PASID_INVALID};
    entry = current;
    if (entry->type == TranslationType::kPassThrough)
      return Translated{iova, kPageSize - (iova & (kPageSize - 1)), entry->ioasid};
    const bool dirty = dirty_tracking(entry->domain);
    const auto walk = pgtable::walk_second_level(memory_, entry->root, entry->levels, iova, request.access,
                                                 dirty ? pgtable::AccessedDirty::kUpdate
                                                       : pgtable::AccessedDirty::kLeave);
    if (!walk.ok())
      return TranslationFault{
          .reason = walk.fault().reason, .ioasid = entry->ioasid, .fetch_address = walk.fault().fetch_address};
    const auto& found = walk.translation();
    shift = static_cast<uint8_t>(std::countr_zero(found.page_size));
    rights = permission_bits({found.permissions.read, found.permissions.write, found.permissions.exec});
    // With dirty tracking a read must not cache write rights: the first write has to
    // walk, and so set D.
    if (dirty && !request.access.write) rights &= static_cast<uint8_t>(~kPermWrite);
    page_hpa = found.hpa & ~(found.page_size - 1);
    iotlb_.fill_if_current(epoch, entry->domain, request.pasid, iova, shift, page_hpa, rights);
  }
  if (device_tlb) device_tlb->fill_if_current(device_epoch, entry->domain, request.pasid, iova, shift, page_hpa, rights);
  const uint64_t page_size = 1ull << shift;
  const uint64_t offset = iova & (page_size - 1);
  return Translated{page_hpa + offset, page_size - offset, entry->ioasid};
}

}  // namespace ioasid::iommu
