#include "memory/mapped_file_backing.h"

#include "base/fail_nth.h"

#include "memory/physical_memory.h"
#include "memory/sigbus_guard.h"

#include <sys/stat.h>

#include <bit>
#include <cstring>

namespace ioasid {
namespace {

// The granule mmap insists on: a huge page on hugetlbfs (st_blksize), else a page.
uint64_t mapping_granule(const struct stat& status) {
  const auto block = static_cast<uint64_t>(status.st_blksize);
  if (block > kPageSize && std::has_single_bit(block) && block <= (1ull << 30)) return block;
  return kPageSize;
}

uint64_t align_down(uint64_t value, uint64_t alignment) { return value & ~(alignment - 1); }

}  // namespace

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
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    const int error = errno;
    return fail(error, "{}: fstat: {}", description, std::strerror(error));
  }
  if (!S_ISREG(status.st_mode))
    return fail(EINVAL, "{} is not a regular file (memfd, shm or hugetlbfs)", description);
  const auto file_size = static_cast<uint64_t>(status.st_size);
  if (offset + length > file_size)
    return fail(EINVAL, "{}: bytes [{:#x}, {:#x}) are beyond the end of the file ({:#x} bytes)",
                description, offset, offset + length, file_size);

  const uint64_t granule = mapping_granule(status);
  const uint64_t map_offset = align_down(offset, granule);
  const uint64_t map_end = align_down(offset + length + granule - 1, granule);
  auto mapping = Mapping::map_shared(fd, map_offset, map_end - map_offset, allows_write(access));
  if (!mapping) {
    Error error = std::move(mapping).error();
    error.why = fmt::format("{}: {}", description, error.why);
    return error;
  }
  install_sigbus_handler();
  return std::make_shared<MappedFileBacking>(std::move(*mapping), offset - map_offset, length,
                                             allows_write(access), std::move(description));
}

MappedFileBacking::MappedFileBacking(Mapping mapping, uint64_t start_in_mapping, uint64_t length,
                                     bool writable, std::string description)
    : Backing(length, writable, std::move(description)),
      mapping_(std::move(mapping)),
      data_(mapping_.data() + start_in_mapping) {}

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
    SigbusGuard guard(mapping_.data(), mapping_.size(), broken_);
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
    SigbusGuard guard(mapping_.data(), mapping_.size(), broken_);
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
    SigbusGuard guard(mapping_.data(), mapping_.size(), broken_);
    value =
        std::atomic_ref(*reinterpret_cast<uint64_t*>(at(offset))).load(std::memory_order_acquire);
  }
  if (broken()) return dead();
  return value;
}

Result<void> MappedFileBacking::do_write64(uint64_t offset, uint64_t value) {
  if (broken()) return dead();
  {
    SigbusGuard guard(mapping_.data(), mapping_.size(), broken_);
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
    SigbusGuard guard(mapping_.data(), mapping_.size(), broken_);
    exchanged = std::atomic_ref(*reinterpret_cast<uint64_t*>(at(offset)))
                    .compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
  }
  if (broken()) return dead();
  return exchanged;
}

}  // namespace ioasid
