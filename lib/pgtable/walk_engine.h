// SPDX-License-Identifier: MIT
// The walk loop every entry format shares (internal to lib/pgtable: walk.cpp and
// first_level_walk.cpp include it). A format plugs in through a Walker policy object;
// everything it does is inlined, so the second-level walk pays nothing for the hooks
// the first-level (nested) walk needs.
//
// A Walker provides:
//   static constexpr uint64_t kDirty             the D bit
//   static constexpr uint64_t kAccessedDirtyMask  the bits whose change alone does not
//                                                 invalidate a walk (A, D, and EA)
//   static bool is_present(entry), has_reserved_bits_set(entry, level), is_leaf(entry, level)
//   static uint64_t next_table(entry)            the address of the next table
//   void start()                                 resets what a walk accumulates
//   std::optional<WalkFault> locate(table, address, level, UsedEntry& at)
//       sets at.address (the HPA to read) and at.reported (what faults name) for the
//       entry translating `address` in the table at `table`
//   void accumulate(entry)                       takes an entry's rights into account
//   std::optional<WalkFault> check(access, const UsedEntry& leaf)   the permission check
//   WalkResult complete(const UsedEntry& leaf, address, access)      the translation
//   bool updates_accessed_dirty() const
//   uint64_t accessed_bits() const               what "accessed" sets: A (and EA)
//   std::optional<WalkFault> prepare_update(UsedEntry& at)
//       called before the first compare-and-swap on an entry; may move at.address
//       (a nested walk re-translates the entry's GPA for writing)
//   static constexpr bool kExtendsRuns           whether a walk may hand out a run of
//                                                 4 KiB leaves (extend_run below)
//   static bool continues_run(first, next, distance)  with kExtendsRuns: the level-1
//       entry `next`, `distance` entries after the run's first leaf `first`, is part
//       of its run
#pragma once

#include "memory/physical_memory.h"
#include "pgtable/access.h"
#include "pgtable/geometry.h"
#include "pgtable/walk.h"

#include <linux/ioasid.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>

namespace ioasid::pgtable::detail {

// No default member initializers: run_walk() keeps an array of these on the stack
// and fills them as it goes down; zeroing it would cost every walk a memset.
struct UsedEntry {
  Hpa address;        // where the entry is: what read64/compare_exchange64 take
  uint64_t reported;  // what a fault names as fetch_address (the HPA, or a GPA when nested)
  uint64_t value;     // the entry as read
  int level;
};

inline WalkFault fault_at(uint32_t reason, int level, uint64_t fetch_address) {
  return WalkFault{reason, level, fetch_address};
}

enum class UpdateOutcome { kDone, kEntryChanged, kFailed, kFault };

// Sets A (and EA) in every entry the walk used and D in the leaf for a write, each with
// one compare-and-swap as hardware does. If an entry changed beyond its A/D bits since
// it was read (the daemon or the guest unmapped or remapped concurrently), the walk
// must start over: the translation it found may be gone. On kFailed, `failed` is the
// entry whose update aborted; on kFault, `fault` is what prepare_update() reported.
template <typename Walker>
UpdateOutcome update_accessed_dirty(PhysicalMemory& memory, Walker& walker, std::span<UsedEntry> used,
                                    bool write, UsedEntry*& failed, std::optional<WalkFault>& fault) {
  const uint64_t accessed = walker.accessed_bits();
  for (size_t i = 0; i < used.size(); ++i) {
    const bool leaf = i + 1 == used.size();
    const uint64_t wanted = accessed | (leaf && write ? Walker::kDirty : 0);
    uint64_t current = used[i].value;
    if ((current & wanted) == wanted) continue;
    if (auto refused = walker.prepare_update(used[i])) {
      fault = std::move(refused);
      return UpdateOutcome::kFault;
    }
    while ((current & wanted) != wanted) {
      uint64_t expected = current;
      auto swapped = memory.compare_exchange64(used[i].address, expected, current | wanted);
      if (!swapped) {
        failed = &used[i];
        return UpdateOutcome::kFailed;
      }
      if (*swapped) break;
      if ((expected & ~Walker::kAccessedDirtyMask) != (used[i].value & ~Walker::kAccessedDirtyMask))
        return UpdateOutcome::kEntryChanged;
      current = expected;  // only A/D moved (another walker, or a dirty read): retry
    }
  }
  return UpdateOutcome::kDone;
}

// A run: after the walk handed out the 4 KiB leaf `leaf`, the leaves after it in the
// same table (up to `wanted` leaves in all) that continue it (Walker::continues_run:
// present, the same rights and attributes, the next frame), each with A (and D for a
// write) set as the walk sets them on its own leaf. The run stops before the first
// leaf that does not continue it, or whose update fails or races with a change of
// the entry: the next walk starts there and reports what it finds. Returns the
// number of leaves in the run, `leaf` included.
template <typename Walker>
uint64_t extend_run(PhysicalMemory& memory, const Walker& walker, const UsedEntry& leaf, uint64_t wanted,
                    bool write) {
  const uint64_t wanted_bits = walker.accessed_bits() | (write ? Walker::kDirty : 0);
  uint64_t leaves = 1;
  for (; leaves < wanted; ++leaves) {
    const Hpa address = leaf.address + leaves * kEntrySize;
    auto read = memory.read64(address);
    if (!read || !Walker::continues_run(leaf.value, *read, leaves)) break;
    uint64_t current = *read;
    if (!walker.updates_accessed_dirty()) continue;
    bool updated = true;
    while (updated && (current & wanted_bits) != wanted_bits) {
      uint64_t expected = current;
      auto swapped = memory.compare_exchange64(address, expected, current | wanted_bits);
      if (swapped && *swapped) break;
      // A failed update or a changed entry ends the run; only A/D moving retries.
      updated = swapped && (expected & ~Walker::kAccessedDirtyMask) == (current & ~Walker::kAccessedDirtyMask);
      current = expected;
    }
    if (!updated) break;
  }
  return leaves;
}

// Walks from the table at `root` down to the leaf translating `address`. The caller
// has checked the level count and the address's range. A walker with kExtendsRuns
// whose leaf is a 4 KiB page hands out the run of leaves from it towards
// `last_address` (the last byte the request reaches), in Translation::leaves.
// Always inlined into each format's entry point, so the walker's state stays in
// registers (as a separate function it cost the second-level walk ~3 ns of 30).
template <typename Walker>
[[gnu::always_inline]] inline WalkResult run_walk(PhysicalMemory& memory, Walker& walker, uint64_t root, int levels,
                                                  uint64_t address, Access access, uint64_t last_address) {
  // The leaves of the leaf's table the request reaches, its own included.
  auto wanted_leaves = [&](const UsedEntry& leaf) -> uint64_t {
    if (!Walker::kExtendsRuns || leaf.level != 1 || last_address <= address) return 1;
    const uint64_t to_last = (last_address >> kPageShift) - (address >> kPageShift) + 1;
    return std::min(to_last, kEntriesPerTable - level_index(address, 1));
  };
  auto with_run = [&](WalkResult result, const UsedEntry& leaf) {
    if constexpr (Walker::kExtendsRuns) {
      const uint64_t wanted = wanted_leaves(leaf);
      if (result.ok() && wanted > 1) {
        Translation run = result.translation();
        run.leaves = extend_run(memory, walker, leaf, wanted, access.write);
        return WalkResult(run);
      }
    }
    return result;
  };
  // Restarts only when a concurrent table change raced with an A/D update; each
  // restart re-reads the changed entries, and table changes are finite.
  for (;;) {
    std::array<UsedEntry, kFiveLevels> used;  // filled as the walk goes down; not zeroed
    size_t used_count = 0;
    walker.start();
    uint64_t table = root;
    for (int level = levels;; --level) {
      UsedEntry& at = used[used_count];
      at.level = level;
      if (auto fault = walker.locate(table, address, level, at)) return *fault;
      auto read = memory.read64(at.address);
      if (!read) return fault_at(IOASID_FAULT_REASON_PTE_FETCH, level, at.reported);
      at.value = *read;
      if (!Walker::is_present(at.value)) return fault_at(IOASID_FAULT_REASON_ACCESS, level, at.reported);
      if (Walker::has_reserved_bits_set(at.value, level))
        return fault_at(IOASID_FAULT_REASON_PTE_FETCH, level, at.reported);
      walker.accumulate(at.value);
      ++used_count;
      if (!Walker::is_leaf(at.value, level)) {
        table = Walker::next_table(at.value);
        continue;
      }

      if (auto fault = walker.check(access, at)) return *fault;
      if (!walker.updates_accessed_dirty()) return with_run(walker.complete(at, address, access), at);
      // The translation is complete (a nested walk's output GPA translated) before any
      // A/D bit is set: a walk that faults sets nothing.
      WalkResult result = walker.complete(at, address, access);
      if (!result.ok()) return result;
      UsedEntry* failed = nullptr;
      std::optional<WalkFault> refused;
      const auto outcome = update_accessed_dirty(memory, walker, std::span(used.data(), used_count),
                                                 access.write, failed, refused);
      if (outcome == UpdateOutcome::kDone) return with_run(std::move(result), at);
      if (outcome == UpdateOutcome::kFailed)
        return fault_at(IOASID_FAULT_REASON_WALK_EABT, failed->level, failed->reported);
      if (outcome == UpdateOutcome::kFault) return *refused;
      break;  // kEntryChanged: walk again
    }
  }
}

}  // namespace ioasid::pgtable::detail
