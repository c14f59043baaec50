// SPDX-License-Identifier: MIT
// The hardware page walker. It needs no table object: given the memory, a root HPA
// and the number of levels, it reads entries only with PhysicalMemory::read64 at
// their HPA, exactly as the IOMMU's walker does, and sets A/D with compare-and-swap.
// The IOMMU calls it for every IOTLB miss.
//
// Faults carry the uAPI reason codes (IOASID_FAULT_REASON_*):
//   OOR_ADDRESS  the IOVA is beyond the table's width (48 or 57 bits), or the level
//                count is not one the format has
//   PTE_FETCH    an entry could not be used: reading it failed (its table page is at
//                an HPA nothing backs — VT-d's "access to a paging entry resulted in
//                an error"), or it has a reserved field set
//   ACCESS       an entry on the way is not present
//   PERMISSION   the leaf was reached but the rights granted along the walk (the
//                intersection of every level's) do not cover the access
//   WALK_EABT    setting A/D in an entry failed (the update aborted)
// fetch_address is the HPA of the entry the walk stopped at, when there is one.
//
// The first-level (x86) walker, walk_first_level() in first_level_walk.h, shares these
// types and the walk loop (walk_engine.h). A nested walk translates through both
// stages; its faults say which stage faulted (WalkFault::second_stage) and name GPAs
// where the first-level entry is in guest memory (see first_level_walk.h).
#pragma once

#include "memory/physical_memory.h"
#include "pgtable/access.h"

#include <cstdint>
#include <optional>
#include <variant>

namespace ioasid::pgtable {

struct Translation {
  Hpa hpa = 0;             // the HPA the IOVA translates to (frame plus page offset)
  uint64_t page_size = 0;  // 4K, 2M or 1G: what an IOTLB entry may cover. Nested: the
                           // smaller of the two stages' leaf sizes
  int level = 0;           // the level of the leaf (1, 2 or 3); nested: the first-level leaf's
  Permissions permissions;  // the effective rights: intersection of every level's (and
                            // nested, of both stages')
  bool snoop = false;
  Hpa leaf_entry = 0;  // the HPA of the leaf entry (nested: of the first-level leaf, in guest RAM)
  // A run (walk_second_level() asked for more than one page): this many leaves of
  // page_size from the one of `hpa`, each the next frame, with the same rights, and
  // A/D set as on the first. 1 otherwise.
  uint64_t leaves = 1;
};

struct WalkFault {
  uint32_t reason = 0;  // IOASID_FAULT_REASON_*
  int level = 0;        // the level of the entry at fault; 0 when there is none
  std::optional<Hpa> fetch_address;
  // Nested walks only: the fault is the second stage's (the GPA -> HPA table refused a
  // first-level entry's GPA or the final GPA). Always false for walk_second_level().
  bool second_stage = false;
  // With second_stage: the GPA the second level refused (a first-level entry's, or the
  // final one, byte-exact).
  uint64_t gpa = 0;
};

class WalkResult {
 public:
  WalkResult(const Translation& translation) : outcome_(translation) {}  // NOLINT: implicit on purpose
  WalkResult(const WalkFault& fault) : outcome_(fault) {}                // NOLINT

  bool ok() const { return outcome_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const Translation& translation() const { return std::get<Translation>(outcome_); }
  const WalkFault& fault() const { return std::get<WalkFault>(outcome_); }

 private:
  std::variant<Translation, WalkFault> outcome_;
};

// Hardware updates A/D only when second-level A/D is enabled (SSADE): the caller says.
enum class AccessedDirty : bool { kLeave = false, kUpdate = true };

// Translates `iova` through the second-level table at `root`. With kUpdate, a
// successful walk sets A in every entry it used and D in the leaf for a write.
// `length`: the bytes from iova the request reaches. When its leaf is a 4 KiB page and
// the request goes past it, the walk also hands out the leaves after it in the same
// leaf table, as far as the request reaches, while each maps the next frame with the
// same rights and attributes (Translation::leaves), setting A/D on each as on the
// first; it stops before the first one that does not (not present, other rights, not
// the next frame), which the next walk reports. Superpages need no runs: one
// translation already covers 2 MiB or 1 GiB.
WalkResult walk_second_level(PhysicalMemory& memory, Hpa root, int levels, uint64_t iova, Access access,
                             AccessedDirty accessed_dirty = AccessedDirty::kLeave, uint64_t length = 1);

}  // namespace ioasid::pgtable
