// Dirty tracking on a SecondLevelTable: the walker sets D in a leaf on a write (when
// second-level A/D is on); these read it back per page and clear it, racing safely
// with walkers through compare-and-swap.
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

// Clears D in a leaf unless the entry stopped being that leaf meanwhile. A walker may
// set A or D between our read and the swap: then we retry on the fresh value.
Result<void> clear_dirty(PhysicalMemory& memory, const LeafEntry& leaf) {
  using second_level::kAccessedDirtyMask;
  using second_level::kDirty;
  uint64_t current = leaf.value;
  while ((current & kDirty) != 0) {
    uint64_t expected = current;
    auto swapped = memory.compare_exchange64(leaf.entry_address, expected, current & ~kDirty);
    if (!swapped) return std::move(swapped).error();
    if (*swapped) break;
    if ((expected & ~kAccessedDirtyMask) != (leaf.value & ~kAccessedDirtyMask)) break;
    current = expected;
  }
  return success();
}

Result<void> set_dirty(PhysicalMemory& memory, const LeafEntry& leaf) {
  using second_level::kAccessedDirtyMask;
  using second_level::kDirty;
  uint64_t current = leaf.value;
  while ((current & kDirty) == 0) {
    uint64_t expected = current;
    auto swapped = memory.compare_exchange64(leaf.entry_address, expected, current | kDirty);
    if (!swapped) return std::move(swapped).error();
    if (*swapped) break;
    if ((expected & ~kAccessedDirtyMask) != (leaf.value & ~kAccessedDirtyMask)) break;
    current = expected;
  }
  return success();
}

}  // namespace

Result<void> SecondLevelTable::read_and_clear_dirty(uint64_t iova, uint64_t length, uint64_t page_size,
                                                    DirtyRead mode, const DirtyPageCallback& report) {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  IOASID_TRY(check_dirty_range(iova, length, page_size, address_limit()));
  const uint64_t end = iova + length;
  // With pages larger than leaves, several dirty leaves share one page: report it once.
  std::optional<uint64_t> last_reported;
  return for_each_second_level_leaf(*memory_, root_, levels_, iova, end, [&](const LeafEntry& leaf) -> Result<void> {
    if ((leaf.value & second_level::kDirty) == 0) return success();
    const uint64_t first_page = std::max(iova, align_down(leaf.iova, page_size));
    const uint64_t stop = std::min(end, leaf.iova + leaf.size);
    for (uint64_t page = first_page; page < stop; page += page_size) {
      if (last_reported == page) continue;
      report(page);
      last_reported = page;
    }
    const bool wholly_inside = leaf.iova >= iova && leaf.iova + leaf.size <= end;
    if (mode == DirtyRead::kAndClear && wholly_inside) IOASID_TRY(clear_dirty(*memory_, leaf));
    return success();
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
    // Only leaves wholly inside were cleared.
    if (leaf.iova < iova || leaf.iova + leaf.size > end) return success();
    for (uint64_t page = align_down(leaf.iova, page_size); page < leaf.iova + leaf.size; page += page_size) {
      const uint64_t bit = (page - iova) / page_size;
      if (bitmap[bit / kBitsPerWord] & (1ull << (bit % kBitsPerWord))) return set_dirty(*memory_, leaf);
    }
    return success();
  });
}

Result<void> SecondLevelTable::clear_all_dirty() {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  return for_each_second_level_leaf(*memory_, root_, levels_, 0, address_limit(), [&](const LeafEntry& leaf) {
    return clear_dirty(*memory_, leaf);
  });
}

}  // namespace ioasid::pgtable
