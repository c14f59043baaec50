// SPDX-License-Identifier: MIT
// The VT-d first-level (first-stage) paging entry: IA-32e (x86-64) 4- and 5-level
// paging as VT-d scalable mode uses it for requests-with-PASID (SVA), per the VT-d
// spec's "Format for First-Stage Paging Entries", the Intel SDM vol. 3 "Formats of
// CR3 and Paging-Structure Entries with 4-Level Paging", and Linux's x86 _PAGE_* bits
// (VT-d shares them with the CPU so that a process's page table can be bound as is):
//
//   bit 0      P     present; every other bit is ignored when it is 0
//   bit 1      R/W   writes allowed (for the whole region this entry controls)
//   bit 2      U/S   user-mode (unprivileged) requests allowed
//   bit 3      PWT   page write-through   } memory type: not modelled (a DMA
//   bit 4      PCD   page cache disable   } here is always coherent)
//   bit 5      A     accessed: hardware sets it in every entry a translation used
//   bit 6      D     dirty (leaves): hardware sets it on a write
//   bit 7      PS    page size: a 2 MiB (level 2) or 1 GiB (level 3) leaf; reserved
//                    (must be 0) in PML4E/PML5E; PAT in a level-1 PTE (ignored here)
//   bit 8      G     global (leaves): ignored by VT-d, kept for the CPU
//   bit 10     EA    extended accessed: set with A when the PASID entry has EAFE
//   bit 12     PAT   in 2 MiB / 1 GiB leaves; the frame address starts above it
//   bits 51:12 ADDR  next table (4 KiB aligned), or the page frame of a leaf. A 2 MiB
//                    leaf's bits 20:13 and a 1 GiB leaf's bits 29:13 are reserved
//   bits 62:52       ignored (protection keys on the CPU; VT-d ignores them)
//   bit 63     XD    execute disable (for the whole region this entry controls)
//
// Unlike the second-level format there is a present bit, and rights accumulate three
// ways: R/W=0 at any level makes a page read-only, U/S=0 at any level makes it a
// supervisor page, XD=1 at any level makes it non-executable. Table pointers written
// by FirstLevelBuilder have R/W=1 and U/S=1 (as Linux writes them) so the leaf decides.
#pragma once

#include "pgtable/geometry.h"

#include <cstdint>

namespace ioasid::pgtable::first_level {

inline constexpr uint64_t kPresent = 1ull << 0;
inline constexpr uint64_t kWritable = 1ull << 1;
inline constexpr uint64_t kUser = 1ull << 2;
inline constexpr uint64_t kWriteThrough = 1ull << 3;
inline constexpr uint64_t kCacheDisable = 1ull << 4;
inline constexpr uint64_t kAccessed = 1ull << 5;
inline constexpr uint64_t kDirty = 1ull << 6;
inline constexpr uint64_t kLargePage = 1ull << 7;  // PS (PAT in a level-1 PTE)
inline constexpr uint64_t kGlobal = 1ull << 8;
inline constexpr uint64_t kExtendedAccessed = 1ull << 10;
inline constexpr uint64_t kLargePagePat = 1ull << 12;
inline constexpr uint64_t kExecuteDisable = 1ull << 63;

inline constexpr int kAddressLowBit = 12;
inline constexpr int kAddressHighBit = 51;
inline constexpr int kMaxOutputAddressBits = kAddressHighBit + 1;
inline constexpr uint64_t kAddressMask =
    ((1ull << (kAddressHighBit + 1)) - 1) & ~((1ull << kAddressLowBit) - 1);

// The bits whose change alone does not make a walk's translation stale.
inline constexpr uint64_t kAccessedDirtyMask = kAccessed | kDirty | kExtendedAccessed;

// Leaves exist at levels 1 (4 KiB), 2 (2 MiB) and 3 (1 GiB).
inline constexpr int kMaxLeafLevel = 3;

constexpr bool is_present(uint64_t entry) { return (entry & kPresent) != 0; }

// A present entry at `level` maps a page rather than pointing to a table.
constexpr bool is_leaf(uint64_t entry, int level) { return level == 1 || (entry & kLargePage) != 0; }

// PS in a PML4E or PML5E is reserved; so are the frame bits of a 2 MiB leaf below
// bit 21 and of a 1 GiB leaf below bit 30, other than PAT (bit 12). Bit 7 of a level-1
// PTE is PAT, not PS.
constexpr bool has_reserved_bits_set(uint64_t entry, int level) {
  if (level == 1 || (entry & kLargePage) == 0) return false;
  if (level > kMaxLeafLevel) return true;
  const uint64_t below_frame = (level_span(level) - 1) & kAddressMask & ~kLargePagePat;
  return (entry & below_frame) != 0;
}

// The next table a non-leaf entry points to.
constexpr uint64_t table_address(uint64_t entry) { return entry & kAddressMask; }

// The frame a leaf at `level` maps (PAT and the reserved bits below it left out).
constexpr uint64_t leaf_frame(uint64_t entry, int level) {
  return entry & kAddressMask & ~(level_span(level) - 1);
}

constexpr bool is_writable(uint64_t entry) { return (entry & kWritable) != 0; }
constexpr bool is_user(uint64_t entry) { return (entry & kUser) != 0; }
constexpr bool is_execute_disabled(uint64_t entry) { return (entry & kExecuteDisable) != 0; }

// Canonical: the bits above the table's width are copies of its top bit (bit 47 with
// 4 levels, bit 56 with 5).
constexpr bool is_canonical(uint64_t address, int levels) {
  const int width = address_width(levels);
  const uint64_t upper = address >> (width - 1);  // the top bit and everything above it
  return upper == 0 || upper == (~0ull >> (width - 1));
}

// A table pointer grants everything: the leaf (or an entry the caller edits) decides.
constexpr uint64_t make_table_pointer(uint64_t table) {
  return (table & kAddressMask) | kPresent | kWritable | kUser;
}

struct LeafFlags {
  bool writable = false;
  bool user = false;
  bool execute_disable = false;
  bool global = false;
};

constexpr uint64_t leaf_attributes(LeafFlags flags) {
  return kPresent | (flags.writable ? kWritable : 0) | (flags.user ? kUser : 0) |
         (flags.execute_disable ? kExecuteDisable : 0) | (flags.global ? kGlobal : 0);
}

constexpr uint64_t make_leaf(uint64_t frame, int level, uint64_t attributes) {
  return (frame & kAddressMask) | attributes | (level > 1 ? kLargePage : 0);
}

}  // namespace ioasid::pgtable::first_level
