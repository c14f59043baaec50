// SPDX-License-Identifier: MIT
// A human-readable listing of a second-level table, one line per leaf, for ioasidctl's
// page-table dump:
//
//   iova 0x200000 -> hpa 0x7f000000 2M RW- A D
//   iova 0x400000 -> hpa 0x1000 4K x3 R-- - - SNP
//
// The rights are R, W and X (or '-'), then A and D (or '-'), then SNP when the leaf
// snoops. With coalescing, runs of leaves of one size, with the same bits and
// contiguous in both IOVA and HPA, become one line with a count ("x3").
#pragma once

#include "base/result.h"
#include "memory/physical_memory.h"
#include "pgtable/leaves.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ioasid::pgtable {

struct DumpOptions {
  uint64_t begin = 0;
  uint64_t end = std::numeric_limits<uint64_t>::max();
  bool coalesce = true;
};

// "4K", "2M", "1G".
std::string page_size_name(uint64_t size);

// One line for `count` consecutive leaves like `first`.
std::string describe_second_level_leaf(const LeafEntry& first, uint64_t count = 1);

Result<std::vector<std::string>> dump_second_level(PhysicalMemory& memory, Hpa root, int levels,
                                                   const DumpOptions& options = {});

}  // namespace ioasid::pgtable
