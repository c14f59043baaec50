// Pinned-page accounting: every page a user's mappings pin counts against that
// user's limit, as RLIMIT_MEMLOCK does for VFIO. A charge is an RAII object the
// mapping keeps; destroying it gives the pages back. Charges hold the shared state,
// so they may outlive the PinAccounting that made them.
#pragma once

#include "base/result.h"
#include "memory/physical_memory.h"

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace ioasid {

class PinAccounting;

class PinCharge {
 public:
  PinCharge() = default;  // charges nothing
  PinCharge(PinCharge&& other) noexcept;
  PinCharge& operator=(PinCharge&& other) noexcept;
  PinCharge(const PinCharge&) = delete;
  PinCharge& operator=(const PinCharge&) = delete;
  ~PinCharge() { release(); }

  uid_t uid() const { return uid_; }
  uint64_t pages() const { return pages_; }
  // Gives the pages back now (idempotent).
  void release();

 private:
  friend class PinAccounting;
  struct State;
  PinCharge(std::shared_ptr<State> state, uid_t uid, uint64_t pages)
      : state_(std::move(state)), uid_(uid), pages_(pages) {}

  std::shared_ptr<State> state_;
  uid_t uid_ = 0;
  uint64_t pages_ = 0;
};

class PinAccounting {
 public:
  // 1 GiB of 4 KiB pages per user.
  static constexpr uint64_t kDefaultLimitPages = (1ull << 30) >> kPageShift;

  // limit_pages: per-user limit in 4 KiB pages; 0 means unlimited.
  explicit PinAccounting(uint64_t limit_pages = kDefaultLimitPages);

  // Charges `pages` to `uid`. ENOMEM if that would take uid past the limit, with a
  // reason naming the uid, the pages asked for, those already pinned and the limit.
  Result<PinCharge> charge(uid_t uid, uint64_t pages);

  uint64_t pinned_pages(uid_t uid) const;
  uint64_t total_pinned_pages() const;
  // Users with pages pinned now, by uid (for the admin status).
  std::map<uid_t, uint64_t> pinned_by_uid() const;

  uint64_t limit_pages() const;
  // Applies to later charges; existing charges stay even if above the new limit.
  void set_limit_pages(uint64_t limit_pages);

 private:
  std::shared_ptr<PinCharge::State> state_;
};

}  // namespace ioasid
