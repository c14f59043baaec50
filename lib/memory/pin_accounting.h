// SPDX-License-Identifier: MIT
// Pinned-page accounting: every page a user's mappings pin counts against that
// user's limit, as RLIMIT_MEMLOCK does for VFIO. A charge is an RAII object the
// mapping keeps; destroying it gives the pages back.
#pragma once

#include "base/user_quota.h"
#include "memory/physical_memory.h"

#include <sys/types.h>

#include <cstdint>
#include <map>

namespace ioasid {

using PinCharge = UserQuota::Charge;

class PinAccounting {
 public:
  // 1 GiB of 4 KiB pages per user.
  static constexpr uint64_t kDefaultLimitPages = (1ull << 30) >> kPageShift;

  // limit_pages: per-user limit in 4 KiB pages; 0 means unlimited. Root is not exempt.
  explicit PinAccounting(uint64_t limit_pages = kDefaultLimitPages);

  // Charges `pages` to `uid`. ENOMEM if that would take uid past the limit, with a
  // reason naming the uid, the pages asked for, those already pinned and the limit.
  Result<PinCharge> charge(uid_t uid, uint64_t pages) { return quota_.charge(uid, pages); }

  uint64_t pinned_pages(uid_t uid) const { return quota_.held(uid); }
  uint64_t total_pinned_pages() const { return quota_.total(); }
  // Users with pages pinned now, by uid (for the admin status).
  std::map<uid_t, uint64_t> pinned_by_uid() const { return quota_.held_by_uid(); }

  uint64_t limit_pages() const { return quota_.limit(); }
  // Applies to later charges; existing charges stay even if above the new limit.
  void set_limit_pages(uint64_t limit_pages) { quota_.set_limit(limit_pages); }

 private:
  UserQuota quota_;
};

}  // namespace ioasid
