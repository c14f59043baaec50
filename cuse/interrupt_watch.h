// SPDX-License-Identifier: MIT
// The daemon's answer to FUSE_INTERRUPT for an ioctl: end the call with EINTR only
// when the caller has a signal that will run a handler or end it (uapi/caller_signals.h).
//
// The kernel interrupts a request once, for whatever signal woke its caller first, and
// then waits killably. A stop (Ctrl-Z, strace, gdb) is such a signal: the call must go
// on. But a handled signal or SIGKILL that comes later brings no second interrupt, so
// after an interrupt that did not end the call the watch looks at the caller's pending
// signals again every kPeriod until the call returns.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

namespace ioasid::daemon {

class InterruptWatch {
 public:
  static constexpr std::chrono::milliseconds kPeriod{50};

  // One ioctl that may be interrupted; lives on the ioctl's stack, from before the
  // interrupt callback is registered to after forget().
  struct Call {
    pid_t caller_tid = 0;  // fuse_req_ctx()->pid
    uint32_t context = 0;  // for the log
    std::atomic<bool> cancelled{false};
    std::function<void()> wake;  // makes the call's waits look at `cancelled`
  };

  InterruptWatch() = default;
  ~InterruptWatch();  // every call must have been forgotten
  InterruptWatch(const InterruptWatch&) = delete;
  InterruptWatch& operator=(const InterruptWatch&) = delete;

  // The kernel's FUSE_INTERRUPT for `call`: cancels it now if the caller has a signal
  // that ends the call, else watches it. Never throws (it runs in a libfuse callback).
  void interrupted(Call& call) noexcept;
  // The call returned: no longer watched, and never cancelled after this returns.
  void forget(Call& call) noexcept;

 private:
  void run(std::stop_token stop);
  // True when `call` should end now (and logs why); false to let it go on.
  static bool should_cancel(const Call& call, bool first_look);
  static void cancel(Call& call);

  std::mutex mutex_;
  std::condition_variable_any changed_;
  std::vector<Call*> watched_;
  std::jthread thread_;  // started at the first ignored interrupt
};

}  // namespace ioasid::daemon
