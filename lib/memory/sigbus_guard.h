// SPDX-License-Identifier: MIT
// Client files mapped into the daemon can shrink under it (the client truncates its
// memfd) or fail to supply a page (a full tmpfs, an exhausted hugetlb pool). Touching
// such a page raises SIGBUS, which would kill the daemon and every other client.
//
// So every access to mapped client memory runs inside a SigbusGuard. A SIGBUS inside
// the guarded region makes the handler replace the whole region with private zero
// pages (the faulting instruction then completes harmlessly), set the guard's
// `broken` flag and return; the owner of the mapping reports EFAULT from then on.
// A SIGBUS anywhere else goes to the previous disposition (by default: the process
// dies as it would have). Wayland compositors protect client shm pools the same way.
#pragma once

#include <atomic>
#include <cstddef>

namespace ioasid {

// Installs the process-wide SIGBUS handler once; later calls do nothing.
void install_sigbus_handler();

// Marks [base, base + size) as being accessed by this thread until destruction.
// Guards may nest (the innermost one that contains the address wins).
class SigbusGuard {
 public:
  SigbusGuard(std::byte* base, size_t size, std::atomic<bool>& broken);
  ~SigbusGuard();
  SigbusGuard(const SigbusGuard&) = delete;
  SigbusGuard& operator=(const SigbusGuard&) = delete;

  // Read by the signal handler of this thread only.
  std::byte* const base;
  const size_t size;
  std::atomic<bool>& broken;
  SigbusGuard* const outer;
};

}  // namespace ioasid
