// SPDX-License-Identifier: MIT
// The emulated IOTLB: a bounded, set-associative cache of translations tagged by
// (domain, PASID, page, page size). Lookups take no lock (a sequence counter per
// set); fills and invalidations lock one set at a time. It is faithful: an entry
// stays until it is evicted or invalidated, whatever happens to the page table.
//
// Runs: a walk may hand out a run of 4 KiB leaves of one leaf table, each the next
// frame with the same rights (pgtable::walk_second_level). A run of at least
// kMinRunPages is cached as one entry covering all its pages, as IOTLBs that coalesce
// contiguous PTEs do; a shorter one as an entry per page. A run entry is invalidated
// as a whole by any invalidation that covers one of its pages: the other pages are
// walked again on their next access (an IOTLB may always drop more than it is told
// to; it never keeps what it was told to drop). Run entries of a leaf table share
// the set that table's 2 MiB block hashes to, so a lookup finds the run of any of its
// pages with one probe; the threshold keeps a table cut into many short runs from
// crowding that one set.
#pragma once

#include "base/sharded_counters.h"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace ioasid::iommu {

// Requests without PASID are tagged with RID_PASID, 0: the allocator never hands it out.
inline constexpr uint32_t kRidPasid = 0;

enum Permission : uint8_t {
  kPermRead = 1u << 0,
  kPermWrite = 1u << 1,
  kPermExec = 1u << 2,
};

struct IotlbTranslation {
  uint64_t hpa;          // the translated address (page base + offset)
  uint8_t page_shift;    // 12, 21 or 30
  uint8_t permissions;   // Permission bits the cached walk granted
  uint64_t contiguous;   // bytes from hpa to the end of the entry: its page, or its run
};

struct IotlbStats {
  uint64_t hits;
  uint64_t misses;
  uint64_t fills;
  uint64_t evictions;
  uint64_t invalidated;  // entries removed by invalidations
  size_t capacity;
};

class Iotlb {
 public:
  static constexpr size_t kWays = 4;
  // The shortest run of 4 KiB pages cached as one entry (64 KiB); the longest is a
  // leaf table's 512.
  static constexpr uint64_t kMinRunPages = 16;
  static constexpr uint64_t kMaxRunPages = 512;

  // capacity: total entries, rounded up to a power of two multiple of kWays.
  explicit Iotlb(size_t capacity = 4096);
  ~Iotlb();
  Iotlb(const Iotlb&) = delete;
  Iotlb& operator=(const Iotlb&) = delete;

  // A cached translation of iova granting at least `required` (Permission bits), or
  // nothing (a miss: an entry with fewer rights must be walked again).
  std::optional<IotlbTranslation> lookup(uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t required = 0);

  // Caches a walk's result: the page of `page_shift` bits containing iova maps to
  // page_hpa. A full set evicts one entry (round robin). pages > 1 (4 KiB pages only,
  // at most kMaxRunPages, within one leaf table): a run, that page and the ones after
  // it mapping the frames after page_hpa.
  void fill(uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t page_shift, uint64_t page_hpa,
            uint8_t permissions, uint64_t pages = 1);
  // Bumped by every invalidation. A walker reads it before it walks and fills with
  // fill_if_current(): an invalidation that ran meanwhile (the table may have
  // changed under the walk) makes the fill a no-op, so no stale entry survives a flush.
  uint64_t epoch() const { return epoch_.load(std::memory_order_seq_cst); }
  bool fill_if_current(uint64_t epoch, uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t page_shift,
                       uint64_t page_hpa, uint8_t permissions, uint64_t pages = 1);

  void invalidate_all();
  void invalidate_domain(uint16_t domain);
  void invalidate_pasid(uint16_t domain, uint32_t pasid);
  // Every entry of (domain, pasid) overlapping [iova, iova + length). A batch of them
  // (a guest's queue of page invalidations) may announce itself once with
  // begin_invalidations() and pass kAnnounced: the epoch is then bumped once, not per range.
  enum class Epoch : bool { kBump, kAnnounced };
  void invalidate_range(uint16_t domain, uint32_t pasid, uint64_t iova, uint64_t length, Epoch epoch = Epoch::kBump);
  void begin_invalidations();
  // Every entry of domain overlapping the range, whatever its PASID.
  void invalidate_domain_range(uint16_t domain, uint64_t iova, uint64_t length);

  IotlbStats stats() const;
  size_t capacity() const { return set_count_ * kWays; }

 private:
  struct Set;
  template <typename Match>
  void invalidate_where(Match match);
  Set& set_for(uint16_t domain, uint32_t pasid, uint64_t page_number, uint8_t page_shift) const;
  Set& run_set_for(uint16_t domain, uint32_t pasid, uint64_t page_number) const;
  void store(Set& set, uint64_t tag, uint64_t page, uint64_t value);
  void mark_used(size_t kind);
  // Removes the entries of (domain, pasid) in `set` with tag `want` overlapping pages
  // [first, last) of their size; returns how many.
  uint64_t remove_overlapping(Set& set, uint64_t want, uint64_t first, uint64_t last);
  void count(size_t counter) const;

  size_t set_count_;
  std::unique_ptr<Set[]> sets_;
  std::atomic<uint64_t> epoch_{0};
  // Kinds of entry ever cached (4K, 2M, 1G pages, 4K runs): lookups and range
  // invalidations skip the sets of a kind never filled. Set before the entry is
  // stored, so a fill the epoch lets stand is always seen (see fill_if_current).
  std::array<std::atomic<bool>, 4> kind_used_{};
  mutable ShardedCounters<5> counters_;
};

}  // namespace ioasid::iommu
