// SPDX-License-Identifier: MIT
// What a device asks the IOMMU and what it answers: a translated address for one
// access, or a fault with the uAPI reason code.
#pragma once

#include "iommu/iotlb.h"
#include "memory/physical_memory.h"
#include "pgtable/access.h"

#include <cstdint>
#include <optional>
#include <variant>

namespace ioasid::iommu {

struct DmaRequest {
  uint32_t pasid = kRidPasid;  // kRidPasid: a request without PASID (the RID's route)
  uint64_t iova = 0;
  pgtable::Access access;
  bool privileged = false;  // a supervisor request (PRIV): first-level U/S, SRE and WPE apply
  // The bytes from iova the device goes on to access. Past the page of iova, a run of
  // 4 KiB leaves contiguous in HPA (one walk, one IOTLB entry) may translate them at once.
  uint64_t length = 1;
};

struct Translated {
  Hpa hpa = 0;  // the HPA of iova
  // Bytes from hpa one translation covers: the rest of its page, or further, up to the
  // request's length, when a run of pages continues it.
  uint64_t contiguous = 0;
  uint32_t ioasid = 0;
};

struct TranslationFault {
  uint32_t reason = 0;  // IOASID_FAULT_REASON_*
  uint32_t ioasid = 0;  // 0 when no route was found
  std::optional<Hpa> fetch_address;
  // Nested: the parent's second level refused `gpa` (see pgtable::WalkFault). Only the
  // VMM can fix that: it is never a page request.
  std::optional<uint64_t> second_stage_gpa = std::nullopt;
};

class TranslateResult {
 public:
  TranslateResult(const Translated& translated) : outcome_(translated) {}  // NOLINT: implicit on purpose
  TranslateResult(const TranslationFault& fault) : outcome_(fault) {}      // NOLINT
  bool ok() const { return outcome_.index() == 0; }
  const Translated& translated() const { return std::get<Translated>(outcome_); }
  const TranslationFault& fault() const { return std::get<TranslationFault>(outcome_); }

 private:
  std::variant<Translated, TranslationFault> outcome_;
};

constexpr uint8_t permission_bits(const pgtable::Access& access) {
  return static_cast<uint8_t>((access.read ? kPermRead : 0) | (access.write ? kPermWrite : 0) |
                              (access.exec ? kPermExec : 0));
}

}  // namespace ioasid::iommu
