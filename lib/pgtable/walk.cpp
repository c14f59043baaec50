#include "pgtable/walk.h"

#include "pgtable/geometry.h"
#include "pgtable/second_level_format.h"

#include <linux/ioasid.h>

#include <array>
#include <span>

namespace ioasid::pgtable {
namespace {

// What the walk loop needs to know about an entry format. A first-level format gets
// its own traits (P bit, R/W, U/S, XD, A=5, D=6) and reuses walk_table().
struct SecondLevelFormat {
  static constexpr uint64_t kAccessed = second_level::kAccessed;
  static constexpr uint64_t kDirty = second_level::kDirty;

  static bool is_present(uint64_t entry) { return second_level::is_present(entry); }
  static bool has_reserved_bits_set(uint64_t entry, int level) {
    return second_level::has_reserved_bits_set(entry, level);
  }
  static bool is_leaf(uint64_t entry, int level) { return second_level::is_leaf(entry, level); }
  static Hpa address(uint64_t entry) { return second_level::output_address(entry); }
  static Permissions permissions(uint64_t entry) { return second_level::permissions_of(entry); }
  static bool snoop(uint64_t entry) { return (entry & second_level::kSnoop) != 0; }
};

struct UsedEntry {
  Hpa address;
  uint64_t value;
  int level;
};

WalkFault fault_at(uint32_t reason, int level, Hpa entry) { return WalkFault{reason, level, entry}; }

enum class UpdateOutcome { kDone, kEntryChanged, kFailed };

// Sets A in every entry the walk used and D in the leaf for a write, each with one
// compare-and-swap as hardware does. If an entry changed beyond its A/D bits since it
// was read (the daemon unmapped or remapped concurrently), the walk must start over:
// the translation it found may be gone.
template <typename Format>
UpdateOutcome update_accessed_dirty(PhysicalMemory& memory, std::span<UsedEntry> used, bool write,
                                    UsedEntry*& failed) {
  constexpr uint64_t kAccessedDirty = Format::kAccessed | Format::kDirty;
  for (size_t i = 0; i < used.size(); ++i) {
    const bool leaf = i + 1 == used.size();
    const uint64_t wanted = Format::kAccessed | (leaf && write ? Format::kDirty : 0);
    uint64_t current = used[i].value;
    while ((current & wanted) != wanted) {
      uint64_t expected = current;
      auto swapped = memory.compare_exchange64(used[i].address, expected, current | wanted);
      if (!swapped) {
        failed = &used[i];
        return UpdateOutcome::kFailed;
      }
      if (*swapped) break;
      if ((expected & ~kAccessedDirty) != (used[i].value & ~kAccessedDirty)) return UpdateOutcome::kEntryChanged;
      current = expected;  // only A/D moved (another walker, or a dirty read): retry
    }
  }
  return UpdateOutcome::kDone;
}

template <typename Format>
WalkResult walk_table(PhysicalMemory& memory, Hpa root, int levels, uint64_t iova, Access access,
                      AccessedDirty accessed_dirty) {
  if (!is_supported_levels(levels) || iova >= address_limit(levels))
    return WalkFault{IOASID_FAULT_REASON_OOR_ADDRESS, 0, std::nullopt};

  // Restarts only when a concurrent table change raced with an A/D update; each
  // restart re-reads the changed entries, and the daemon's changes are finite.
  for (;;) {
    std::array<UsedEntry, kFiveLevels> used;  // filled as the walk goes down; no need to zero
    size_t used_count = 0;
    Permissions rights = kAllPermissions;
    Hpa table = root;
    for (int level = levels;; --level) {
      const Hpa entry_hpa = entry_address(table, iova, level);
      auto read = memory.read64(entry_hpa);
      if (!read) return fault_at(IOASID_FAULT_REASON_PTE_FETCH, level, entry_hpa);
      const uint64_t entry = *read;
      if (!Format::is_present(entry)) return fault_at(IOASID_FAULT_REASON_ACCESS, level, entry_hpa);
      if (Format::has_reserved_bits_set(entry, level))
        return fault_at(IOASID_FAULT_REASON_PTE_FETCH, level, entry_hpa);
      rights = rights & Format::permissions(entry);
      used[used_count++] = UsedEntry{entry_hpa, entry, level};
      if (!Format::is_leaf(entry, level)) {
        table = Format::address(entry);
        continue;
      }

      if (!rights.allows(access)) return fault_at(IOASID_FAULT_REASON_PERMISSION, level, entry_hpa);
      if (accessed_dirty == AccessedDirty::kUpdate) {
        UsedEntry* failed = nullptr;
        const auto outcome =
            update_accessed_dirty<Format>(memory, std::span(used.data(), used_count), access.write, failed);
        if (outcome == UpdateOutcome::kFailed)
          return fault_at(IOASID_FAULT_REASON_WALK_EABT, failed->level, failed->address);
        if (outcome == UpdateOutcome::kEntryChanged) break;
      }
      const uint64_t page_size = level_span(level);
      return Translation{Format::address(entry) + (iova & (page_size - 1)), page_size, level, rights,
                         Format::snoop(entry), entry_hpa};
    }
  }
}

}  // namespace

WalkResult walk_second_level(PhysicalMemory& memory, Hpa root, int levels, uint64_t iova, Access access,
                             AccessedDirty accessed_dirty) {
  return walk_table<SecondLevelFormat>(memory, root, levels, iova, access, accessed_dirty);
}

}  // namespace ioasid::pgtable
