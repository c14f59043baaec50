// SPDX-License-Identifier: MIT
// The emulated host-physical address space: client segments plus the daemon's
// page-table pool, behind the PhysicalMemory interface the walkers use.
//
// Layout (all HPAs below 2^45, none at 0):
//   [kSegmentWindowBase, kSegmentWindowEnd)  segments: pinned client ranges
//   [kTableWindowBase, + max_table_pages * 4 KiB)  page-table pages (TablePool)
//
// Segments are placed next-fit (a cursor moving up, wrapping at the end), so a freed
// HPA range is reused as late as possible, with at least kSegmentGuard bytes of
// unbacked HPA between two segments: a DMA overrunning one segment faults in the gap
// instead of reaching its neighbour. A segment's base is aligned to 1 GiB when it is
// at least 1 GiB long, to 2 MiB when at least 2 MiB, so the IOMMU can map it with
// superpages (when the IOVA is aligned alike).
//
// Concurrency: table words are lock-free (see table_pool.h). Segment accesses hold a
// ShardedSharedMutex shared for the duration of the access; add_segment and
// remove_segment hold it exclusively, so once remove_segment returns no DMA is inside
// the segment and none will start: its backing is released (unmapped, closed) when
// the last shared_ptr to it goes, which is remove_segment's own unless the caller
// kept one.
#pragma once

#include "memory/backing.h"
#include "memory/physical_memory.h"
#include "memory/sharded_shared_mutex.h"
#include "memory/table_pool.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <span>
#include <vector>

namespace ioasid {

struct SegmentInfo {
  Hpa base = 0;
  uint64_t size = 0;
  std::shared_ptr<Backing> backing;
};

struct HpaRange {
  Hpa hpa = 0;
  uint64_t size = 0;
};

struct HpaSpaceStats {
  size_t segments = 0;
  uint64_t segment_bytes = 0;
  uint64_t table_pages = 0;  // live page-table pages (4 KiB each)
  uint64_t table_page_limit = 0;
};

class HpaSpace final : public PhysicalMemory {
 public:
  static constexpr Hpa kSegmentWindowBase = 1ull << 32;
  static constexpr Hpa kSegmentWindowEnd = 1ull << 44;
  static constexpr Hpa kTableWindowBase = 1ull << 44;
  static constexpr uint64_t kSegmentGuard = 2ull << 20;
  // 1 GiB of page tables: enough for 512 GiB mapped with 4 KiB pages.
  static constexpr uint64_t kDefaultMaxTablePages = 1ull << 18;

  explicit HpaSpace(uint64_t max_table_pages = kDefaultMaxTablePages);
  ~HpaSpace() override;

  // PhysicalMemory. Words of table pages never lock; words of segments go through
  // the segment's backing (atomic where it is mapped, see Backing).
  Result<uint64_t> read64(Hpa hpa) override;
  Result<void> write64(Hpa hpa, uint64_t value) override;
  Result<bool> compare_exchange64(Hpa hpa, uint64_t& expected, uint64_t desired) override;
  Result<Hpa> alloc_table() override;
  // Waits for the walks in flight (see guard_walk) before the page can be reused.
  void free_table(Hpa table) override;

  // Held by the IOMMU from reading a PASID entry to the end of the walk it starts. A
  // walker may have read an entry just before unmap cleared it, and then reads the
  // table it pointed to: free_table() waits for such walks, so a freed table is never
  // reused (by another client's address space) under a walker's feet.
  std::shared_lock<ShardedSharedMutex> guard_walk() { return std::shared_lock(walks_); }

  // Gives `backing` an HPA range of backing->size() bytes (a non-zero multiple of
  // 4 KiB, else EINVAL) and returns its base. ENOSPC if the window has no room.
  Result<Hpa> add_segment(std::shared_ptr<Backing> backing);
  // Removes the segment starting at `base` (ENOENT if none), waiting for DMA in
  // flight on any segment to finish first.
  Result<void> remove_segment(Hpa base);
  // The segment containing `hpa`, if any.
  std::optional<SegmentInfo> find_segment(Hpa hpa) const;
  std::vector<SegmentInfo> segments() const;

  // DMA data transfers: [hpa, hpa + size) inside one segment, crossing pages freely.
  // A range that starts outside every segment, or runs off the end of one, is EFAULT
  // naming the first HPA that could not be transferred; *bytes_done (when given) holds
  // how many leading bytes were transferred (all of them on success), so the caller
  // can report a partial transfer. Table pages are not DMA targets (EFAULT).
  Result<void> read(Hpa hpa, std::span<std::byte> out, size_t* bytes_done = nullptr);
  Result<void> write(Hpa hpa, std::span<const std::byte> in, size_t* bytes_done = nullptr);

  // DMA without a bounce: the daemon's mapping of each range, with every segment held
  // against removal while `io` runs. Returns false, without calling io, when a range
  // is not inside one mapped (zero-copy) segment: the caller then uses read()/write().
  using MappedIo = std::function<Result<void>(std::span<const std::span<std::byte>>)>;
  Result<bool> with_mapped(std::span<const HpaRange> ranges, bool for_write, const MappedIo& io) {
    return with_mapped(ranges, for_write ? 0 : ranges.size(), io);
  }
  // The same with ranges[writable_from...] written and the ones before only read.
  Result<bool> with_mapped(std::span<const HpaRange> ranges, size_t writable_from, const MappedIo& io);

  HpaSpaceStats stats() const;
  const TablePool& tables() const { return tables_; }

 private:
  struct Segment {
    Hpa base;
    uint64_t size;
    std::shared_ptr<Backing> backing;
    Hpa end() const { return base + size; }
  };

  // The segment containing hpa; call with segments_mutex_ held (either way).
  const Segment* segment_at(Hpa hpa) const;
  std::optional<Hpa> place(uint64_t size, Hpa from) const;
  template <typename Span, typename Move>
  Result<void> transfer(Hpa hpa, Span data, size_t* bytes_done, const char* what, Move move);

  TablePool tables_;
  ShardedSharedMutex walks_;
  mutable ShardedSharedMutex segments_mutex_;
  std::vector<Segment> segments_;              // sorted by base, non-overlapping
  Hpa next_segment_hpa_ = kSegmentWindowBase;  // the next-fit cursor
};

}  // namespace ioasid
