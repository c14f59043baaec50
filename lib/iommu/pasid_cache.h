// SPDX-License-Identifier: MIT
// The IOMMU's PASID cache: decoded PASID-table entries tagged by (table, PASID), so a
// translation does not read the device's PASID table on every request. Direct mapped;
// lookups take no lock (a sequence counter per slot). PasidTable fills it under its
// own lock and invalidates the entry it changes, so a fill can never resurrect an
// entry that a concurrent detach removed.
#pragma once

#include "base/sharded_counters.h"
#include "memory/physical_memory.h"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace ioasid::iommu {

// How the IOMMU translates requests of one PASID-table entry. First-level and nested
// come with guest SVA.
enum class TranslationType : uint8_t {
  kSecondLevel = 1,  // through the kernel-managed table at `root`
  kPassThrough = 2,  // IOVA = HPA
  kNested = 3,       // the guest's first-level table, its GPAs through the second level at `root`
};

struct PasidEntry {
  uint32_t ioasid = 0;  // the owner's id of the I/O address space (0 for pass-through)
  uint16_t domain = 0;  // the IOTLB tag of the address space
  TranslationType type = TranslationType::kSecondLevel;
  uint8_t levels = 0;  // of the second-level table
  Hpa root = 0;        // the second-level table (nested: the parent's)
  // Nested only: the parent's domain (whose dirty tracking its walks follow) and the
  // bound first-level table; first_level_levels 0 means nothing is bound.
  uint16_t second_level_domain = 0;
  uint8_t first_level_levels = 0;
  uint8_t first_level_flags = 0;  // IOASID_VTD_FL_SRE | EAFE | WPE
  uint64_t first_level_root = 0;  // a GPA

  // A guest table is bound: requests translate through it (BIND/UNBIND are announced
  // for the PASIDs routed to it).
  bool bound_first_level() const { return type == TranslationType::kNested && first_level_levels != 0; }

  friend bool operator==(const PasidEntry&, const PasidEntry&) = default;
};

struct PasidCacheStats {
  uint64_t hits;
  uint64_t misses;
  uint64_t invalidated;
  size_t capacity;
};

class PasidCache {
 public:
  explicit PasidCache(size_t capacity = 1024);
  ~PasidCache();
  PasidCache(const PasidCache&) = delete;
  PasidCache& operator=(const PasidCache&) = delete;

  std::optional<PasidEntry> lookup(uint32_t table, uint32_t pasid);
  void fill(uint32_t table, uint32_t pasid, const PasidEntry& entry);
  void invalidate(uint32_t table, uint32_t pasid);
  // Every entry of the table (a device going away), of a domain, or all of them.
  void invalidate_table(uint32_t table);
  void invalidate_domain(uint16_t domain);
  void invalidate_all();

  PasidCacheStats stats() const;

 private:
  struct Slot;
  Slot& slot_for(uint32_t table, uint32_t pasid) const;
  template <typename Match>
  void invalidate_where(Match match);

  void count_lookup(bool hit);

  size_t slot_count_;
  std::unique_ptr<Slot[]> slots_;
  // Every translation counts a hit or a miss: per-thread rows, no shared cache line.
  // Invalidations are rare and share one counter.
  mutable ShardedCounters<2> lookups_;
  std::atomic<uint64_t> invalidated_{0};
};

}  // namespace ioasid::iommu
