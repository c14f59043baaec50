// SPDX-License-Identifier: MIT
// Enumerates the leaves of a second-level table in IOVA order, reading entries only
// through PhysicalMemory::read64 like the walker, so it works on any root the IOMMU
// knows about. Dirty tracking and the dump are built on it.
#pragma once

#include "base/result.h"
#include "memory/physical_memory.h"

#include <cstdint>
#include <functional>

namespace ioasid::pgtable {

struct LeafEntry {
  uint64_t iova = 0;  // the first IOVA the leaf maps (aligned to size)
  uint64_t size = 0;  // 4K, 2M or 1G
  int level = 0;
  Hpa entry_address = 0;  // where the entry lives, for compare-and-swap updates
  uint64_t value = 0;     // the entry as read
};

// Returning an error from the visitor stops the enumeration with that error.
using LeafVisitor = std::function<Result<void>(const LeafEntry&)>;

// Visits every present leaf that overlaps [begin, end). A table page that cannot be
// read is EFAULT; an entry with a reserved field set is EINVAL.
Result<void> for_each_second_level_leaf(PhysicalMemory& memory, Hpa root, int levels, uint64_t begin,
                                        uint64_t end, const LeafVisitor& visit);

}  // namespace ioasid::pgtable
