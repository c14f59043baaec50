// SPDX-License-Identifier: MIT
// The node: opening it, the generic ioctls, fault records, error messages.
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace ioasid::client {

namespace {

// Indexed by command number minus IOASID_BASE, in the header's order.
constexpr std::array<const char*, 29> kCommandNames = {
    "IOASID_GET_API_VERSION",     "IOASID_CHECK_EXTENSION",     "IOASID_GET_INFO",
    "IOASID_PASID_REQUEST",       "IOASID_PASID_LOOKUP",        "IOASID_ALLOC",
    "IOASID_FREE",                "IOASID_MAP_DMA",             "IOASID_MAP_FILE",
    "IOASID_UNMAP_DMA",           "IOASID_IOVA_RANGES",         "IOASID_BIND_PGTBL",
    "IOASID_UNBIND_PGTBL",        "IOASID_CACHE_INVLD",         "IOASID_DEVICE_BIND",
    "IOASID_DEVICE_UNBIND",       "IOASID_DEVICE_GET_INFO",     "IOASID_ATTACH_IOASID",
    "IOASID_ATTACH_IOASID_PASID", "IOASID_DETACH_IOASID",       "IOASID_DETACH_IOASID_PASID",
    "IOASID_PAGE_RESP",           "IOASID_SET_DIRTY_TRACKING",  "IOASID_GET_DIRTY_BITMAP",
    "IOASID_DEVICE_DMA",          "IOASID_WQ_CONFIG",           "IOASID_DEVICE_SUBMIT",
    "IOASID_ATS_TRANSLATE",       "IOASID_ATS_INV_ACK"};
static_assert(IOASID_BASE + kCommandNames.size() - 1 == _IOC_NR(IOASID_ATS_INV_ACK));

// Where the daemon's FUSE front end serves the nodes by default (ioasidd --fuse).
constexpr const char* kDefaultFuseDir = "/run/ioasidd/fuse";

// The mount point holding `path` (the longest one /proc/self/mountinfo lists), for a
// path that cannot be stat()ed: a dead FUSE mount answers nothing.
std::string mount_point_of(const std::string& path) {
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line, best = path;
  size_t best_length = 0;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    if (!(fields >> id >> parent >> device >> root >> point)) continue;
    const bool holds = path == point || (path.starts_with(point) && (point == "/" || path[point.size()] == '/'));
    if (holds && point.size() > best_length) {
      best = point;
      best_length = point.size();
    }
  }
  return best;
}

// What to check when open(2) fails the usual ways: the fix, named.
std::string open_hint(int code, const std::string& path) {
  switch (code) {
    case ENOENT: {
      // The FUSE front end without --bind-node serves the node in its mount only.
      const std::string served = std::string(kDefaultFuseDir) + "/" + std::filesystem::path(path).filename().string();
      if (served != path && ::access(served.c_str(), F_OK) == 0)
        return " (ioasidd serves the node at " + served + ": set IOASID_DEV=" + served +
               ", or start ioasidd with --bind-node " + path + ")";
      return " (is ioasidd running? Start it (ioasidd, or systemctl start ioasidd), or set IOASID_DEV to the node "
             "it serves)";
    }
    case ENOTCONN:
      // A FUSE mount whose daemon died: the kernel has no one to ask.
      return " (ioasidd is not running: the daemon that served " + path +
             " is gone and left its mount behind; restart it (systemctl restart ioasidd, or ioasidd), which "
             "replaces the dead mount, or remove it with umount -l " + mount_point_of(path) + ")";
    case EACCES: return " (the node's group may use it: ask to be added, or run as root)";
    default: return "";
  }
}

}  // namespace

namespace detail {

void value_of_failed_result(const Error& error) {
  std::fprintf(stderr, "libioasid: the value of a failed Result was used: %s\n", error.what.c_str());
  std::abort();
}

Error errno_error(std::string_view what, int code) {
  return Error{code, std::string(what) + ": " + std::strerror(code)};
}

Error ioctl_error(unsigned long cmd, int code) { return errno_error(command_name(cmd), code); }

}  // namespace detail

std::string command_name(unsigned long cmd) {
  const unsigned number = _IOC_NR(cmd);
  if (_IOC_TYPE(cmd) == IOASID_TYPE && number >= IOASID_BASE && number - IOASID_BASE < kCommandNames.size())
    return kCommandNames[number - IOASID_BASE];
  char text[32];
  std::snprintf(text, sizeof text, "ioctl %#lx", cmd);
  return text;
}

std::string default_path() {
  if (const char* env = std::getenv("IOASID_DEV"); env && *env) return env;
  return "/dev/ioasid";
}

Result<File> File::open(const std::string& path, int extra_flags) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | extra_flags);
  if (fd < 0) {
    const int code = errno;
    return Error{code, "open " + path + ": " + std::strerror(code) + open_hint(code, path)};
  }
  return File(fd, path);
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

Result<long> File::call(unsigned long cmd, void* arg) const {
  const long rc = ::ioctl(fd_, cmd, arg);
  if (rc < 0) return detail::ioctl_error(cmd, errno);
  return rc;
}

Result<long> File::call_with_value(unsigned long cmd, unsigned long value) const {
  const long rc = ::ioctl(fd_, cmd, value);
  if (rc < 0) return detail::ioctl_error(cmd, errno);
  return rc;
}

Result<uint32_t> File::api_version() const {
  auto version = call_with_value(IOASID_GET_API_VERSION, 0);
  IOASID_CLIENT_TRY(version);
  return static_cast<uint32_t>(*version);
}

Result<bool> File::check_extension(uint32_t feature_index) const {
  auto offered = call_with_value(IOASID_CHECK_EXTENSION, feature_index);
  IOASID_CLIENT_TRY(offered);
  return *offered == 1;
}

Result<ioasid_info> File::info() const {
  ioasid_info info{};
  IOASID_CLIENT_TRY(detail::issue(fd_, IOASID_GET_INFO, info));
  return info;
}

Result<size_t> File::read_faults(std::span<ioasid_fault> records) const {
  const ssize_t got = ::read(fd_, records.data(), records.size_bytes());
  if (got < 0) {
    if (errno == EAGAIN) return size_t{0};  // O_NONBLOCK and nothing queued
    return detail::errno_error("read of fault records", errno);
  }
  if (got % sizeof(ioasid_fault) != 0)
    return Error{EIO, "read of fault records returned " + std::to_string(got) + " bytes, not whole records"};
  return static_cast<size_t>(got) / sizeof(ioasid_fault);
}

Result<bool> File::wait_readable(std::chrono::milliseconds timeout) const {
  pollfd ready{.fd = fd_, .events = POLLIN, .revents = 0};
  const int polled = ::poll(&ready, 1, static_cast<int>(timeout.count()));
  if (polled < 0) return detail::errno_error("poll", errno);
  return polled > 0 && (ready.revents & POLLIN);
}

Result<ioasid_fault> File::next_fault(std::chrono::milliseconds timeout) const {
  auto readable = wait_readable(timeout);
  IOASID_CLIENT_TRY(readable);
  if (!*readable)
    return Error{ETIMEDOUT, "no fault record is readable after " + std::to_string(timeout.count()) + " ms"};
  ioasid_fault record{};
  auto count = read_faults(std::span(&record, 1));
  IOASID_CLIENT_TRY(count);
  if (*count == 0) return Error{EAGAIN, "poll said readable but no fault record was there"};
  return record;
}

}  // namespace ioasid::client
