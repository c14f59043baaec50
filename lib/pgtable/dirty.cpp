// SPDX-License-Identifier: MIT
// Dirty tracking on a SecondLevelTable: the walker sets D in a leaf on a write (when
// second-level A/D is on), mark_half_dirty sets a software bit for half a leaf; these
// read them back and clear them, racing safely with walkers through compare-and-swap.
#include "pgtable/geometry.h"
#include "pgtable/leaves.h"
#include "pgtable/second_level_format.h"
#include "pgtable/second_level_table.h"

#include <algorithm>
#include <optional>

namespace ioasid::pgtable {
namespace {

Result<void> check_dirty_range(uint64_t iova, uint64_t length, uint64_t page_size, uint64_t limit) {
  if (page_size < kPageSize4K || !is_power_of_two(page_size))
    return fail(EINVAL, "dirty page size {:#x} is not a power of two of at least 4 KiB", page_size);
  if (length == 0) return fail(EINVAL, "empty dirty range at IOVA {:#x}", iova);
  if (!is_aligned(iova | length, page_size))
    return fail(EINVAL, "IOVA {:#x} and length {:#x} are not multiples of the page size {:#x}", iova, length,
                page_size);
  if (iova >= limit || length > limit - iova)
    return fail(EINVAL, "dirty range [{:#x}, +{:#x}) goes beyond the table", iova, length);
  return success();
}

Result<void> check_range(uint64_t iova, uint64_t length, uint64_t limit) {
  if (length == 0) return fail(EINVAL, "empty dirty range at IOVA {:#x}", iova);
  if (iova >= limit || length > limit - iova)
    return fail(EINVAL, "dirty range [{:#x}, +{:#x}) goes beyond the table", iova, length);
  return success();
}

// Changes the dirty-state bits of a leaf (D and the half bits): clears `clear`, sets
// `set`, unless the entry stopped being that leaf meanwhile. A walker may set A or D
// between our read and the swap: then we retry on the fresh value, so a D it set
// after our read (when we saw none) stays unless we clear D ourselves, which we only
// do having seen it set (a walker never sets it twice).
Result<void> update_dirty_bits(PhysicalMemory& memory, const LeafEntry& leaf, uint64_t clear, uint64_t set) {
  using second_level::kDirtyStateMask;
  uint64_t current = leaf.value;
  for (;;) {
    const uint64_t wanted = (current & ~clear) | set;
    if (wanted == current) return success();
    uint64_t expected = current;
    auto swapped = memory.compare_exchange64(leaf.entry_address, expected, wanted);
    if (!swapped) return std::move(swapped).error();
    if (*swapped) return success();
    if ((expected & ~kDirtyStateMask) != (leaf.value & ~kDirtyStateMask)) return success();  // unmapped/remapped
    current = expected;
  }
}

}  // namespace

Result<void> SecondLevelTable::read_and_clear_dirty_ranges(uint64_t iova, uint64_t length, DirtyRead mode,
                                                           const DirtyRangeCallback& report) {
  using second_level::kDirty;
  using second_level::kHalfDirtyHigh;
  using second_level::kHalfDirtyLow;
  using second_level::kHalfDirtyMask;
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  IOASID_TRY(check_range(iova, length, address_limit()));
  const uint64_t end = iova + length;
  const auto inside = [&](uint64_t start, uint64_t size) { return start >= iova && start + size <= end; };
  // Reports [start, start + size) cut to the range; true if it was wholly inside.
  const auto report_part = [&](uint64_t start, uint64_t size) {
    const uint64_t first = std::max(start, iova), stop = std::min(start + size, end);
    if (first < stop) report(first, stop - first);
    return inside(start, size);
  };
  return for_each_second_level_leaf(*memory_, root_, levels_, iova, end, [&](const LeafEntry& leaf) -> Result<void> {
    const uint64_t half = leaf.size / 2;
    uint64_t clear = 0, set = 0;
    if ((leaf.value & kDirty) != 0) {
      // The whole leaf, both halves. Cleared in part, D becomes the bits of the halves
      // not wholly inside: they stay dirty, the others are reported and clean.
      report_part(leaf.iova, leaf.size);
      if (!inside(leaf.iova, half)) set |= kHalfDirtyLow;
      if (!inside(leaf.iova + half, half)) set |= kHalfDirtyHigh;
      if (set != kHalfDirtyMask) clear = kDirty | kHalfDirtyMask;  // else no half read whole: D stays
      else set = 0;
    } else if ((leaf.value & kHalfDirtyMask) != 0) {
      if ((leaf.value & kHalfDirtyLow) != 0 && report_part(leaf.iova, half)) clear |= kHalfDirtyLow;
      if ((leaf.value & kHalfDirtyHigh) != 0 && report_part(leaf.iova + half, half)) clear |= kHalfDirtyHigh;
    }
    if (mode == DirtyRead::kAndClear && clear != 0) IOASID_TRY(update_dirty_bits(*memory_, leaf, clear, set));
    return success();
  });
}

Result<bool> SecondLevelTable::mark_half_dirty(uint64_t iova) {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  IOASID_TRY(check_range(iova, 1, address_limit()));
  bool found = false;
  IOASID_TRY(for_each_second_level_leaf(*memory_, root_, levels_, iova, iova + 1, [&](const LeafEntry& leaf) {
    found = true;
    const bool upper = iova - leaf.iova >= leaf.size / 2;
    return update_dirty_bits(*memory_, leaf, 0, upper ? second_level::kHalfDirtyHigh : second_level::kHalfDirtyLow);
  }));
  return found;
}

Result<void> SecondLevelTable::read_and_clear_dirty(uint64_t iova, uint64_t length, uint64_t page_size,
                                                    DirtyRead mode, const DirtyPageCallback& report) {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  IOASID_TRY(check_dirty_range(iova, length, page_size, address_limit()));
  // With pages larger than leaves (or halves), several dirty parts share one page:
  // report it once. Parts come in IOVA order, each inside the range.
  std::optional<uint64_t> last_reported;
  return read_and_clear_dirty_ranges(iova, length, mode, [&](uint64_t start, uint64_t size) {
    for (uint64_t page = align_down(start, page_size); page < start + size; page += page_size) {
      if (last_reported == page) continue;
      report(page);
      last_reported = page;
    }
  });
}

Result<void> SecondLevelTable::read_and_clear_dirty_bitmap(uint64_t iova, uint64_t length, uint64_t page_size,
                                                           DirtyRead mode, std::span<uint64_t> bitmap) {
  IOASID_TRY(check_dirty_range(iova, length, page_size, address_limit()));
  constexpr uint64_t kBitsPerWord = 64;
  const uint64_t pages = length / page_size;
  const uint64_t words_needed = (pages + kBitsPerWord - 1) / kBitsPerWord;
  if (bitmap.size() < words_needed)
    return fail(EINVAL, "a bitmap of {} words cannot hold {} pages", bitmap.size(), pages);
  return read_and_clear_dirty(iova, length, page_size, mode, [&](uint64_t page_iova) {
    const uint64_t bit = (page_iova - iova) / page_size;
    bitmap[bit / kBitsPerWord] |= 1ull << (bit % kBitsPerWord);
  });
}

Result<void> SecondLevelTable::restore_dirty_bitmap(uint64_t iova, uint64_t length, uint64_t page_size,
                                                    std::span<const uint64_t> bitmap) {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  IOASID_TRY(check_dirty_range(iova, length, page_size, address_limit()));
  constexpr uint64_t kBitsPerWord = 64;
  if (bitmap.size() < (length / page_size + kBitsPerWord - 1) / kBitsPerWord)
    return fail(EINVAL, "a bitmap of {} words cannot hold {} pages", bitmap.size(), length / page_size);
  const uint64_t end = iova + length;
  return for_each_second_level_leaf(*memory_, root_, levels_, iova, end, [&](const LeafEntry& leaf) -> Result<void> {
    // D covers the whole leaf: a superset of what was cleared (the leaf, or a half of it).
    const uint64_t stop = std::min(end, leaf.iova + leaf.size);
    for (uint64_t page = std::max(iova, align_down(leaf.iova, page_size)); page < stop; page += page_size) {
      const uint64_t bit = (page - iova) / page_size;
      if (bitmap[bit / kBitsPerWord] & (1ull << (bit % kBitsPerWord)))
        return update_dirty_bits(*memory_, leaf, 0, second_level::kDirty);
    }
    return success();
  });
}

Result<void> SecondLevelTable::clear_all_dirty() {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  return for_each_second_level_leaf(*memory_, root_, levels_, 0, address_limit(), [&](const LeafEntry& leaf) {
    return update_dirty_bits(*memory_, leaf, second_level::kDirty | second_level::kHalfDirtyMask, 0);
  });
}

}  // namespace ioasid::pgtable
