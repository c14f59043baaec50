// SPDX-License-Identifier: MIT
// Fault injection in the spirit of the kernel's /proc/thread-self/fail-nth: a test arms
// the calling thread with N, and the Nth injectable point that thread reaches fails as
// if the resource had run out. Replaying a scenario with N = 1, 2, ... until nothing
// fails drives every error path of every step, one at a time.
//
// Per thread, as in the kernel: work the engine hands to the device executor is not
// counted. Disarmed (the normal case) a point costs one thread-local load.
#pragma once

#include "base/result.h"

#include <cerrno>
#include <string_view>

namespace ioasid::fail_nth {

// What an injectable point models running out of.
enum class Site : unsigned {
  kAllocation = 1u << 0,  // an engine object: a context, PASID, set, domain, IOVA area, HPA segment, mapping
  kClientCopy = 1u << 1,  // a copy to or from the calling client's memory (EFAULT)
  kTablePage = 1u << 2,   // a page-table page from the pool
};
inline constexpr unsigned kAllSites = 0x7;

struct Armed {
  unsigned countdown = 0;  // 0: disarmed
  unsigned sites = 0;
  bool injected = false;
};

inline Armed& armed() {
  thread_local Armed state;
  return state;
}

// The calling thread's nth point among `sites` fails (n >= 1); n = 0 disarms.
inline void arm(unsigned n, unsigned sites = kAllSites) { armed() = Armed{n, sites, false}; }

// Disarms; true if a failure was injected since arm().
inline bool disarm() {
  const bool injected = armed().injected;
  armed() = Armed{};
  return injected;
}

// Counts one point of `site`; true when it is the one to fail (then disarmed).
inline bool should_fail(Site site) {
  Armed& state = armed();
  if (state.countdown == 0) [[likely]]
    return false;
  if ((state.sites & static_cast<unsigned>(site)) == 0) return false;
  if (--state.countdown != 0) return false;
  state.injected = true;
  return true;
}

// The point as a Result: ENOMEM (EFAULT for a client copy) naming `what`.
inline Result<void> point(Site site, std::string_view what) {
  if (!should_fail(site)) [[likely]]
    return success();
  return fail(site == Site::kClientCopy ? EFAULT : ENOMEM, "injected failure (fail-nth): {}", what);
}

}  // namespace ioasid::fail_nth
