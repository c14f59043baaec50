// SPDX-License-Identifier: MIT
// A client's shared file (memfd, POSIX shm, hugetlbfs, a MAP_SHARED anonymous or
// SysV segment) mapped MAP_SHARED into the daemon: zero copy, coherent with the
// client both ways, and compare_exchange64 is a real atomic on the shared page, so
// A/D-bit updates race correctly with the client's own atomics.
//
// The file may shrink under the mapping or fail to supply a page; the access then
// fails with EFAULT (see sigbus_guard.h) and so does every later one: the backing is
// dead, the daemon is not.
#pragma once

#include "memory/backing.h"
#include "memory/file_view.h"
#include "memory/pinned_pages.h"

#include <atomic>
#include <memory>

namespace ioasid {

class MappedFileBacking final : public Backing {
 public:
  // Maps [offset, offset + length) of the open regular file `fd` through the file's
  // shared view (file_view.h), which keeps its own reference to the file, so the
  // caller may close `fd` afterwards. A file this daemon serves: EINVAL.
  // offset and length must be page aligned and length non-zero (EINVAL); a range
  // beyond the end of the file is EINVAL; a file that is not regular is EINVAL. On
  // hugetlbfs the mapping itself is widened to whole huge pages (st_blksize), so a
  // 4 KiB-aligned range inside a huge page works. MapAccess::kWrite maps it writable,
  // which mmap refuses (EACCES) when `fd` is not open O_RDWR, or EPERM for a memfd
  // sealed against writes.
  static Result<std::shared_ptr<MappedFileBacking>> create(int fd, uint64_t offset, uint64_t length,
                                                           MapAccess access,
                                                           std::string description);

  bool zero_copy() const override { return true; }
  // True once a SIGBUS killed the view (the client truncated its file).
  bool broken() const { return view_->broken().load(std::memory_order_relaxed); }
  std::unique_ptr<SigbusGuard> guard_cpu_access() override {
    return std::make_unique<SigbusGuard>(view_->data(), view_->size(), view_->broken());
  }
  bool failed() const override { return broken(); }
  // The daemon mapping this backing shares with every other backing of its file.
  const FileView& view() const { return *view_; }

  // Use create(); public for std::make_shared. Pins its pages of the file
  // (pinned_pages.h) for as long as it lives.
  MappedFileBacking(std::shared_ptr<FileView> view, uint64_t offset, uint64_t length, bool writable,
                    std::string description);

 private:
  Result<void> do_read(uint64_t offset, std::span<std::byte> out, size_t& bytes_done) override;
  Result<void> do_write(uint64_t offset, std::span<const std::byte> in,
                        size_t& bytes_done) override;
  std::span<std::byte> do_mapped(uint64_t offset, size_t length) override;
  std::optional<PageLocation> do_location(uint64_t offset) const override;
  Result<uint64_t> do_read64(uint64_t offset) override;
  Result<void> do_write64(uint64_t offset, uint64_t value) override;
  Result<bool> do_compare_exchange64(uint64_t offset, uint64_t& expected,
                                     uint64_t desired) override;

  std::byte* at(uint64_t offset) const { return data_ + offset; }
  Error dead() const;

  const std::shared_ptr<FileView> view_;
  std::byte* const data_;  // the first byte of the client's range inside the view
  const uint64_t file_offset_;  // of data_
  const PinnedPages::Pin pin_;
};

}  // namespace ioasid
