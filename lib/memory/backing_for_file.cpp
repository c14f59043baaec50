#include "memory/backing_for_file.h"

#include "memory/mapped_file_backing.h"
#include "memory/physical_memory.h"
#include "base/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <optional>
#include <string_view>

namespace ioasid {
namespace {

struct FdInfo {
  unsigned flags = 0;             // open flags, octal in the file
  std::optional<uint64_t> inode;  // "ino:" exists since Linux 5.14
};

std::optional<uint64_t> field(std::string_view text, std::string_view name, int base) {
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find('\n', at), text.size());
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (!line.starts_with(name)) continue;
    line.remove_prefix(name.size());
    line.remove_prefix(std::min(line.find_first_not_of(" \t"), line.size()));
    uint64_t value = 0;
    const auto [last, error] = std::from_chars(line.data(), line.data() + line.size(), value, base);
    if (error == std::errc() && last != line.data()) return value;
    return std::nullopt;
  }
  return std::nullopt;
}

Result<FdInfo> read_fdinfo(pid_t pid, int fd) {
  const std::string path = fmt::format("/proc/{}/fdinfo/{}", pid, fd);
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) {
    const int error = errno;
    if (error == ENOENT) return fail(EBADF, "pid {} has no open fd {}", pid, fd);
    return fail(error == EACCES ? EPERM : error, "open {}: {}", path, std::strerror(error));
  }
  char buffer[4096];
  const ssize_t got = ::read(file.get(), buffer, sizeof buffer);
  if (got <= 0) return fail(EBADF, "pid {} has no open fd {} (empty {})", pid, fd, path);
  const std::string_view text(buffer, static_cast<size_t>(got));
  const auto flags = field(text, "flags:", 8);
  if (!flags) return fail(EIO, "no flags in {}", path);
  return FdInfo{static_cast<unsigned>(*flags), field(text, "ino:", 10)};
}

}  // namespace

Result<std::shared_ptr<Backing>> backing_for_file(pid_t pid, int fd, uint64_t offset,
                                                  uint64_t length, MapAccess access) {
  if (fd < 0) return fail(EBADF, "fd {} is not a file descriptor", fd);
  if (length == 0 || offset % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "file range {:#x}+{:#x}: both must be non-zero multiples of 4 KiB", offset,
                length);
  if (offset + length < offset)
    return fail(EOVERFLOW, "file range {:#x}+{:#x} wraps around", offset, length);

  const std::string path = fmt::format("/proc/{}/fd/{}", pid, fd);
  // stat() follows the magic link without opening anything.
  struct stat target {};
  if (::stat(path.c_str(), &target) != 0) {
    const int error = errno;
    if (error == ENOENT) {
      if (::access(fmt::format("/proc/{}", pid).c_str(), F_OK) != 0)
        return fail(ESRCH, "no process {}", pid);
      return fail(EBADF, "pid {} has no open fd {}", pid, fd);
    }
    if (error == EACCES || error == EPERM)
      return fail(EPERM, "no ptrace access to pid {} (cannot follow {})", pid, path);
    return fail(error, "stat {}: {}", path, std::strerror(error));
  }
  if (!S_ISREG(target.st_mode))
    return fail(EINVAL, "fd {} of pid {} is not a regular file (memfd, shm or hugetlbfs)", fd, pid);

  UniqueFd file(
      ::open(path.c_str(), (allows_write(access) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY));
  if (!file) {
    const int error = errno;
    if (error == ENOENT) return fail(EBADF, "pid {} has no open fd {}", pid, fd);
    return fail(error, "reopen {}: {}", path, std::strerror(error));
  }
  struct stat opened {};
  if (::fstat(file.get(), &opened) != 0 || opened.st_dev != target.st_dev ||
      opened.st_ino != target.st_ino)
    return fail(EBADF, "fd {} of pid {} changed while it was being mapped", fd, pid);

  // Read after reopening: if fdinfo still names this inode, the client held (at that
  // moment) an open file description of this very file with these flags.
  auto info = read_fdinfo(pid, fd);
  if (!info) return std::move(info).error();
  if (info->inode && *info->inode != static_cast<uint64_t>(opened.st_ino))
    return fail(EBADF, "fd {} of pid {} changed while it was being mapped", fd, pid);
  if (info->flags & O_PATH) return fail(EBADF, "fd {} of pid {} is an O_PATH descriptor", fd, pid);
  const unsigned mode = info->flags & O_ACCMODE;
  if (allows_write(access) && mode != O_RDWR)
    return fail(EACCES, "fd {} of pid {} is not open read-write; a writeable mapping needs O_RDWR",
                fd, pid);
  if (mode == O_WRONLY)
    return fail(EACCES, "fd {} of pid {} is open write-only; mapping it needs read access", fd,
                pid);

  char name[256] = {};
  const ssize_t name_length = ::readlink(path.c_str(), name, sizeof name - 1);
  auto backing = MappedFileBacking::create(
      file.get(), offset, length, access,
      fmt::format("pid {} fd {} ({}) [{:#x}, {:#x})", pid, fd,
                  name_length > 0 ? std::string_view(name, static_cast<size_t>(name_length))
                                  : std::string_view("?"),
                  offset, offset + length));
  if (!backing) return std::move(backing).error();
  return std::shared_ptr<Backing>(std::move(*backing));
}

}  // namespace ioasid
