// SPDX-License-Identifier: MIT
#include "pgtable/walk.h"

#include "pgtable/geometry.h"
#include "pgtable/second_level_format.h"
#include "pgtable/walk_engine.h"

#include <linux/ioasid.h>

#include <algorithm>

namespace ioasid::pgtable {
namespace {

// What the shared walk loop (walk_engine.h) needs to know about the second-level
// format. Entries are at HPAs; there is no requester privilege and no nesting.
class SecondLevelWalker {
 public:
  static constexpr uint64_t kDirty = second_level::kDirty;
  static constexpr uint64_t kAccessedDirtyMask = second_level::kDirtyStateMask;
  static constexpr bool kExtendsRuns = true;

  explicit SecondLevelWalker(AccessedDirty accessed_dirty) : accessed_dirty_(accessed_dirty) {}

  static bool is_present(uint64_t entry) { return second_level::is_present(entry); }
  static bool has_reserved_bits_set(uint64_t entry, int level) {
    return second_level::has_reserved_bits_set(entry, level);
  }
  static bool is_leaf(uint64_t entry, int level) { return second_level::is_leaf(entry, level); }
  static uint64_t next_table(uint64_t entry) { return second_level::output_address(entry); }
  // Everything but the frame and the dirty state equal (rights, memory type, snoop,
  // software bits), the frame `distance` pages on.
  static bool continues_run(uint64_t first, uint64_t next, uint64_t distance) {
    constexpr uint64_t kAttributes = ~(second_level::kAddressMask | second_level::kDirtyStateMask);
    return second_level::is_present(next) && (next & kAttributes) == (first & kAttributes) &&
           second_level::output_address(next) == second_level::output_address(first) + distance * kPageSize;
  }

  void start() { rights_ = kAllPermissions; }
  std::optional<WalkFault> locate(Hpa table, uint64_t iova, int level, detail::UsedEntry& at) const {
    at.address = entry_address(table, iova, level);
    at.reported = at.address;
    return std::nullopt;
  }
  void accumulate(uint64_t entry) { rights_ = rights_ & second_level::permissions_of(entry); }
  std::optional<WalkFault> check(Access access, const detail::UsedEntry& leaf) const {
    if (rights_.allows(access)) return std::nullopt;
    return detail::fault_at(IOASID_FAULT_REASON_PERMISSION, leaf.level, leaf.reported);
  }
  WalkResult complete(const detail::UsedEntry& leaf, uint64_t iova, Access) const {
    const uint64_t page_size = level_span(leaf.level);
    return Translation{second_level::output_address(leaf.value) + (iova & (page_size - 1)), page_size, leaf.level,
                       rights_, (leaf.value & second_level::kSnoop) != 0, leaf.address};
  }

  bool updates_accessed_dirty() const { return accessed_dirty_ == AccessedDirty::kUpdate; }
  static constexpr uint64_t accessed_bits() { return second_level::kAccessed; }
  static std::optional<WalkFault> prepare_update(detail::UsedEntry&) { return std::nullopt; }

 private:
  AccessedDirty accessed_dirty_;
  Permissions rights_;
};

}  // namespace

WalkResult walk_second_level(PhysicalMemory& memory, Hpa root, int levels, uint64_t iova, Access access,
                             AccessedDirty accessed_dirty, uint64_t length) {
  if (!is_supported_levels(levels) || iova >= address_limit(levels))
    return WalkFault{IOASID_FAULT_REASON_OOR_ADDRESS, 0, std::nullopt};
  SecondLevelWalker walker(accessed_dirty);
  // Saturating: a run ends with its leaf table anyway.
  const uint64_t last = iova + std::min(length ? length - 1 : 0, ~iova);
  return detail::run_walk(memory, walker, root, levels, iova, access, last);
}

}  // namespace ioasid::pgtable
