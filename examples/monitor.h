// SPDX-License-Identifier: MIT
// `ioasidctl monitor`: the daemon's events as they happen, filtered by kind, device
// and context, as `ip monitor` prints a kernel's. Netlink when the daemon publishes
// there and we may join the group (CAP_NET_ADMIN), else the admin socket's stream.
#pragma once

#include <string>
#include <vector>

namespace ioasid::examples {

// The words after `monitor` (kinds and options). `socket_path` and `as_json` are
// ioasidctl's own --socket and --json. Returns the exit status: 0, 1 when the
// daemon or the socket failed, 2 for a usage error.
int run_monitor(const std::vector<std::string>& words, const std::string& socket_path, bool as_json);

// The kinds and event names `monitor KIND` accepts, for the help text.
std::string monitor_kinds();

}  // namespace ioasid::examples
