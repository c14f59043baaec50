// SPDX-License-Identifier: MIT
// Whether a signal sent to a client in a blocking ioctl should end the call.
//
// FUSE tells the daemon of any signal that wakes the caller's wait, stop signals
// included, with one FUSE_INTERRUPT per request, and then waits killably; a FUSE
// server cannot answer -ERESTARTSYS. So a call the kernel would restart unseen (a
// Ctrl-Z and fg, strace or gdb attaching) must simply go on, and only a signal that
// runs a handler or ends the process may end it with EINTR. The decision reads the
// caller thread's signal masks from /proc (parse_signal_masks, pure) and classifies
// them (signal_ending_the_call, pure); read_signal_masks does the reading.
#pragma once

#include "base/result.h"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace ioasid::dev_ioasid {

// Bit N-1 stands for signal N, as /proc/<pid>/status prints them.
struct SignalMasks {
  uint64_t thread_pending = 0;  // SigPnd: sent to this thread
  uint64_t shared_pending = 0;  // ShdPnd: sent to the process, for any thread to take
  uint64_t blocked = 0;         // SigBlk
  uint64_t ignored = 0;         // SigIgn
  uint64_t caught = 0;          // SigCgt: a handler is installed
};

// The masks from the text of /proc/<pid>/task/<tid>/status; EINVAL if a field is
// missing or is not 16 hex digits.
Result<SignalMasks> parse_signal_masks(std::string_view status_text);

// The lowest-numbered pending signal, not blocked, that will run a handler or end the
// process by its default action (SIGKILL always); nullopt when every pending signal
// only stops or continues the process or is ignored, so the call should go on.
std::optional<int> signal_ending_the_call(const SignalMasks& masks);

// The masks of thread `tid` (in the daemon's pid namespace), from
// /proc/<tid>/task/<tid>/status. The errno of the open or EINVAL.
Result<SignalMasks> read_signal_masks(pid_t tid);

}  // namespace ioasid::dev_ioasid
