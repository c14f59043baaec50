// SPDX-License-Identifier: MIT
// ioasidd on a FUSE mount of its own, for benchmarks that go through the node.
#pragma once

#include "notify_listener.h"

#include <linux/ioasid.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace {

struct Server {
  pid_t pid = -1;
  std::string dir;
  std::string node;
};

// For the null FUSE server (null_server.h), which has no readiness protocol: ioasidd
// says READY=1 (start_daemon).
inline bool wait_for_node(const std::string& node) {
  for (int i = 0; i < 500; ++i) {
    const int fd = ::open(node.c_str(), O_RDWR);
    if (fd >= 0) {
      const bool ready = ioctl(fd, IOASID_GET_API_VERSION) >= 0;
      ::close(fd);
      if (ready) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

inline std::string temp_dir() {
  char pattern[] = "/tmp/ioasid-bench.XXXXXX";
  return mkdtemp(pattern);
}

// Returns once the daemon said READY=1 (its node answers), or with pid -1 if it did
// not within 10 s.
inline Server start_daemon() {
  Server server{.dir = temp_dir()};
  server.node = server.dir + "/mnt/ioasid";
  const char* path = std::getenv("IOASIDD") ? std::getenv("IOASIDD") : IOASIDD_PATH;
  ioasid::test::NotifyListener ready;
  if (!ready.ok()) return server;
  const std::string notify_socket = ready.socket_env();
  server.pid = fork();
  if (server.pid == 0) {
    setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
    const std::string mount = server.dir + "/mnt", admin = server.dir + "/admin.sock",
                      log = server.dir + "/ioasidd.log";
    execl(path, path, "--frontend", "fuse", "--fuse", mount.c_str(), "--admin-socket", admin.c_str(), "--log-file",
          log.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  if (server.pid > 0 &&
      ready.wait_ready(server.pid, std::chrono::seconds(10)) != ioasid::test::NotifyListener::Outcome::Ready) {
    kill(server.pid, SIGKILL);
    waitpid(server.pid, nullptr, 0);
    umount2((server.dir + "/mnt").c_str(), MNT_DETACH);
    server.pid = -1;
  }
  return server;
}

inline void stop(Server& server) {
  if (server.pid <= 0) return;
  kill(server.pid, SIGTERM);
  waitpid(server.pid, nullptr, 0);
  umount2((server.dir + "/mnt").c_str(), MNT_DETACH);
  std::filesystem::remove_all(server.dir);
  server.pid = -1;
}

}  // namespace
