// SPDX-License-Identifier: MIT
// A count per uid with a limit: how much of one kind of thing (pinned pages, mappings,
// IOASIDs) each user holds. A charge is an RAII object the counted thing keeps;
// destroying it gives the units back. Charges hold the shared state, so they may
// outlive the quota.
//
// The daemon's own resources (fds, memory maps, page-table pages) grow with these
// counts, so the per-user limits are what bounds them daemon-wide (docs/SECURITY.md).
#pragma once

#include "base/result.h"

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace ioasid {

class UserQuota {
 public:
  class Charge {
   public:
    Charge() = default;  // charges nothing
    Charge(Charge&& other) noexcept
        : state_(std::move(other.state_)), uid_(other.uid_), units_(std::exchange(other.units_, 0)) {}
    Charge& operator=(Charge&& other) noexcept {
      if (this != &other) {
        release();
        state_ = std::move(other.state_);
        uid_ = other.uid_;
        units_ = std::exchange(other.units_, 0);
      }
      return *this;
    }
    Charge(const Charge&) = delete;
    Charge& operator=(const Charge&) = delete;
    ~Charge() { release(); }
    // Gives the units back now (idempotent).
    void release();

   private:
    friend class UserQuota;
    struct State;
    Charge(std::shared_ptr<State> state, uid_t uid, uint64_t units)
        : state_(std::move(state)), uid_(uid), units_(units) {}
    std::shared_ptr<State> state_;
    uid_t uid_ = 0;
    uint64_t units_ = 0;
  };

  // Why a charge was refused: (uid, units asked, units held, limit) -> the reason.
  using Refusal = std::function<Error(uid_t, uint64_t, uint64_t, uint64_t)>;

  // limit 0: unlimited. Root is exempt when `root_exempt` (as for opens: root can
  // exhaust the machine anyway).
  UserQuota(uint64_t limit, bool root_exempt, Refusal refusal);
  // The common refusal: `code`, "uid U holds N <what>, the limit per user (<option> L)".
  UserQuota(std::string what, std::string option, int code, uint64_t limit, bool root_exempt);

  Result<Charge> charge(uid_t uid, uint64_t units = 1);
  uint64_t held(uid_t uid) const;
  uint64_t total() const;
  std::map<uid_t, uint64_t> held_by_uid() const;  // only users holding something
  uint64_t limit() const;
  // Applies to later charges; existing charges stay even if above the new limit.
  void set_limit(uint64_t limit);

 private:
  std::shared_ptr<Charge::State> state_;
};

struct UserQuota::Charge::State {
  mutable std::mutex mutex;
  uint64_t limit;
  bool root_exempt;
  Refusal refusal;
  uint64_t total = 0;
  std::map<uid_t, uint64_t> held;  // only users holding something
};

inline void UserQuota::Charge::release() {
  if (state_ != nullptr && units_ != 0) {
    std::lock_guard lock(state_->mutex);
    if (auto entry = state_->held.find(uid_); entry != state_->held.end()) {
      entry->second -= std::min(entry->second, units_);
      if (entry->second == 0) state_->held.erase(entry);
    }
    state_->total -= units_;
  }
  state_.reset();
  units_ = 0;
}

inline UserQuota::UserQuota(uint64_t limit, bool root_exempt, Refusal refusal)
    : state_(std::make_shared<Charge::State>()) {
  state_->limit = limit;
  state_->root_exempt = root_exempt;
  state_->refusal = std::move(refusal);
}

inline UserQuota::UserQuota(std::string what, std::string option, int code, uint64_t limit, bool root_exempt)
    : UserQuota(limit, root_exempt, [what = std::move(what), option = std::move(option), code](
                                        uid_t uid, uint64_t, uint64_t held, uint64_t limit) {
        return fail(code, "uid {} holds {} {}, the limit per user ({} {})", uid, held, what, option, limit);
      }) {}

inline Result<UserQuota::Charge> UserQuota::charge(uid_t uid, uint64_t units) {
  if (units == 0) return Charge();
  std::lock_guard lock(state_->mutex);
  const auto entry = state_->held.find(uid);
  const uint64_t held = entry == state_->held.end() ? 0 : entry->second;
  const uint64_t limit = state_->limit;
  if (limit != 0 && !(uid == 0 && state_->root_exempt) && (units > limit || held > limit - units))
    return state_->refusal(uid, units, held, limit);
  state_->held[uid] = held + units;
  state_->total += units;
  return Charge(state_, uid, units);
}

inline uint64_t UserQuota::held(uid_t uid) const {
  std::lock_guard lock(state_->mutex);
  const auto entry = state_->held.find(uid);
  return entry == state_->held.end() ? 0 : entry->second;
}

inline uint64_t UserQuota::total() const {
  std::lock_guard lock(state_->mutex);
  return state_->total;
}

inline std::map<uid_t, uint64_t> UserQuota::held_by_uid() const {
  std::lock_guard lock(state_->mutex);
  return state_->held;
}

inline uint64_t UserQuota::limit() const {
  std::lock_guard lock(state_->mutex);
  return state_->limit;
}

inline void UserQuota::set_limit(uint64_t limit) {
  std::lock_guard lock(state_->mutex);
  state_->limit = limit;
}

}  // namespace ioasid
