// SPDX-License-Identifier: MIT
// The VT-d second-level (second-stage) paging entry, as in the VT-d spec's "Format for
// Second-Stage Paging Entries" (scalable mode) and Linux's drivers/iommu/intel
// DMA_PTE_* / DMA_SL_PTE_DIRTY:
//
//   bit 0      R     read allowed (for the whole region this entry controls)
//   bit 1      W     write allowed
//   bit 2      X     execute allowed (only honoured with ERS and SSEE; optional)
//   bits 5:3   EMT   extended memory type (leaves; only with EMTE)
//   bit 6      IPAT  ignore PAT (leaves; only with EMTE)
//   bit 7      PS    page size: a 2 MiB (level 2) or 1 GiB (level 3) leaf; reserved
//                    (must be 0) in PML4E/PML5E; ignored in level-1 entries
//   bit 8      A     accessed (hardware sets it when SSADE is on)
//   bit 9      D     dirty (leaves; hardware sets it on writes when SSADE is on)
//   bit 11     SNP   snoop: the access snoops CPU caches (leaves)
//   bits 51:12 ADDR  next table, or the page frame of a leaf
//   bits 61:52       ignored by the hardware, free for software. The daemon keeps
//                    two of them in leaves, D0 (52) and D1 (53): the lower / upper
//                    half of the leaf is dirty, for a driver whose IOPTE is half a
//                    leaf (see SecondLevelTable::mark_half_dirty). The walker never
//                    sets them; its D means the whole leaf, both halves.
//
// There is no present bit: an entry with R and W both 0 is not present, whatever
// its other bits say. The daemon writes table pointers with R, W and X all set so
// that the leaf alone decides the rights.
#pragma once

#include "pgtable/access.h"
#include "pgtable/geometry.h"

#include <cstdint>

namespace ioasid::pgtable::second_level {

inline constexpr uint64_t kRead = 1ull << 0;
inline constexpr uint64_t kWrite = 1ull << 1;
inline constexpr uint64_t kExecute = 1ull << 2;
inline constexpr int kMemoryTypeShift = 3;
inline constexpr uint64_t kMemoryTypeMask = 0x7ull << kMemoryTypeShift;
inline constexpr uint64_t kIgnorePat = 1ull << 6;
inline constexpr uint64_t kLargePage = 1ull << 7;
inline constexpr uint64_t kAccessed = 1ull << 8;
inline constexpr uint64_t kDirty = 1ull << 9;
inline constexpr uint64_t kSnoop = 1ull << 11;

inline constexpr int kAddressLowBit = 12;
inline constexpr int kAddressHighBit = 51;
inline constexpr int kMaxOutputAddressBits = kAddressHighBit + 1;
inline constexpr uint64_t kAddressMask =
    ((1ull << (kAddressHighBit + 1)) - 1) & ~((1ull << kAddressLowBit) - 1);

inline constexpr uint64_t kPresentMask = kRead | kWrite;
inline constexpr uint64_t kPermissionMask = kRead | kWrite | kExecute;
inline constexpr uint64_t kAccessedDirtyMask = kAccessed | kDirty;
// Software (ignored) bits 52 and 53 of a leaf: its lower / upper half is dirty.
inline constexpr uint64_t kHalfDirtyLow = 1ull << 52;
inline constexpr uint64_t kHalfDirtyHigh = 1ull << 53;
inline constexpr uint64_t kHalfDirtyMask = kHalfDirtyLow | kHalfDirtyHigh;
// The bits whose change alone leaves an entry the same translation: what the walker
// and the dirty reader may race on with compare-and-swap.
inline constexpr uint64_t kDirtyStateMask = kAccessedDirtyMask | kHalfDirtyMask;

// Leaves exist at levels 1 (4 KiB), 2 (2 MiB) and 3 (1 GiB).
inline constexpr int kMaxLeafLevel = 3;

constexpr bool is_present(uint64_t entry) { return (entry & kPresentMask) != 0; }

// A present entry at `level` maps a page rather than pointing to a table.
constexpr bool is_leaf(uint64_t entry, int level) { return level == 1 || (entry & kLargePage) != 0; }

// PS in an entry above level 3 is reserved; a large leaf's frame must be aligned to
// its size (the address bits below it are reserved).
constexpr bool has_reserved_bits_set(uint64_t entry, int level) {
  if (level == 1) return false;
  if ((entry & kLargePage) == 0) return false;
  if (level > kMaxLeafLevel) return true;
  return !is_aligned(entry & kAddressMask, level_span(level));
}

constexpr Hpa output_address(uint64_t entry) { return entry & kAddressMask; }

constexpr Permissions permissions_of(uint64_t entry) {
  return {(entry & kRead) != 0, (entry & kWrite) != 0, (entry & kExecute) != 0};
}

constexpr uint64_t permission_bits(Permissions permissions) {
  return (permissions.read ? kRead : 0) | (permissions.write ? kWrite : 0) |
         (permissions.exec ? kExecute : 0);
}

constexpr uint64_t make_table_pointer(Hpa table) { return (table & kAddressMask) | kPermissionMask; }

// The attribute bits every leaf of one map() call shares.
constexpr uint64_t leaf_attributes(Permissions permissions, bool snoop) {
  return permission_bits(permissions) | (snoop ? kSnoop : 0);
}

constexpr uint64_t make_leaf(Hpa frame, int level, uint64_t attributes) {
  return (frame & kAddressMask) | attributes | (level > 1 ? kLargePage : 0);
}

}  // namespace ioasid::pgtable::second_level
