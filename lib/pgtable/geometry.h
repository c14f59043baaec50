// SPDX-License-Identifier: MIT
// The radix geometry VT-d shares with x86 paging, whatever the entry format: 4 KiB
// table pages of 512 eight-byte entries, 9 IOVA bits per level, 4 levels (48-bit
// IOVAs) or 5 levels (57-bit IOVAs). Levels are numbered as the VT-d spec names them:
// 1 is the page table (4 KiB leaves), 2 the page directory (2 MiB leaves), 3 the
// page-directory-pointer table (1 GiB leaves), 4 the PML4, 5 the PML5.
#pragma once

#include "memory/physical_memory.h"

#include <cstdint>

namespace ioasid::pgtable {

inline constexpr int kBitsPerLevel = 9;
inline constexpr uint64_t kEntriesPerTable = 1ull << kBitsPerLevel;
inline constexpr uint64_t kEntrySize = sizeof(uint64_t);
inline constexpr uint64_t kTableSize = kEntriesPerTable * kEntrySize;
static_assert(kTableSize == kPageSize, "a table is exactly one 4 KiB page");

inline constexpr int kFourLevels = 4;
inline constexpr int kFiveLevels = 5;

inline constexpr uint64_t kPageSize4K = 1ull << 12;
inline constexpr uint64_t kPageSize2M = 1ull << 21;
inline constexpr uint64_t kPageSize1G = 1ull << 30;

constexpr bool is_supported_levels(int levels) { return levels == kFourLevels || levels == kFiveLevels; }

// Bits of IOVA a table of `levels` levels translates: 48 or 57.
constexpr int address_width(int levels) { return static_cast<int>(kPageShift) + kBitsPerLevel * levels; }

// One past the highest IOVA a table of `levels` levels translates.
constexpr uint64_t address_limit(int levels) { return 1ull << address_width(levels); }

constexpr int level_shift(int level) { return static_cast<int>(kPageShift) + kBitsPerLevel * (level - 1); }

// The IOVA span one entry of a table at `level` covers (4K, 2M, 1G, 512G, 256T).
constexpr uint64_t level_span(int level) { return 1ull << level_shift(level); }

constexpr uint64_t level_index(uint64_t iova, int level) {
  return (iova >> level_shift(level)) & (kEntriesPerTable - 1);
}

// The HPA of the entry that translates `iova` in the table at `table` of `level`.
constexpr Hpa entry_address(Hpa table, uint64_t iova, int level) {
  return table + level_index(iova, level) * kEntrySize;
}

constexpr uint64_t align_down(uint64_t value, uint64_t alignment) { return value & ~(alignment - 1); }
constexpr bool is_aligned(uint64_t value, uint64_t alignment) { return (value & (alignment - 1)) == 0; }
constexpr bool is_power_of_two(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

}  // namespace ioasid::pgtable
