// SPDX-License-Identifier: MIT
// The first-level (x86-64) hardware walker, alone or nested over a second level: what
// VT-d scalable mode does for a request-with-PASID whose PASID entry says first-level
// (PGTT 001b) or nested (PGTT 011b) translation. Entry format: first_level_format.h.
//
// Nested (guest SVA): a guest builds first-level tables in its RAM, so the root and
// every table pointer are guest-physical addresses (GPAs); the second-level table of
// the parent IOASID translates GPA -> HPA. The caller passes that translation as a
// GpaTranslator. Without one (to_host == nullptr) GPAs are HPAs: first-level only, for
// tables that live in daemon (or client) memory as they are (native SVA).
//
// The walk, for a request at `address` with `access`, made by a privileged
// (supervisor) or unprivileged (user) requester:
//   1. levels not 4/5, or `address` not canonical for the width (48 or 57 bits: the
//      bits above must copy the top bit) -> OOR_ADDRESS, no fetch address.
//   2. privileged request and the PASID entry's SRE off -> PERMISSION, level 0, no
//      fetch address (VT-d blocks supervisor requests before walking).
//   3. For each level from the root down: the entry's GPA (table + index * 8) is
//      translated with a read access; a second-level fault is reported with its own
//      reason, the first-level level and fetch_address = the GPA of that first-level
//      entry, second_stage = true, gpa = that GPA. Reading the entry at the HPA fails -> PTE_FETCH;
//      P=0 -> ACCESS; PS in a PML4E/PML5E, or reserved frame bits in a 2M/1G leaf ->
//      PTE_FETCH (fetch_address the entry's GPA, second_stage false).
//   4. At the leaf, the rights accumulated over every level (R/W, U/S, XD) decide:
//        user request:        U/S=1 at every level, else PERMISSION; a write needs
//                             R/W=1 at every level; an execute needs XD=0 at every level
//        supervisor request:  reads anything; a write needs R/W=1 at every level
//                             unless WPE is off (then R/W is ignored, as with CR0.WP=0);
//                             an execute needs XD=0 at every level and a supervisor page
//                             (U/S=0 at some level): VT-d behaves as with CR4.SMEP=1.
//                             There is no SMAP: supervisor data accesses to user pages
//                             are allowed.
//      A refusal is PERMISSION at the leaf (fetch_address = the leaf's GPA).
//   5. The output GPA (frame + offset) is translated with the request's own access; a
//      fault is reported as the second level gave it (its reason, level and
//      fetch_address, an HPA of a second-level entry), second_stage = true, gpa = the
//      output GPA (byte-exact).
//   6. A/D (first-level A/D is always on, there is no enable): on success A is set in
//      every first-level entry used (with EA, bit 10, when EAFE is on), and D in the
//      leaf for a write, each with compare_exchange64 at the entry's HPA, retried when
//      only A/D/EA changed under it and restarting the walk when anything else did (the
//      code is shared with the second-level walker, walk_engine.h). Nested, an entry
//      that needs an update has its GPA translated again with read+write access first,
//      so the second level sees (and dirty-tracks) the write; if it refuses (a guest
//      table mapped read-only in the second level) the walk fails with the second
//      level's fault (PERMISSION for a read-only mapping), fetch_address = the GPA of
//      the first-level entry, second_stage = true, gpa = that GPA; nothing is set in that entry. A
//      compare-and-swap that fails (memory error) -> WALK_EABT at that entry's GPA.
//      Entries already carrying the bits cost no translation and no write.
//
// The Translation: hpa = the second level's output; page_size = the smaller of the
// first-level leaf's size and the second-level leaf's (an IOTLB entry never covers
// more than either stage maps); level = the first-level leaf's level; permissions =
// the first-level rights of this requester (read, write as in 4., exec) intersected
// with the second level's; snoop = the second level's (false without one); leaf_entry
// = the HPA of the first-level leaf entry.
//
// fetch_address in a first-level fault is the entry's GPA (its HPA without to_host):
// the address the guest knows its table by, which is what a vIOMMU reports.
#pragma once

#include "memory/physical_memory.h"
#include "pgtable/access.h"
#include "pgtable/walk.h"

#include <concepts>
#include <cstdint>
#include <type_traits>

namespace ioasid::pgtable {

// What the PASID entry says about the first-level table.
struct FirstLevelConfig {
  uint64_t root = 0;                 // GPA (HPA when not nested) of the PML4 or PML5 table;
                                     // bits 11:0 and 63:52 are ignored
  int levels = 4;                    // 4 (48-bit addresses) or 5 (57-bit)
  bool supervisor_requests = false;  // SRE: privileged requests allowed
  bool write_protect = false;        // WPE: supervisor writes honour R/W
  bool extended_accessed = false;    // EAFE: set EA (bit 10) along with A
};

// GPA -> HPA for a nested walk: a non-owning reference to a callable
// `WalkResult(uint64_t gpa, Access access)` (typically walk_second_level() on the
// parent IOASID's table). No allocation, one indirect call per use. The callable must
// outlive the GpaTranslator; a temporary is refused at compile time.
class GpaTranslator {
 public:
  template <typename F>
    requires(!std::same_as<std::remove_cv_t<F>, GpaTranslator> &&
             std::is_invocable_r_v<WalkResult, F&, uint64_t, Access>)
  GpaTranslator(F& callable)  // NOLINT: implicit on purpose
      : object_(const_cast<void*>(static_cast<const void*>(&callable))),
        call_([](void* object, uint64_t gpa, Access access) -> WalkResult {
          return (*static_cast<F*>(object))(gpa, access);
        }) {}

  WalkResult operator()(uint64_t gpa, Access access) const { return call_(object_, gpa, access); }

 private:
  void* object_;
  WalkResult (*call_)(void*, uint64_t, Access);
};

// The usual GpaTranslator target: a walk of a second-level table.
struct SecondLevelGpaTranslation {
  PhysicalMemory* memory = nullptr;
  Hpa root = 0;
  int levels = 4;
  AccessedDirty accessed_dirty = AccessedDirty::kLeave;

  WalkResult operator()(uint64_t gpa, Access access) const {
    return walk_second_level(*memory, root, levels, gpa, access, accessed_dirty);
  }
};

// Translates `address` through the first-level table `config` describes (see above).
// `privileged`: the request asks for supervisor privilege (PCIe PASID prefix PMR).
// `to_host`: GPA -> HPA for every table and the output, or nullptr (GPAs are HPAs).
WalkResult walk_first_level(PhysicalMemory& memory, const FirstLevelConfig& config, uint64_t address,
                            Access access, bool privileged, const GpaTranslator* to_host);

}  // namespace ioasid::pgtable
