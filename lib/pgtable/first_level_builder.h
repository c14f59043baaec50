// SPDX-License-Identifier: MIT
// Builds first-level (x86-64) page tables the way a guest kernel would, for tests and
// for examples/mini-vmm, which writes its guest's tables into guest RAM. It knows the
// memory only through callbacks taking GPAs (allocate a zeroed page, read and write a
// 64-bit word), so it works on a VMM's own mmap of guest RAM, on a memfd, or, with
// over_physical_memory(), on daemon table pages where GPAs are HPAs (native SVA).
//
// Table pointers grant everything (P, R/W, U/S): the leaves carry the rights. Tests
// that want rights at an upper level edit that entry (entry_gpa() finds it). Tables are
// linked after they are zeroed, and a leaf is written with one 64-bit store, so a walker
// running concurrently sees either the old or the new mapping. Not thread-safe itself.
// It keeps no state but the root: the tables in memory are the truth, so entries the
// caller (or the IOMMU's A/D updates) changed are honoured.
#pragma once

#include "base/result.h"
#include "memory/physical_memory.h"
#include "pgtable/first_level_format.h"
#include "pgtable/first_level_walk.h"

#include <cstdint>
#include <functional>

namespace ioasid::pgtable {

struct GuestTableMemory {
  std::function<Result<uint64_t>()> alloc_page;  // a zeroed 4 KiB page: its GPA
  std::function<Result<uint64_t>(uint64_t gpa)> read64;
  std::function<Result<void>(uint64_t gpa, uint64_t value)> write64;
  std::function<void(uint64_t gpa)> free_page;  // optional: a table no longer linked
};

// GPAs are HPAs: tables from the memory's own pool (PhysicalMemory::alloc_table).
GuestTableMemory over_physical_memory(PhysicalMemory& memory);

class FirstLevelBuilder {
 public:
  // Allocates the root; `levels` is 4 or 5 (EINVAL otherwise).
  static Result<FirstLevelBuilder> create(GuestTableMemory memory, int levels);

  uint64_t root() const { return root_; }
  int levels() const { return levels_; }
  // The PASID entry's view of this table: root and levels, SRE/WPE/EAFE off.
  FirstLevelConfig config() const { return FirstLevelConfig{.root = root_, .levels = levels_}; }

  // Maps [gva, gva + length) to [gpa, gpa + length). page_size 0 takes, at each step,
  // the largest page (4K, 2M, 1G) that the alignment of both addresses and the
  // remaining length allow; otherwise every page is that size. EINVAL: page_size not
  // 0/4K/2M/1G, addresses or length not multiples of it (of 4K when 0), empty, a GVA
  // range that is not canonical (or crosses the hole between the halves), or a GPA
  // beyond 52 bits. EEXIST: a page of the range is mapped already (an empty table left
  // by unmap() does not count: a large page replaces it). An allocation or memory
  // error is passed on. On error the leaves this call wrote are cleared again.
  Result<void> map(uint64_t gva, uint64_t gpa, uint64_t length, first_level::LeafFlags flags,
                   uint64_t page_size = 0);

  // Clears every leaf inside [gva, gva + length) and returns the bytes unmapped. Table
  // pages stay (empty); the caller invalidates IOTLBs. EINVAL, with nothing changed:
  // range as for map(), or a 2M/1G leaf only partly inside.
  Result<uint64_t> unmap(uint64_t gva, uint64_t length);

  // The GPA of the entry at `level` on the way to `gva`. ENOENT: a table above it is
  // missing (an entry above is not present or is a leaf); EINVAL: bad level or GVA.
  Result<uint64_t> entry_gpa(uint64_t gva, int level) const;

 private:
  FirstLevelBuilder(GuestTableMemory memory, int levels, uint64_t root)
      : memory_(std::move(memory)), levels_(levels), root_(root) {}

  Result<void> check_range(uint64_t gva, uint64_t length, uint64_t alignment) const;
  Result<void> map_page(uint64_t gva, uint64_t gpa, int level, uint64_t attributes);
  Result<bool> table_is_empty(uint64_t table, int level) const;
  void free_tree(uint64_t table, int level);
  // Visits the leaves in [gva, last]: clear == false only checks for partial leaves.
  Result<uint64_t> clear_leaves(uint64_t gva, uint64_t last, bool clear);

  GuestTableMemory memory_;
  int levels_;
  uint64_t root_;
};

}  // namespace ioasid::pgtable
