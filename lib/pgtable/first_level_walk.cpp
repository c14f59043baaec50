// SPDX-License-Identifier: MIT
#include "pgtable/first_level_walk.h"

#include "pgtable/first_level_format.h"
#include "pgtable/geometry.h"
#include "pgtable/walk_engine.h"

#include <linux/ioasid.h>

#include <algorithm>

namespace ioasid::pgtable {
namespace {

namespace fl = first_level;

// A second-level refusal of the final GPA: the second level's fault, and that GPA.
WalkFault second_stage_fault(const WalkFault& fault, uint64_t gpa) {
  WalkFault copy = fault;
  copy.second_stage = true;
  copy.gpa = gpa;
  return copy;
}

// A second-level refusal of a first-level entry's GPA: its reason, named by the entry.
WalkFault second_stage_fault_at(const WalkFault& fault, const detail::UsedEntry& at) {
  return WalkFault{fault.reason, at.level, at.reported, true, at.reported};
}

constexpr Access kTableRead{.read = true};
constexpr Access kTableUpdate{.read = true, .write = true};

// The shared walk loop's view of the first-level format (see walk_engine.h). Table
// addresses are GPAs; `to_host` (or the identity) turns each entry's GPA into an HPA.
class FirstLevelWalker {
 public:
  static constexpr uint64_t kDirty = fl::kDirty;
  static constexpr uint64_t kAccessedDirtyMask = fl::kAccessedDirtyMask;
  // Nested, each leaf's output GPA needs its own second-level translation: no runs.
  static constexpr bool kExtendsRuns = false;
  static bool continues_run(uint64_t, uint64_t, uint64_t) { return false; }

  FirstLevelWalker(const FirstLevelConfig& config, bool privileged, const GpaTranslator* to_host)
      : to_host_(to_host),
        accessed_(fl::kAccessed | (config.extended_accessed ? fl::kExtendedAccessed : 0)),
        privileged_(privileged),
        write_protect_(config.write_protect) {}

  static bool is_present(uint64_t entry) { return fl::is_present(entry); }
  static bool has_reserved_bits_set(uint64_t entry, int level) { return fl::has_reserved_bits_set(entry, level); }
  static bool is_leaf(uint64_t entry, int level) { return fl::is_leaf(entry, level); }
  static uint64_t next_table(uint64_t entry) { return fl::table_address(entry); }

  void start() {
    writable_ = true;
    user_ = true;
    executable_ = true;
  }

  std::optional<WalkFault> locate(uint64_t table, uint64_t address, int level, detail::UsedEntry& at) const {
    at.reported = entry_address(table, address, level);
    if (to_host_ == nullptr) {
      at.address = at.reported;
      return std::nullopt;
    }
    const WalkResult host = (*to_host_)(at.reported, kTableRead);
    if (!host.ok()) return second_stage_fault_at(host.fault(), at);
    at.address = host.translation().hpa;
    return std::nullopt;
  }

  void accumulate(uint64_t entry) {
    writable_ = writable_ && fl::is_writable(entry);
    user_ = user_ && fl::is_user(entry);
    executable_ = executable_ && !fl::is_execute_disabled(entry);
  }

  // The rights of this requester on the page (see first_level_walk.h, step 4).
  Permissions rights() const {
    if (!privileged_) return {.read = user_, .write = user_ && writable_, .exec = user_ && executable_};
    return {.read = true, .write = writable_ || !write_protect_, .exec = executable_ && !user_};
  }

  std::optional<WalkFault> check(Access access, const detail::UsedEntry& leaf) const {
    if (rights().allows(access)) return std::nullopt;
    return detail::fault_at(IOASID_FAULT_REASON_PERMISSION, leaf.level, leaf.reported);
  }

  WalkResult complete(const detail::UsedEntry& leaf, uint64_t address, Access access) const {
    const uint64_t page_size = level_span(leaf.level);
    const uint64_t gpa = fl::leaf_frame(leaf.value, leaf.level) + (address & (page_size - 1));
    if (to_host_ == nullptr) return Translation{gpa, page_size, leaf.level, rights(), false, leaf.address};
    const WalkResult host = (*to_host_)(gpa, access);
    if (!host.ok()) return second_stage_fault(host.fault(), gpa);
    const Translation& second = host.translation();
    return Translation{second.hpa, std::min(page_size, second.page_size), leaf.level,
                       rights() & second.permissions, second.snoop, leaf.address};
  }

  static constexpr bool updates_accessed_dirty() { return true; }
  uint64_t accessed_bits() const { return accessed_; }

  // Nested: the entry is written, so its GPA must be writable in the second level.
  std::optional<WalkFault> prepare_update(detail::UsedEntry& at) const {
    if (to_host_ == nullptr) return std::nullopt;
    const WalkResult host = (*to_host_)(at.reported, kTableUpdate);
    if (!host.ok()) return second_stage_fault_at(host.fault(), at);
    at.address = host.translation().hpa;
    return std::nullopt;
  }

 private:
  const GpaTranslator* to_host_;
  uint64_t accessed_;
  bool privileged_;
  bool write_protect_;
  bool writable_ = true;
  bool user_ = true;
  bool executable_ = true;
};

}  // namespace

WalkResult walk_first_level(PhysicalMemory& memory, const FirstLevelConfig& config, uint64_t address,
                            Access access, bool privileged, const GpaTranslator* to_host) {
  if (!is_supported_levels(config.levels) || !fl::is_canonical(address, config.levels))
    return WalkFault{IOASID_FAULT_REASON_OOR_ADDRESS, 0, std::nullopt};
  if (privileged && !config.supervisor_requests) return WalkFault{IOASID_FAULT_REASON_PERMISSION, 0, std::nullopt};
  FirstLevelWalker walker(config, privileged, to_host);
  return detail::run_walk(memory, walker, config.root & fl::kAddressMask, config.levels, address, access, address);
}

}  // namespace ioasid::pgtable
