// SPDX-License-Identifier: MIT
// A per-user bound on the events a client can cause at will (MAP/UNMAP, IOASID
// ALLOC/FREE): without it one user looping over MAP_DMA would fill the relay's
// 16384-event window and push everyone's faults and context events out of it.
// A token bucket per uid: `per_second` events a second, bursts up to that many.
// What is refused is counted, and the user's next admitted event carries the count
// (`suppressed`), so a reader sees the gap. Thread-safe; one short lock per call.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace ioasid::engine {

class PerUserEventBudget {
 public:
  using Clock = std::chrono::steady_clock;

  struct Admission {
    bool send = false;
    uint64_t suppressed_before = 0;  // this user's refusals since its last admission
  };

  // `max_users` bounds the table: when it is full, users whose bucket has refilled
  // (idle ones) are forgotten; a new user that still finds no room is refused.
  explicit PerUserEventBudget(uint32_t per_second, size_t max_users = 4096)
      : per_second_(per_second), max_users_(max_users) {}

  Admission admit(uid_t uid, Clock::time_point now = Clock::now());

  uint32_t per_second() const { return per_second_; }
  uint64_t refused() const;  // all users' refusals so far

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
    uint64_t suppressed = 0;
  };
  void refill(Bucket& bucket, Clock::time_point now) const;

  const uint32_t per_second_;
  const size_t max_users_;
  mutable std::mutex mutex_;
  std::unordered_map<uid_t, Bucket> buckets_;
  uint64_t refused_ = 0;
};

}  // namespace ioasid::engine
