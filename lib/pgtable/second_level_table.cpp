// SPDX-License-Identifier: MIT
#include "pgtable/second_level_table.h"

#include "pgtable/geometry.h"
#include "pgtable/second_level_format.h"

#include <linux/ioasid.h>

#include <algorithm>
#include <array>
#include <utility>

namespace ioasid::pgtable {

Result<SecondLevelTable> SecondLevelTable::create(PhysicalMemory& memory, int levels) {
  if (!is_supported_levels(levels)) return fail(EINVAL, "a second-level table has 4 or 5 levels, not {}", levels);
  auto root = memory.alloc_table();
  if (!root) return std::move(root).error();
  return SecondLevelTable(memory, levels, *root);
}

SecondLevelTable::SecondLevelTable(PhysicalMemory& memory, int levels, Hpa root)
    : memory_(&memory), levels_(levels), root_(root) {
  present_entries_.emplace(root, 0);
}

SecondLevelTable::SecondLevelTable(SecondLevelTable&& other) noexcept
    : memory_(std::exchange(other.memory_, nullptr)),
      levels_(other.levels_),
      root_(other.root_),
      present_entries_(std::move(other.present_entries_)) {
  other.present_entries_.clear();
}

SecondLevelTable& SecondLevelTable::operator=(SecondLevelTable&& other) noexcept {
  if (this != &other) {
    destroy();
    memory_ = std::exchange(other.memory_, nullptr);
    levels_ = other.levels_;
    root_ = other.root_;
    present_entries_ = std::move(other.present_entries_);
    other.present_entries_.clear();
  }
  return *this;
}

SecondLevelTable::~SecondLevelTable() { destroy(); }

void SecondLevelTable::destroy() {
  // Every page we own is in the map, so no walk is needed to find them.
  if (memory_ != nullptr)
    for (const auto& [table, present] : present_entries_) memory_->free_table(table);
  present_entries_.clear();
  memory_ = nullptr;
}

uint64_t SecondLevelTable::address_limit() const { return pgtable::address_limit(levels_); }

WalkResult SecondLevelTable::walk(uint64_t iova, Access access, AccessedDirty accessed_dirty) const {
  if (memory_ == nullptr) return WalkFault{IOASID_FAULT_REASON_ACCESS, 0, std::nullopt};
  return walk_second_level(*memory_, root_, levels_, iova, access, accessed_dirty);
}

Result<void> SecondLevelTable::map(uint64_t iova, Hpa hpa, uint64_t length, Permissions permissions, bool snoop,
                                   uint64_t largest_page) {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  if (length == 0) return fail(EINVAL, "an empty mapping at IOVA {:#x}", iova);
  if (!is_aligned(iova | hpa | length, kPageSize4K))
    return fail(EINVAL, "IOVA {:#x}, HPA {:#x} and length {:#x} must be 4 KiB aligned", iova, hpa, length);
  if (!permissions.read && !permissions.write)
    return fail(EINVAL, "a mapping needs read or write: an entry with neither is not present");
  const uint64_t limit = address_limit();
  if (iova >= limit || length > limit - iova)
    return fail(EINVAL, "[{:#x}, +{:#x}) goes beyond the table's {}-bit IOVA width", iova, length,
                address_width(levels_));
  constexpr uint64_t kHpaLimit = 1ull << second_level::kMaxOutputAddressBits;
  if (hpa >= kHpaLimit || length > kHpaLimit - hpa)
    return fail(EINVAL, "HPA range [{:#x}, +{:#x}) goes beyond {} bits", hpa, length,
                second_level::kMaxOutputAddressBits);

  if (largest_page != kPageSize4K && largest_page != kPageSize2M && largest_page != kPageSize1G)
    return fail(EINVAL, "largest page {:#x} is not 4K, 2M or 1G", largest_page);
  MapCursor cursor{iova, hpa, iova + length, second_level::leaf_attributes(permissions, snoop), largest_page};
  auto mapped = map_into(root_, levels_, cursor);
  if (!mapped) roll_back_map(iova, cursor.iova);
  return mapped;
}

// Fills the table at `level` from cursor.iova on, as far as the range and the table's
// span go, placing a leaf wherever one fits and descending (allocating the table if
// needed) wherever one does not. The cursor advances only over leaves written, so on
// an error it points at the first IOVA this call did not map.
Result<void> SecondLevelTable::map_into(Hpa table, int level, MapCursor& cursor) {
  const auto found = present_entries_.find(table);
  if (found == present_entries_.end()) return fail(EFAULT, "HPA {:#x} is not one of this table's pages", table);
  uint32_t& present = found->second;  // stays valid: unordered_map never moves its elements
  const uint64_t span = level_span(level);
  const uint64_t table_span = span * kEntriesPerTable;
  const uint64_t stop = std::min(cursor.end, align_down(cursor.iova, table_span) + table_span);

  while (cursor.iova < stop) {
    const Hpa entry_hpa = entry_address(table, cursor.iova, level);
    auto read = memory_->read64(entry_hpa);
    if (!read) return std::move(read).error();
    const uint64_t entry = *read;

    const bool leaf_fits = level <= second_level::kMaxLeafLevel && span <= cursor.largest_page &&
                           is_aligned(cursor.iova | cursor.hpa, span) &&
                           cursor.end - cursor.iova >= span;
    if (leaf_fits) {
      if (second_level::is_present(entry)) return fail(EEXIST, "IOVA {:#x} is already mapped", cursor.iova);
      IOASID_TRY(memory_->write64(entry_hpa, second_level::make_leaf(cursor.hpa, level, cursor.leaf_attributes)));
      ++present;
      cursor.iova += span;
      cursor.hpa += span;
      continue;
    }

    Hpa child = 0;
    if (!second_level::is_present(entry)) {
      auto allocated = memory_->alloc_table();
      if (!allocated) return std::move(allocated).error();
      child = *allocated;
      // Zeroed first, linked second: a concurrent walker sees either nothing or an
      // empty table, both "not present".
      if (auto linked = memory_->write64(entry_hpa, second_level::make_table_pointer(child)); !linked) {
        memory_->free_table(child);
        return std::move(linked).error();
      }
      present_entries_.emplace(child, 0);
      ++present;
    } else if (second_level::is_leaf(entry, level)) {
      return fail(EEXIST, "IOVA {:#x} lies inside a mapped {:#x}-byte page", cursor.iova, span);
    } else {
      child = second_level::output_address(entry);
    }
    IOASID_TRY(map_into(child, level - 1, cursor));
  }
  return success();
}

// Undoes a failed map(). Every leaf in [begin, failed_at) is one it wrote (a leaf
// there before would have stopped it with EEXIST), so unmapping that range removes
// exactly its leaves and frees the tables it allocated for them. Tables it allocated
// on the way to failed_at hold nothing and are pruned. Tables that existed before
// keep their own entries, so none of them is freed.
void SecondLevelTable::roll_back_map(uint64_t begin, uint64_t failed_at) {
  uint64_t removed = 0;
  if (failed_at > begin) (void)unmap_from(root_, levels_, 0, begin, failed_at, removed);
  (void)prune_empty_tables_at(failed_at);
}

Result<void> SecondLevelTable::prune_empty_tables_at(uint64_t iova) {
  struct Step {
    Hpa table;
    Hpa entry;
    Hpa child;
  };
  std::array<Step, kFiveLevels> path{};
  size_t depth = 0;
  Hpa table = root_;
  for (int level = levels_; level > 1; --level) {
    const Hpa entry_hpa = entry_address(table, iova, level);
    auto entry = memory_->read64(entry_hpa);
    if (!entry) return std::move(entry).error();
    if (!second_level::is_present(*entry) || second_level::is_leaf(*entry, level)) break;
    const Hpa child = second_level::output_address(*entry);
    path[depth++] = Step{table, entry_hpa, child};
    table = child;
  }
  while (depth > 0) {
    const Step& step = path[--depth];
    const auto child = present_entries_.find(step.child);
    if (child == present_entries_.end() || child->second != 0) break;  // its parents are not empty either
    IOASID_TRY(release_table(step.table, step.entry, step.child));
  }
  return success();
}

// Unlinks an empty child table from its parent's entry, then frees it.
Result<void> SecondLevelTable::release_table(Hpa parent, Hpa entry, Hpa child) {
  IOASID_TRY(memory_->write64(entry, 0));
  --present_entries_[parent];
  present_entries_.erase(child);
  memory_->free_table(child);
  return success();
}

Result<bool> SecondLevelTable::cuts_large_leaf(uint64_t iova, uint64_t begin, uint64_t end) const {
  const auto found = walk(iova, Access{});
  if (!found) {
    if (found.fault().reason == IOASID_FAULT_REASON_ACCESS) return false;
    return fail(EFAULT, "cannot walk IOVA {:#x}: fault reason {}", iova, found.fault().reason);
  }
  const uint64_t leaf_start = align_down(iova, found.translation().page_size);
  return leaf_start < begin || leaf_start + found.translation().page_size > end;
}

Result<uint64_t> SecondLevelTable::unmap(uint64_t iova, uint64_t length) {
  if (memory_ == nullptr) return fail(EINVAL, "the table has been destroyed");
  const uint64_t limit = address_limit();
  const uint64_t end = length > limit - std::min(iova, limit) ? limit : iova + length;
  if (!is_aligned(iova, kPageSize4K) || !is_aligned(end, kPageSize4K))
    return fail(EINVAL, "IOVA {:#x} and length {:#x} must be 4 KiB aligned", iova, length);
  if (length == 0 || iova >= end) return uint64_t{0};

  // Checked before anything changes: only the leaves at the two ends can straddle.
  for (const uint64_t probe : {iova, end - 1}) {
    auto cut = cuts_large_leaf(probe, iova, end);
    if (!cut) return std::move(cut).error();
    if (*cut) return fail(EINVAL, "[{:#x}, {:#x}) cuts through the large page at IOVA {:#x}", iova, end, probe);
  }
  uint64_t unmapped = 0;
  IOASID_TRY(unmap_from(root_, levels_, 0, iova, end, unmapped));
  return unmapped;
}

// Clears the leaves under the table at `level` (first entry mapping `table_iova`) that
// lie in [begin, end), recursing into tables and freeing those left empty.
Result<void> SecondLevelTable::unmap_from(Hpa table, int level, uint64_t table_iova, uint64_t begin, uint64_t end,
                                          uint64_t& unmapped) {
  const auto found = present_entries_.find(table);
  if (found == present_entries_.end()) return fail(EFAULT, "HPA {:#x} is not one of this table's pages", table);
  uint32_t& present = found->second;
  const uint64_t span = level_span(level);
  const uint64_t first = (begin - table_iova) / span;
  const uint64_t last = (end - 1 - table_iova) / span;

  for (uint64_t index = first; index <= last && present > 0; ++index) {
    const uint64_t slot_iova = table_iova + index * span;
    const Hpa entry_hpa = table + index * kEntrySize;
    auto read = memory_->read64(entry_hpa);
    if (!read) return std::move(read).error();
    const uint64_t entry = *read;
    if (!second_level::is_present(entry)) continue;

    if (second_level::is_leaf(entry, level)) {
      if (slot_iova < begin || slot_iova + span > end)
        return fail(EINVAL, "the page at IOVA {:#x} is only partly inside the range", slot_iova);
      IOASID_TRY(memory_->write64(entry_hpa, 0));
      --present;
      unmapped += span;
      continue;
    }
    const Hpa child = second_level::output_address(entry);
    IOASID_TRY(unmap_from(child, level - 1, slot_iova, std::max(begin, slot_iova), std::min(end, slot_iova + span),
                          unmapped));
    if (present_entries_[child] == 0) IOASID_TRY(release_table(table, entry_hpa, child));
  }
  return success();
}

}  // namespace ioasid::pgtable
