// SPDX-License-Identifier: MIT
#include "pgtable/leaves.h"

#include "pgtable/geometry.h"
#include "pgtable/second_level_format.h"

#include <algorithm>

namespace ioasid::pgtable {
namespace {

// Visits the leaves under the table at `table` (of `level`, whose first entry maps
// `table_iova`) that overlap [begin, end); the caller keeps [begin, end) within the
// table's span.
Result<void> visit_table(PhysicalMemory& memory, Hpa table, int level, uint64_t table_iova, uint64_t begin,
                         uint64_t end, const LeafVisitor& visit) {
  const uint64_t span = level_span(level);
  const uint64_t first = (begin - table_iova) / span;
  const uint64_t last = (end - 1 - table_iova) / span;
  for (uint64_t index = first; index <= last; ++index) {
    const uint64_t slot_iova = table_iova + index * span;
    const Hpa entry_hpa = table + index * kEntrySize;
    auto entry = memory.read64(entry_hpa);
    if (!entry) return fail(EFAULT, "table entry at HPA {:#x} unreadable: {}", entry_hpa, entry.error().why);
    if (!second_level::is_present(*entry)) continue;
    if (second_level::has_reserved_bits_set(*entry, level))
      return fail(EINVAL, "reserved field set in the level-{} entry at HPA {:#x}", level, entry_hpa);
    if (second_level::is_leaf(*entry, level)) {
      IOASID_TRY(visit(LeafEntry{slot_iova, span, level, entry_hpa, *entry}));
      continue;
    }
    IOASID_TRY(visit_table(memory, second_level::output_address(*entry), level - 1, slot_iova,
                           std::max(begin, slot_iova), std::min(end, slot_iova + span), visit));
  }
  return success();
}

}  // namespace

Result<void> for_each_second_level_leaf(PhysicalMemory& memory, Hpa root, int levels, uint64_t begin,
                                        uint64_t end, const LeafVisitor& visit) {
  if (!is_supported_levels(levels)) return fail(EINVAL, "a second-level table has 4 or 5 levels, not {}", levels);
  end = std::min(end, address_limit(levels));
  if (begin >= end) return success();
  return visit_table(memory, root, levels, 0, begin, end, visit);
}

}  // namespace ioasid::pgtable
