// SPDX-License-Identifier: MIT
#include "memory/backing_for_file.h"

#include "memory/client_file.h"
#include "memory/mapped_file_backing.h"
#include "memory/physical_memory.h"

namespace ioasid {
Result<std::shared_ptr<Backing>> backing_for_file(pid_t pid, int fd, uint64_t offset,
                                                  uint64_t length, MapAccess access) {
  if (fd < 0) return fail(EBADF, "fd {} is not a file descriptor", fd);
  if (length == 0 || offset % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "file range {:#x}+{:#x}: both must be non-zero multiples of 4 KiB", offset,
                length);
  if (offset + length < offset)
    return fail(EOVERFLOW, "file range {:#x}+{:#x} wraps around", offset, length);

  auto file = take_client_file(pid, fd);
  IOASID_TRY(file);
  if (allows_write(access) && file->access_mode != O_RDWR)
    return fail(EACCES, "{} is not open read-write; a writeable mapping needs O_RDWR", file->name);
  if (file->access_mode == O_WRONLY)
    return fail(EACCES, "{} is open write-only; mapping it needs read access", file->name);
  auto backing = MappedFileBacking::create(file->fd.get(), offset, length, access,
                                           fmt::format("{} [{:#x}, {:#x})", file->name, offset, offset + length));
  if (!backing) return std::move(backing).error();
  (*backing)->set_origin({.kind = ClientOrigin::Kind::kFile,
                          .at = offset,
                          .file_major = file->status.stx_dev_major,
                          .file_minor = file->status.stx_dev_minor,
                          .file_inode = file->status.stx_ino});
  return std::shared_ptr<Backing>(std::move(*backing));
}

}  // namespace ioasid
