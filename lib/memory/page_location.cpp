// SPDX-License-Identifier: MIT
#include "memory/page_location.h"

#include "memory/address_space.h"
#include "memory/physical_memory.h"

#include <fmt/format.h>
#include <sys/sysmacros.h>

namespace ioasid {

PageLocation PageLocation::file(dev_t device, uint64_t inode, uint64_t offset) {
  PageLocation location;
  location.kind = Kind::kFile;
  location.device = device;
  location.inode = inode;
  location.offset = offset & ~(kPageSize - 1);
  return location;
}

PageLocation PageLocation::private_page(std::shared_ptr<const AddressSpace> space, uint64_t va) {
  PageLocation location;
  location.kind = Kind::kPrivate;
  location.space = std::move(space);
  location.va = va & ~(kPageSize - 1);
  return location;
}

PageLocation PageLocation::plus(uint64_t bytes) const {
  PageLocation moved = *this;
  if (kind == Kind::kFile)
    moved.offset = (offset + bytes) & ~(kPageSize - 1);
  else
    moved.va = (va + bytes) & ~(kPageSize - 1);
  return moved;
}

std::string PageLocation::name() const {
  if (kind == Kind::kFile)
    return fmt::format("file {:x}:{:x} ino {} +{:#x}", major(device), minor(device), inode, offset);
  return fmt::format("mm {} va {:#x}", space ? space->mm_id() : 0, va);
}

bool PageLocation::operator==(const PageLocation& other) const {
  if (kind != other.kind) return false;
  if (kind == Kind::kFile) return device == other.device && inode == other.inode && offset == other.offset;
  if (va != other.va) return false;
  if (space == other.space) return true;
  return space && other.space && space->mm_id() == other.space->mm_id();
}

}  // namespace ioasid
