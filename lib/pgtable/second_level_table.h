// SPDX-License-Identifier: MIT
// A second-level table the daemon owns: the page table behind a kernel-managed
// IOASID, changed by MAP_DMA/UNMAP_DMA and read by the IOMMU's walker. Table pages
// come from PhysicalMemory's pool and are reached by HPA, so the walker needs nothing
// from this object but root() and levels().
//
// Not thread-safe for mutation: one caller at a time (the IOAS lock) may map, unmap,
// read dirty bits or destroy. Walkers may run concurrently: map() links a zeroed
// table before filling it and unmap() clears an entry before freeing what it pointed
// to; the dirty bit is cleared with compare-and-swap so a walker's update is never
// lost. Freed table pages go straight back to the pool: the caller flushes IOTLBs
// and waits out walks in flight before it lets the pool hand them out again.
#pragma once

#include "base/result.h"
#include "memory/physical_memory.h"
#include "pgtable/access.h"
#include "pgtable/geometry.h"
#include "pgtable/walk.h"

#include <cstdint>
#include <functional>
#include <span>
#include <unordered_map>

namespace ioasid::pgtable {

enum class DirtyRead { kAndClear, kNoClear };

using DirtyPageCallback = std::function<void(uint64_t page_iova)>;

class SecondLevelTable {
 public:
  // Allocates the root table; `levels` is 4 (48-bit IOVAs) or 5 (57-bit IOVAs).
  static Result<SecondLevelTable> create(PhysicalMemory& memory, int levels);

  SecondLevelTable(SecondLevelTable&& other) noexcept;
  SecondLevelTable& operator=(SecondLevelTable&& other) noexcept;
  SecondLevelTable(const SecondLevelTable&) = delete;
  SecondLevelTable& operator=(const SecondLevelTable&) = delete;
  ~SecondLevelTable();

  Hpa root() const { return root_; }
  int levels() const { return levels_; }
  uint64_t address_limit() const;  // one past the highest IOVA: 2^48 or 2^57

  // Maps [iova, iova + length) to [hpa, hpa + length), each step with the largest page
  // (4K, 2M, 1G, none above `largest_page`) that the alignment of both addresses and
  // the remaining length allow.
  // EINVAL: unaligned to 4 KiB, empty, beyond the table's width or 52-bit HPAs, or no
  // read/write right (such an entry would not be present). EEXIST: a page of the
  // range is mapped already. ENOMEM: no table page left. On any error the table is
  // exactly as before: what this call added is removed and its table pages freed.
  Result<void> map(uint64_t iova, Hpa hpa, uint64_t length, Permissions permissions, bool snoop = false,
                   uint64_t largest_page = kPageSize1G);

  // Removes every leaf inside [iova, iova + length), frees the table pages that become
  // empty, and returns the bytes unmapped (0 when nothing was mapped there). The range
  // may reach past the table's width (iova 0, length ~0 clears everything). EINVAL,
  // with nothing changed: unaligned to 4 KiB, or a 2M/1G leaf only partly inside.
  Result<uint64_t> unmap(uint64_t iova, uint64_t length);

  // Frees every table page, the root included; the object is empty afterwards. The
  // destructor does the same.
  void destroy();

  // Translates as the IOMMU would (see walk.h).
  WalkResult walk(uint64_t iova, Access access, AccessedDirty accessed_dirty = AccessedDirty::kLeave) const;

  // Dirty tracking. A leaf is dirty in whole when D is set (the walker sets it on a
  // write through the leaf), or in one half when that half's software bit is set
  // (mark_half_dirty: for a driver whose IOPTE is half a leaf, as the iommufd mock
  // domain's 2 KiB IOPTE is half a 4 KiB leaf and its 1 MiB IOPTE half a 2 MiB one).
  //
  // Reports, in IOVA order, each dirty part (the whole leaf with D, else each dirty
  // half) cut to [iova, iova + length), then clears it (compare-and-swap) unless
  // kNoClear: a dirty half wholly inside the range is clean afterwards; one only
  // partly inside stays dirty, its bytes outside have not been reported. So a leaf
  // with D partly inside loses D and keeps the bits of the halves not wholly inside.
  // EINVAL: empty range or beyond the table's width. The walk is bounded by the
  // leaves present, so by what is mapped, whatever the length.
  using DirtyRangeCallback = std::function<void(uint64_t iova, uint64_t length)>;
  Result<void> read_and_clear_dirty_ranges(uint64_t iova, uint64_t length, DirtyRead mode,
                                           const DirtyRangeCallback& report);
  // Marks dirty the half of the leaf that maps `iova` (its software bit, as a driver
  // that tracks dirty state per IOPTE would set it); false when nothing maps `iova`.
  Result<bool> mark_half_dirty(uint64_t iova);

  // The same per page: every `page_size` page holding a dirty part, in the range (a
  // dirty 2M leaf is 512 pages of 4K; with pages larger than the part, the page
  // holding it is reported once), cleared as above. EINVAL also: page_size not a
  // power of two of at least 4K, iova/length not multiples of it.
  Result<void> read_and_clear_dirty(uint64_t iova, uint64_t length, uint64_t page_size, DirtyRead mode,
                                    const DirtyPageCallback& report);
  // The same into a bitmap: bit i (of u64 words, least significant first) stands for
  // the page iova + i * page_size; set bits are ORed in. EINVAL if it is too small.
  Result<void> read_and_clear_dirty_bitmap(uint64_t iova, uint64_t length, uint64_t page_size, DirtyRead mode,
                                           std::span<uint64_t> bitmap);
  // Sets D again in every leaf that holds a page of the range set in the bitmap:
  // undoes a read-and-clear whose bitmap could not be delivered (D, the whole leaf,
  // is a superset of what it cleared).
  Result<void> restore_dirty_bitmap(uint64_t iova, uint64_t length, uint64_t page_size,
                                    std::span<const uint64_t> bitmap);
  // Clears D and the half bits in every leaf: done when tracking is enabled, so it
  // starts clean.
  Result<void> clear_all_dirty();

  // Table pages in use, the root included.
  size_t table_pages() const { return present_entries_.size(); }
  uint64_t table_bytes() const { return table_pages() * kPageSize; }

 private:
  struct MapCursor {
    uint64_t iova;
    Hpa hpa;
    uint64_t end;
    uint64_t leaf_attributes;
    uint64_t largest_page;
  };

  SecondLevelTable(PhysicalMemory& memory, int levels, Hpa root);

  Result<void> map_into(Hpa table, int level, MapCursor& cursor);
  Result<void> unmap_from(Hpa table, int level, uint64_t table_iova, uint64_t begin, uint64_t end,
                          uint64_t& unmapped);
  void roll_back_map(uint64_t begin, uint64_t failed_at);
  Result<void> prune_empty_tables_at(uint64_t iova);
  Result<void> release_table(Hpa parent, Hpa entry, Hpa child);
  Result<bool> cuts_large_leaf(uint64_t iova, uint64_t begin, uint64_t end) const;

  PhysicalMemory* memory_ = nullptr;
  int levels_ = 0;
  Hpa root_ = 0;
  // Present entries per table page we own (the root included). A table other than
  // the root is freed as soon as it has none, so an empty table never outlives the
  // call that emptied it: map()'s rollback relies on that.
  std::unordered_map<Hpa, uint32_t> present_entries_;
};

}  // namespace ioasid::pgtable
