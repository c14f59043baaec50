// SPDX-License-Identifier: MIT
// The daemon's one mapping of a client file, shared by every backing of that file
// (each MAP_FILE, each MAP_DMA of a shared file mapping): the daemon's memory maps
// grow with the files clients use, not with the number of their MAP calls.
//
// A view maps the file from offset 0 MAP_SHARED, sized to a power of two past what
// was asked (beyond the end of the file costs address space only), so a file mapped
// again further on gets a new view at most log2(size) times. Views are found by the
// file's identity (device, inode) and writability; a view lives while a backing uses
// it and keeps the file open through its mapping.
//
// On hugetlbfs a view never reaches past the end of the file: a writable mmap there
// grows the file to the mapping's end (the client would see its file grow), and the
// mapping is in whole huge pages (st_blksize).
#pragma once

#include "base/result.h"
#include "memory/mapping.h"

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>

namespace ioasid {

class FileView {
 public:
  // A view of the open regular file `fd` (attributes `status`) covering [0, end),
  // writable if `writable`. mmap's own errors (EACCES for a writable view of a file
  // not open O_RDWR, EPERM for a memfd sealed against writes) pass through.
  static Result<std::shared_ptr<FileView>> of(int fd, const struct statx& status, uint64_t end, bool writable);
  FileView(Mapping mapping, bool writable, dev_t device, uint64_t inode)
      : mapping_(std::move(mapping)), writable_(writable), device_(device), inode_(inode) {}
  std::byte* data() const { return mapping_.data(); }
  size_t size() const { return mapping_.size(); }
  bool writable() const { return writable_; }
  // The file's identity, as fstat gives it (PageLocation::file).
  dev_t device() const { return device_; }
  uint64_t inode() const { return inode_; }
  // Set once a SIGBUS hit the view (the client shrank the file): every backing of it
  // is dead, and no later MAP gets this view.
  std::atomic<bool>& broken() { return broken_; }

 private:
  Mapping mapping_;
  const bool writable_;
  const dev_t device_;
  const uint64_t inode_;
  std::atomic<bool> broken_{false};
};

}  // namespace ioasid
