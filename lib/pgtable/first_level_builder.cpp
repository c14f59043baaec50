// SPDX-License-Identifier: MIT
#include "pgtable/first_level_builder.h"

#include "pgtable/geometry.h"

#include <cerrno>

namespace ioasid::pgtable {
namespace {

namespace fl = first_level;

int leaf_level(uint64_t page_size) {
  return page_size == kPageSize1G ? 3 : page_size == kPageSize2M ? 2 : 1;
}

uint64_t largest_page(uint64_t gva, uint64_t gpa, uint64_t remaining) {
  for (uint64_t size : {kPageSize1G, kPageSize2M})
    if (is_aligned(gva, size) && is_aligned(gpa, size) && remaining >= size) return size;
  return kPageSize4K;
}

}  // namespace

GuestTableMemory over_physical_memory(PhysicalMemory& memory) {
  return GuestTableMemory{
      .alloc_page = [&memory]() -> Result<uint64_t> { return memory.alloc_table(); },
      .read64 = [&memory](uint64_t gpa) { return memory.read64(gpa); },
      .write64 = [&memory](uint64_t gpa, uint64_t value) { return memory.write64(gpa, value); },
      .free_page = [&memory](uint64_t gpa) { memory.free_table(gpa); },
  };
}

Result<FirstLevelBuilder> FirstLevelBuilder::create(GuestTableMemory memory, int levels) {
  if (!is_supported_levels(levels)) return fail(EINVAL, "a first-level table has 4 or 5 levels, not {}", levels);
  if (!memory.alloc_page || !memory.read64 || !memory.write64)
    return fail(EINVAL, "first-level builder: alloc_page, read64 and write64 are required");
  auto root = memory.alloc_page();
  IOASID_TRY(root);
  return FirstLevelBuilder(std::move(memory), levels, *root);
}

Result<void> FirstLevelBuilder::check_range(uint64_t gva, uint64_t length, uint64_t alignment) const {
  if (length == 0 || !is_aligned(gva, alignment) || !is_aligned(length, alignment))
    return fail(EINVAL, "GVA range {:#x}+{:#x} is empty or not {:#x} aligned", gva, length, alignment);
  const uint64_t last = gva + length - 1;
  if (last < gva || !fl::is_canonical(gva, levels_) || !fl::is_canonical(last, levels_) || (gva >> 63) != (last >> 63))
    return fail(EINVAL, "GVA range {:#x}+{:#x} is not canonical for {} levels", gva, length, levels_);
  return success();
}

Result<void> FirstLevelBuilder::map(uint64_t gva, uint64_t gpa, uint64_t length, fl::LeafFlags flags,
                                    uint64_t page_size) {
  if (page_size != 0 && page_size != kPageSize4K && page_size != kPageSize2M && page_size != kPageSize1G)
    return fail(EINVAL, "page size {:#x} is not 4K, 2M or 1G", page_size);
  const uint64_t alignment = page_size != 0 ? page_size : kPageSize4K;
  IOASID_TRY(check_range(gva, length, alignment));
  if (!is_aligned(gpa, alignment) || gpa + length < gpa || gpa + length > (1ull << fl::kMaxOutputAddressBits))
    return fail(EINVAL, "GPA range {:#x}+{:#x} is not {:#x} aligned or beyond 52 bits", gpa, length, alignment);

  const uint64_t attributes = fl::leaf_attributes(flags);
  for (uint64_t done = 0; done < length;) {
    const uint64_t size = page_size != 0 ? page_size : largest_page(gva + done, gpa + done, length - done);
    if (auto mapped = map_page(gva + done, gpa + done, leaf_level(size), attributes); !mapped) {
      if (done != 0) (void)clear_leaves(gva, gva + done - 1, /*clear=*/true);
      return std::move(mapped).error();
    }
    done += size;
  }
  return success();
}

Result<void> FirstLevelBuilder::map_page(uint64_t gva, uint64_t gpa, int level, uint64_t attributes) {
  uint64_t table = root_;
  for (int at = levels_; at > level; --at) {
    const uint64_t entry = entry_address(table, gva, at);
    auto value = memory_.read64(entry);
    IOASID_TRY(value);
    if (!fl::is_present(*value)) {
      auto page = memory_.alloc_page();
      IOASID_TRY(page);
      IOASID_TRY(memory_.write64(entry, fl::make_table_pointer(*page)));
      table = *page;
      continue;
    }
    if (fl::is_leaf(*value, at)) return fail(EEXIST, "GVA {:#x} is inside a level-{} page", gva, at);
    table = fl::table_address(*value);
  }

  const uint64_t entry = entry_address(table, gva, level);
  auto value = memory_.read64(entry);
  IOASID_TRY(value);
  const uint64_t leaf = fl::make_leaf(gpa, level, attributes);
  if (!fl::is_present(*value)) return memory_.write64(entry, leaf);
  if (fl::is_leaf(*value, level)) return fail(EEXIST, "GVA {:#x} is mapped already", gva);
  // A table, left by unmap(): a large page may replace it if nothing is mapped under it.
  const uint64_t old_table = fl::table_address(*value);
  auto empty = table_is_empty(old_table, level - 1);
  IOASID_TRY(empty);
  if (!*empty) return fail(EEXIST, "GVA {:#x}: smaller pages are mapped in its {:#x} range", gva, level_span(level));
  IOASID_TRY(memory_.write64(entry, leaf));
  free_tree(old_table, level - 1);
  return success();
}

Result<bool> FirstLevelBuilder::table_is_empty(uint64_t table, int level) const {
  for (uint64_t index = 0; index < kEntriesPerTable; ++index) {
    auto value = memory_.read64(table + index * kEntrySize);
    IOASID_TRY(value);
    if (!fl::is_present(*value)) continue;
    if (fl::is_leaf(*value, level)) return false;
    auto empty = table_is_empty(fl::table_address(*value), level - 1);
    IOASID_TRY(empty);
    if (!*empty) return false;
  }
  return true;
}

void FirstLevelBuilder::free_tree(uint64_t table, int level) {
  if (!memory_.free_page) return;
  if (level > 1) {
    for (uint64_t index = 0; index < kEntriesPerTable; ++index) {
      auto value = memory_.read64(table + index * kEntrySize);
      if (value && fl::is_present(*value) && !fl::is_leaf(*value, level))
        free_tree(fl::table_address(*value), level - 1);
    }
  }
  memory_.free_page(table);
}

Result<uint64_t> FirstLevelBuilder::unmap(uint64_t gva, uint64_t length) {
  IOASID_TRY(check_range(gva, length, kPageSize4K));
  const uint64_t last = gva + length - 1;
  IOASID_TRY(clear_leaves(gva, last, /*clear=*/false));
  return clear_leaves(gva, last, /*clear=*/true);
}

Result<uint64_t> FirstLevelBuilder::clear_leaves(uint64_t gva, uint64_t last, bool clear) {
  uint64_t unmapped = 0;
  for (uint64_t at = gva;;) {
    uint64_t table = root_;
    int level = levels_;
    uint64_t entry = 0;
    bool leaf = false;
    for (;; --level) {
      entry = entry_address(table, at, level);
      auto value = memory_.read64(entry);
      IOASID_TRY(value);
      if (!fl::is_present(*value)) break;  // nothing mapped in this entry's span
      if (fl::is_leaf(*value, level)) {
        leaf = true;
        break;
      }
      table = fl::table_address(*value);
    }
    const uint64_t span = level_span(level);
    const uint64_t base = align_down(at, span);
    const uint64_t block_last = base + (span - 1);
    if (leaf) {
      if (base < gva || block_last > last)
        return fail(EINVAL, "the level-{} page at GVA {:#x} is only partly inside the range", level, base);
      if (clear) IOASID_TRY(memory_.write64(entry, 0));
      unmapped += span;
    }
    if (block_last >= last) break;
    at = block_last + 1;
  }
  return unmapped;
}

Result<uint64_t> FirstLevelBuilder::entry_gpa(uint64_t gva, int level) const {
  if (level < 1 || level > levels_ || !fl::is_canonical(gva, levels_))
    return fail(EINVAL, "no level {} entry for GVA {:#x} in a {}-level table", level, gva, levels_);
  uint64_t table = root_;
  for (int at = levels_; at > level; --at) {
    auto value = memory_.read64(entry_address(table, gva, at));
    IOASID_TRY(value);
    if (!fl::is_present(*value) || fl::is_leaf(*value, at))
      return fail(ENOENT, "no level-{} table on the way to GVA {:#x}", at - 1, gva);
    table = fl::table_address(*value);
  }
  return entry_address(table, gva, level);
}

}  // namespace ioasid::pgtable
