// SPDX-License-Identifier: MIT
// Iommu::translate: the request path of the emulated IOMMU.
#include "iommu/iommu.h"
#include "pgtable/first_level_walk.h"
#include "pgtable/walk.h"

#include <linux/ioasid.h>

#include <algorithm>
#include <bit>

namespace ioasid::iommu {
namespace {

// What a translation of `covered` bytes from iova hands the requester: the rest of the
// page always, and further only as far as the request reaches.
uint64_t handed_out(uint64_t covered, uint64_t iova, uint8_t page_shift, uint64_t length) {
  const uint64_t page_size = 1ull << page_shift;
  return std::min(covered, std::max(page_size - (iova & (page_size - 1)), length));
}

Translated pass_through(uint64_t iova, uint32_t ioasid) {
  return Translated{iova, kPageSize - (iova & (kPageSize - 1)), ioasid};
}

// Faults a PASID entry gives before any table is read.
std::optional<TranslationFault> entry_fault(const PasidEntry& entry, uint64_t iova, uint64_t last_iova) {
  if (entry.type == TranslationType::kNested && entry.first_level_levels == 0)
    return TranslationFault{.reason = IOASID_FAULT_REASON_BAD_PASID_ENTRY, .ioasid = entry.ioasid};
  // A nested walk checks the guest's (canonical) addresses itself.
  if (entry.type != TranslationType::kNested && iova > last_iova)
    return TranslationFault{.reason = IOASID_FAULT_REASON_OOR_ADDRESS, .ioasid = entry.ioasid};
  return std::nullopt;
}

// The domain whose second-level table the walk reads (and whose dirty tracking
// applies): the entry's own, or a nested entry's parent's.
uint16_t second_level_domain(const PasidEntry& entry) {
  return entry.type == TranslationType::kNested ? entry.second_level_domain : entry.domain;
}

}  // namespace

pgtable::WalkResult Iommu::walk(const PasidEntry& entry, const DmaRequest& request) {
  const auto second_level_updates = dirty_tracking(second_level_domain(entry)) ? pgtable::AccessedDirty::kUpdate
                                                                               : pgtable::AccessedDirty::kLeave;
  if (entry.type == TranslationType::kSecondLevel)
    return pgtable::walk_second_level(memory_, entry.root, entry.levels, request.iova, request.access,
                                      second_level_updates, request.length);
  // Nested walks go page by page: each leaf's output GPA needs its own second-level
  // walk, and the runs that matter (a VMM's or a daemon client's DMA) are second-level.
  const pgtable::SecondLevelGpaTranslation second_level{&memory_, entry.root, entry.levels, second_level_updates};
  const pgtable::GpaTranslator to_host(second_level);
  const pgtable::FirstLevelConfig config{.root = entry.first_level_root,
                                         .levels = entry.first_level_levels,
                                         .supervisor_requests = (entry.first_level_flags & IOASID_VTD_FL_SRE) != 0,
                                         .write_protect = (entry.first_level_flags & IOASID_VTD_FL_WPE) != 0,
                                         .extended_accessed = (entry.first_level_flags & IOASID_VTD_FL_EAFE) != 0};
  return pgtable::walk_first_level(memory_, config, request.iova, request.access, request.privileged, &to_host);
}

TranslateResult Iommu::translate(const PasidTable& table, const DmaRequest& request, Iotlb* device_tlb) {
  auto entry = table.translate_lookup(request.pasid);
  if (!entry) return TranslationFault{.reason = IOASID_FAULT_REASON_PASID_INVALID};
  const uint64_t iova = request.iova;
  if (auto fault = entry_fault(*entry, iova, last_iova())) return *fault;
  if (entry->type == TranslationType::kPassThrough) return pass_through(iova, entry->ioasid);

  // Cached rights are a user request's: a privileged request through a guest's table
  // (U/S, SRE and WPE decide) always walks.
  const bool cacheable = !(request.privileged && entry->type == TranslationType::kNested);
  const uint8_t required = permission_bits(request.access);
  if (device_tlb && cacheable)
    if (auto hit = device_tlb->lookup(entry->domain, request.pasid, iova, required))
      return Translated{hit->hpa, handed_out(hit->contiguous, iova, hit->page_shift, request.length), entry->ioasid};
  const uint64_t device_epoch = device_tlb ? device_tlb->epoch() : 0;
  auto cached = cacheable ? iotlb_.lookup(entry->domain, request.pasid, iova, required) : std::nullopt;
  const uint64_t epoch = iotlb_.epoch();
  // The translation of iova's page and of the pages of its run after it.
  uint8_t shift = 0;
  uint8_t rights = 0;
  Hpa page_hpa = 0;
  uint64_t pages = 1;
  if (cached) {
    shift = cached->page_shift;
    rights = cached->permissions;
    page_hpa = cached->hpa & ~((1ull << shift) - 1);
    pages = ((cached->hpa - page_hpa) + cached->contiguous) >> shift;
  } else {
    // Re-read inside the guard: the entry read before it may point at a table that
    // was freed meanwhile.
    const auto guard = memory_.guard_walk();
    entry = table.translate_lookup(request.pasid);
    if (!entry) return TranslationFault{.reason = IOASID_FAULT_REASON_PASID_INVALID};
    if (auto fault = entry_fault(*entry, iova, last_iova())) return *fault;
    if (entry->type == TranslationType::kPassThrough) return pass_through(iova, entry->ioasid);
    const auto result = walk(*entry, request);
    if (!result.ok())
      return TranslationFault{.reason = result.fault().reason,
                              .ioasid = entry->ioasid,
                              .fetch_address = result.fault().fetch_address,
                              .second_stage_gpa = result.fault().second_stage ? std::optional(result.fault().gpa)
                                                                              : std::nullopt};
    const auto& found = result.translation();
    shift = static_cast<uint8_t>(std::countr_zero(found.page_size));
    rights = permission_bits({found.permissions.read, found.permissions.write, found.permissions.exec});
    // With dirty tracking a read must not cache write rights: the first write has to
    // walk, and so set D.
    if (!request.access.write && (dirty_tracking(second_level_domain(*entry)) || entry->type == TranslationType::kNested))
      rights &= static_cast<uint8_t>(~kPermWrite);
    page_hpa = found.hpa & ~(found.page_size - 1);
    pages = found.leaves;
    if (cacheable)
      iotlb_.fill_if_current(epoch, entry->domain, request.pasid, iova, shift, page_hpa, rights, pages);
  }
  if (device_tlb && cacheable)
    device_tlb->fill_if_current(device_epoch, entry->domain, request.pasid, iova, shift, page_hpa, rights, pages);
  const uint64_t offset = iova & ((1ull << shift) - 1);
  return Translated{page_hpa + offset, handed_out((pages << shift) - offset, iova, shift, request.length),
                    entry->ioasid};
}

}  // namespace ioasid::iommu
