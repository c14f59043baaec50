// SPDX-License-Identifier: MIT
#include "memory/mapped_file_backing.h"

#include "base/fail_nth.h"

#include "memory/physical_memory.h"
#include "memory/client_file.h"
#include "memory/sigbus_guard.h"

#include <sys/sysmacros.h>

#include <sys/stat.h>

#include <cstring>

namespace ioasid {

Result<std::shared_ptr<MappedFileBacking>> MappedFileBacking::create(int fd, uint64_t offset,
                                                                     uint64_t length,
                                                                     MapAccess access,
                                                                     std::string description) {
  if (length == 0 || offset % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "{}: offset {:#x} and length {:#x} must be non-zero multiples of 4 KiB",
                description, offset, length);
  if (offset + length < offset)
    return fail(EOVERFLOW, "{}: offset {:#x} + length {:#x} overflows", description, offset,
                length);
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "a mapping of client memory"));
  auto status = cached_status(fd);
  if (!status) return fail(status.code(), "{}: {}", description, status.error().why);
  if (is_served_device(makedev(status->stx_dev_major, status->stx_dev_minor)))
    return fail(EINVAL, "{} is a node this daemon serves; it cannot back a mapping", description);
  if (!S_ISREG(status->stx_mode))
    return fail(EINVAL, "{} is not a regular file (memfd, shm or hugetlbfs)", description);
  const uint64_t file_size = status->stx_size;
  if (offset + length > file_size)
    return fail(EINVAL, "{}: bytes [{:#x}, {:#x}) are beyond the end of the file ({:#x} bytes)",
                description, offset, offset + length, file_size);

  auto view = FileView::of(fd, *status, offset + length, allows_write(access));
  if (!view) {
    Error error = std::move(view).error();
    error.why = fmt::format("{}: {}", description, error.why);
    return error;
  }
  install_sigbus_handler();
  return std::make_shared<MappedFileBacking>(std::move(*view), offset, length, allows_write(access),
                                             std::move(description));
}

MappedFileBacking::MappedFileBacking(std::shared_ptr<FileView> view, uint64_t offset, uint64_t length,
                                     bool writable, std::string description)
    : Backing(length, writable, std::move(description)),
      view_(std::move(view)),
      data_(view_->data() + offset),
      file_offset_(offset),
      pin_(PinnedPages::global().pin(PageLocation::file(view_->device(), view_->inode(), offset), length)) {}

std::optional<PageLocation> MappedFileBacking::do_location(uint64_t offset) const {
  return PageLocation::file(view_->device(), view_->inode(), file_offset_ + offset);
}

// A kernel copy into a page the client truncated away fails with EFAULT (the kernel
// fixes its own access up; no SIGBUS reaches the daemon).
std::span<std::byte> MappedFileBacking::do_mapped(uint64_t offset, size_t length) {
  if (broken()) return {};
  return {at(offset), length};
}

Error MappedFileBacking::dead() const {
  return fail(EFAULT,
              "{} faulted (SIGBUS: the client shrank the file or it could not supply a page); "
              "the mapping is dead",
              description());
}

// Every access below runs inside a SigbusGuard over the whole mapping and checks
// `broken_` afterwards: a SIGBUS during the access replaced the pages with zeros, so
// whatever was copied is meaningless and reported as nothing done.

Result<void> MappedFileBacking::do_read(uint64_t offset, std::span<std::byte> out,
                                        size_t& bytes_done) {
  if (broken()) return dead();
  {
    SigbusGuard guard(view_->data(), view_->size(), view_->broken());
    std::memcpy(out.data(), at(offset), out.size());
  }
  if (broken()) return dead();
  bytes_done = out.size();
  return success();
}

Result<void> MappedFileBacking::do_write(uint64_t offset, std::span<const std::byte> in,
                                         size_t& bytes_done) {
  if (broken()) return dead();
  {
    SigbusGuard guard(view_->data(), view_->size(), view_->broken());
    std::memcpy(at(offset), in.data(), in.size());
  }
  if (broken()) return dead();
  bytes_done = in.size();
  return success();
}

Result<uint64_t> MappedFileBacking::do_read64(uint64_t offset) {
  if (broken()) return dead();
  uint64_t value;
  {
    SigbusGuard guard(view_->data(), view_->size(), view_->broken());
    value =
        std::atomic_ref(*reinterpret_cast<uint64_t*>(at(offset))).load(std::memory_order_acquire);
  }
  if (broken()) return dead();
  return value;
}

Result<void> MappedFileBacking::do_write64(uint64_t offset, uint64_t value) {
  if (broken()) return dead();
  {
    SigbusGuard guard(view_->data(), view_->size(), view_->broken());
    std::atomic_ref(*reinterpret_cast<uint64_t*>(at(offset)))
        .store(value, std::memory_order_release);
  }
  if (broken()) return dead();
  return success();
}

Result<bool> MappedFileBacking::do_compare_exchange64(uint64_t offset, uint64_t& expected,
                                                      uint64_t desired) {
  if (broken()) return dead();
  bool exchanged;
  {
    SigbusGuard guard(view_->data(), view_->size(), view_->broken());
    exchanged = std::atomic_ref(*reinterpret_cast<uint64_t*>(at(offset)))
                    .compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
  }
  if (broken()) return dead();
  return exchanged;
}

}  // namespace ioasid
