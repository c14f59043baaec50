// SPDX-License-Identifier: MIT
// The service-manager side of sd_notify(3), for whatever starts ioasidd and must know
// when it serves: a datagram socket to name in the daemon's NOTIFY_SOCKET, and a wait
// for its READY=1 that also notices the daemon dying. Header-only: ioasid-wait-ready
// and the C++ test launchers (conformance, benchmarks, stress) share it.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>

namespace ioasid::test {

class NotifyListener {
 public:
  enum class Outcome { Ready, Exited, TimedOut, Error };

  // An abstract address (no file to clean up), unique to this process and call.
  NotifyListener() {
    static std::atomic<unsigned> serial{0};
    name_ = "ioasid-ready-" + std::to_string(::getpid()) + "-" + std::to_string(serial++);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      error_ = std::string("socket: ") + std::strerror(errno);
      return;
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name_.data(), name_.size());  // sun_path[0] == 0: abstract
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_.size());
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
      error_ = std::string("bind: ") + std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
  }
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;
  ~NotifyListener() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool ok() const { return fd_ >= 0; }
  // The value for NOTIFY_SOCKET ('@': sd_notify's spelling of the abstract namespace).
  std::string socket_env() const { return "@" + name_; }
  // Why it failed: the socket's error, or the daemon's last STATUS= line.
  const std::string& error() const { return error_; }
  const std::string& status() const { return status_; }

  // Until READY=1 arrives, `daemon` (a process, usually our child) exits, or `timeout`
  // passes. Leaves `daemon` unreaped: its parent reaps it.
  Outcome wait_ready(pid_t daemon, std::chrono::milliseconds timeout) {
    if (fd_ < 0) return Outcome::Error;
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, daemon, 0));
    if (pidfd < 0) {
      error_ = std::string("pidfd_open: ") + std::strerror(errno);
      return Outcome::Error;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Outcome outcome = Outcome::TimedOut;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd fds[2] = {{fd_, POLLIN, 0}, {pidfd, POLLIN, 0}};
      const int ready = ::poll(fds, 2, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) {
        error_ = std::string("poll: ") + std::strerror(errno);
        outcome = Outcome::Error;
        break;
      }
      // Messages first: a daemon may say READY=1 and exit at once.
      if (fds[0].revents & POLLIN) {
        if (read_messages()) {
          outcome = Outcome::Ready;
          break;
        }
        continue;
      }
      if (fds[1].revents & POLLIN) {
        read_messages();  // its last STATUS=, if any, says why
        outcome = Outcome::Exited;
        break;
      }
    }
    ::close(pidfd);
    return outcome;
  }

 private:
  // Reads every queued datagram; true once one holds READY=1.
  bool read_messages() {
    bool ready = false;
    char buffer[4096];
    for (;;) {
      const ssize_t got = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (got < 0) return ready;
      std::string_view message(buffer, static_cast<size_t>(got));
      while (!message.empty()) {
        const size_t end = std::min(message.find('\n'), message.size());
        const std::string_view line = message.substr(0, end);
        if (line == "READY=1") ready = true;
        if (line.starts_with("STATUS=")) status_ = line.substr(7);
        message.remove_prefix(std::min(end + 1, message.size()));
      }
    }
  }

  std::string name_;
  int fd_ = -1;
  std::string error_;
  std::string status_;
};

}  // namespace ioasid::test
