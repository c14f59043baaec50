// SPDX-License-Identifier: MIT
#include "service_manager.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace ioasid::daemon {

void notify_service_manager(const std::string& assignments) {
  // 0: no NOTIFY_SOCKET; < 0: the manager went away. Neither stops the daemon.
  if (const int sent = sd_notify(0, assignments.c_str()); sent < 0)
    spdlog::debug("sd_notify: {}", std::strerror(-sent));
}

Result<void> wait_for_nodes(const std::vector<std::string>& paths, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const std::string& path : paths) {
    // CUSE: the device appears once its session has answered CUSE_INIT, a few ms after start.
    struct stat st {};
    while (::stat(path.c_str(), &st) != 0) {
      const int error = errno;
      if (std::chrono::steady_clock::now() >= deadline)
        return fail(ETIMEDOUT, "{} did not appear within {} ms: {}", path, timeout.count(), std::strerror(error));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return success();
}

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  uintmax_t device = 0, inode = 0;
  if (!stream || std::sscanf(stream, "%ju:%ju", &device, &inode) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

}  // namespace ioasid::daemon
