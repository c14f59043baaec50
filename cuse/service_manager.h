// SPDX-License-Identifier: MIT
// What the daemon tells its service manager (systemd with Type=notify, or
// ioasid-wait-ready): readiness, status lines, stopping. And how it logs under it.
#pragma once

#include "base/result.h"

#include <chrono>
#include <string>
#include <vector>

namespace ioasid::daemon {

// Sends sd_notify(3) assignments such as "READY=1\nSTATUS=...". Without NOTIFY_SOCKET
// nothing is sent: the daemon runs the same without a service manager.
void notify_service_manager(const std::string& assignments);

// Returns once every path exists and, for a FUSE node, answers a stat (the kernel asks
// the daemon): what a client opening it needs. ETIMEDOUT after `timeout`.
Result<void> wait_for_nodes(const std::vector<std::string>& paths, std::chrono::milliseconds timeout);

// True when stderr is the journal's stream (JOURNAL_STREAM names stderr's device and
// inode, sd_journal_stream_fd(3)): lines then carry their "<N>" priority prefix and no
// timestamp of their own.
bool stderr_is_journal();

}  // namespace ioasid::daemon
