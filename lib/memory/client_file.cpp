// SPDX-License-Identifier: MIT
#include "memory/client_file.h"

#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <stop_token>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL  // Linux 6.9: a pidfd for a thread, not only a leader
#endif

namespace ioasid {
namespace {

std::mutex served_mutex;
std::vector<dev_t> served_devices;

int pidfd_open(pid_t pid, unsigned flags) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags)); }
int pidfd_getfd(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

Result<UniqueFd> open_pidfd(pid_t tid) {
  // Before Linux 6.9 a pidfd names a thread group: use the thread's, whose fd table the
  // thread shares unless it was created without CLONE_FILES.
  UniqueFd pidfd(pidfd_open(tid, PIDFD_THREAD));
  if (!pidfd && errno == EINVAL)
    if (const pid_t group = thread_group_of(tid); group > 0) pidfd.reset(pidfd_open(group, 0));
  if (!pidfd) {
    const int error = errno;
    if (error == ESRCH || error == EINVAL) return fail(ESRCH, "no process {}", tid);
    return fail(error, "pidfd_open({}): {}", tid, std::strerror(error));
  }
  return pidfd;
}

std::string describe(int fd) {
  char name[256] = {};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t length = ::readlink(link.c_str(), name, sizeof name - 1);  // no file system call
  return length > 0 ? std::string(name, static_cast<size_t>(length)) : std::string("?");
}

// One thread, started on first use, closes what it is handed in order.
class Closer {
 public:
  void close(UniqueFd fd) {
    std::unique_lock lock(mutex_);
    if (!thread_.joinable()) {
      try {
        thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
      } catch (const std::system_error&) {
        lock.unlock();
        fd.reset();  // no thread to spare: close here, as before
        return;
      }
    }
    queue_.push_back(std::move(fd));
    wake_.notify_one();
  }

 private:
  void run(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    while (wake_.wait(lock, stop, [this] { return !queue_.empty(); })) {
      UniqueFd fd = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fd.reset();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::deque<UniqueFd> queue_;
  std::jthread thread_;  // last: stopped and joined before the queue goes
};

}  // namespace

pid_t thread_group_of(pid_t tid) {
  std::ifstream status("/proc/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
  return 0;
}

void add_served_device(dev_t device) {
  std::lock_guard lock(served_mutex);
  served_devices.push_back(device);
}

void remove_served_device(dev_t device) {
  std::lock_guard lock(served_mutex);
  if (auto it = std::ranges::find(served_devices, device); it != served_devices.end()) served_devices.erase(it);
}

bool is_served_device(dev_t device) {
  std::lock_guard lock(served_mutex);
  return std::ranges::find(served_devices, device) != served_devices.end();
}

void close_off_session_thread(UniqueFd fd) {
  static Closer closer;
  closer.close(std::move(fd));
}

Result<struct statx> cached_status(int fd) {
  struct statx status {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO | STATX_SIZE, &status) != 0) {
    const int error = errno;
    return fail(error, "statx: {}", std::strerror(error));
  }
  return status;
}

namespace {

Result<UniqueFd> take_fd(pid_t tid, int fd) {
  if (fd < 0) return fail(EBADF, "fd {} is not a file descriptor", fd);
  auto pidfd = open_pidfd(tid);
  IOASID_TRY(pidfd);
  UniqueFd taken(pidfd_getfd(pidfd->get(), fd));
  if (!taken) {
    const int error = errno;
    if (error == EBADF) return fail(EBADF, "pid {} has no open fd {}", tid, fd);
    if (error == EPERM || error == EACCES) return fail(EPERM, "no ptrace access to pid {} (pidfd_getfd of fd {})", tid, fd);
    if (error == ESRCH) return fail(ESRCH, "no process {}", tid);
    return fail(error, "pidfd_getfd of fd {} of pid {}: {}", fd, tid, std::strerror(error));
  }
  return taken;
}

// The FUSE node is a file of a served mount; the CUSE node a served device number.
bool is_cuse_node(const struct statx& status) {
  return S_ISCHR(status.stx_mode) && is_served_device(makedev(status.stx_rdev_major, status.stx_rdev_minor));
}
bool is_served_node(const struct statx& status) {
  return is_cuse_node(status) || is_served_device(makedev(status.stx_dev_major, status.stx_dev_minor));
}

}  // namespace

Result<bool> holds_served_node(pid_t tid, int fd) {
  auto taken = take_fd(tid, fd);
  if (!taken && taken.code() == EBADF) return false;
  IOASID_TRY(taken);
  auto status = cached_status(taken->get());
  IOASID_TRY(status);
  if (is_cuse_node(*status)) close_off_session_thread(std::move(*taken));
  return is_served_node(*status);
}

Result<ClientFile> take_client_file(pid_t tid, int fd) {
  auto taken = take_fd(tid, fd);
  IOASID_TRY(taken);
  ClientFile file{.fd = std::move(*taken), .name = {}};
  file.name = fmt::format("pid {} fd {} ({})", tid, fd, describe(file.fd.get()));
  const int flags = ::fcntl(file.fd.get(), F_GETFL);
  if (flags < 0) return fail(EBADF, "{}: F_GETFL: {}", file.name, std::strerror(errno));
  if (flags & O_PATH) return fail(EBADF, "{} is an O_PATH descriptor: it grants no access to the file", file.name);
  file.access_mode = flags & O_ACCMODE;
  auto status = cached_status(file.fd.get());
  if (!status) return fail(status.code(), "{}: {}", file.name, status.error().why);
  file.status = *status;
  const bool cuse_node = is_cuse_node(file.status);
  const bool served = is_served_node(file.status);
  if (served || !S_ISREG(file.status.stx_mode)) {
    const std::string name = file.name;
    if (cuse_node) close_off_session_thread(std::move(file.fd));
    if (served) return fail(EINVAL, "{} is a node this daemon serves; it cannot back a mapping", name);
    return fail(EINVAL, "{} is not a regular file (memfd, shm or hugetlbfs)", name);
  }
  return file;
}

}  // namespace ioasid
