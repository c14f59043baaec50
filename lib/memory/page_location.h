// SPDX-License-Identifier: MIT
// Where a page of client memory lives, as far as the daemon can tell without the
// physical address: iommufd's mock driver checks that an IOVA maps the same physical
// page as a user address does now, and counts pins per physical page.
//
// A page of a MAP_SHARED mapping is a page of a file (memfd, tmpfs, hugetlbfs, the
// shmem file behind MAP_SHARED|MAP_ANONYMOUS or a SysV segment, a disk file): every
// mapping of it, in any process and in the daemon, reaches the same physical page,
// so the file's identity and the page's offset in it name it. Any other page is
// private to one address space (mm) and named by that mm and its virtual address.
//
// What this cannot see: a private page that the client replaced (munmap and mmap at
// the same address, or a copy on write after fork) keeps its name, and a private
// mapping of a file is private even before its first write.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace ioasid {

class AddressSpace;

struct PageLocation {
  enum class Kind : uint8_t { kFile, kPrivate };

  // A page of a file: its st_dev and st_ino (as fstat on an open file of it gives
  // them, and /proc/<pid>/maps shows them) and the page's byte offset in it.
  static PageLocation file(dev_t device, uint64_t inode, uint64_t offset);
  // A private page of the address space `space` at virtual address `va`.
  static PageLocation private_page(std::shared_ptr<const AddressSpace> space, uint64_t va);

  // The location `bytes` further on in the same file or address space.
  PageLocation plus(uint64_t bytes) const;
  // For logs and test failures: "file 0:1 ino 1234 +0x2000" or "mm 7 va 0x7f...".
  std::string name() const;

  // Same kind and the same page: files by (device, inode, offset); private pages by
  // address space (AddressSpace::mm_id, so a read-only and a read-write handle of one
  // mm agree) and va.
  bool operator==(const PageLocation& other) const;

  Kind kind = Kind::kFile;
  dev_t device = 0;    // kFile
  uint64_t inode = 0;  // kFile
  uint64_t offset = 0;  // kFile: byte offset of the page in the file
  // kPrivate: the handle AddressSpace::of() returned for the mm; holding it keeps
  // mm_id() meaning this mm for as long as the location is kept.
  std::shared_ptr<const AddressSpace> space;
  uint64_t va = 0;  // kPrivate: the page's virtual address
};

// A page of a client range and whether it is part of a hugetlbfs huge page (the
// kernel's pin-count check skips compound pages).
struct LocatedPage {
  PageLocation location;
  bool huge = false;
};

// Consecutive pages of a range whose locations follow one another: the page at
// `offset + n * 4 KiB` (n < length / 4 KiB) is at first.plus(n * 4 KiB). Offsets are
// relative to the start of the range.
struct LocatedRun {
  uint64_t offset = 0;
  uint64_t length = 0;
  PageLocation first;
  bool huge = false;
};

}  // namespace ioasid
