// SPDX-License-Identifier: MIT
#include "engine/event_budget.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace ioasid::engine {

void PerUserEventBudget::refill(Bucket& bucket, Clock::time_point now) const {
  if (now <= bucket.updated) return;  // steady_clock: only equal, never earlier
  const double seconds = std::chrono::duration<double>(now - bucket.updated).count();
  bucket.tokens = std::min<double>(per_second_, bucket.tokens + seconds * per_second_);
  bucket.updated = now;
}

PerUserEventBudget::Admission PerUserEventBudget::admit(uid_t uid, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(uid);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_users_) {
      // Forget idle users (full buckets): they lose nothing, a new bucket starts full.
      for (auto entry = buckets_.begin(); entry != buckets_.end();) {
        refill(entry->second, now);
        const bool idle = entry->second.tokens >= per_second_ && entry->second.suppressed == 0;
        entry = idle ? buckets_.erase(entry) : std::next(entry);
      }
      if (buckets_.size() >= max_users_) {
        ++refused_;
        return {};
      }
    }
    it = buckets_.emplace(uid, Bucket{.tokens = static_cast<double>(per_second_), .updated = now}).first;
  }
  Bucket& bucket = it->second;
  refill(bucket, now);
  if (bucket.tokens < 1.0) {
    ++bucket.suppressed;
    ++refused_;
    return {};
  }
  bucket.tokens -= 1.0;
  return {.send = true, .suppressed_before = std::exchange(bucket.suppressed, 0)};
}

uint64_t PerUserEventBudget::refused() const {
  std::lock_guard lock(mutex_);
  return refused_;
}

}  // namespace ioasid::engine
