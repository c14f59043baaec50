// SPDX-License-Identifier: MIT
#include "dev_iommu/pages.h"

#include "memory/backing_for_range.h"

#include <unistd.h>

namespace ioasid::dev_iommu {
namespace {

MapAccess access_for(bool writable) { return writable ? MapAccess::kReadWrite : MapAccess::kRead; }

}  // namespace

Result<std::shared_ptr<Pages>> Pages::record(pid_t pid, PinAccount account, uint64_t uptr, uint64_t length,
                                             bool writable) {
  if (length == 0 || length > ~0ull - kPageSize) return fail(EINVAL, "length {:#x} cannot be mapped", length);
  if (uptr + length < uptr) return fail(EOVERFLOW, "user_va {:#x} + length {:#x} wraps", uptr, length);
  if (page_ceil(uptr + length) < uptr + length)
    return fail(EOVERFLOW, "user_va {:#x} + length {:#x} ends in the last page", uptr, length);
  return std::shared_ptr<Pages>(new Pages(pid, account, uptr, length, writable));
}

Result<void> Pages::bind_address_space() {
  if (space_) return success();
  auto space = AddressSpace::of(pid_, access_for(writable_));
  if (!space) {
    if (space.code() == ESRCH) return fail(EFAULT, "the mapping process {} is gone", pid_);
    return std::move(space).error();
  }
  space_ = std::move(*space);
  return success();
}

Result<std::shared_ptr<PagesPin>> Pages::pin() {
  if (auto pinned = pinned_.lock()) return pinned;
  const uint64_t first = page_floor(uptr_);
  auto pinned = pin_pages(first, page_ceil(uptr_ + length_) - first);
  IOASID_TRY(pinned);
  pinned_ = *pinned;
  return pinned;
}

Result<std::shared_ptr<PagesPin>> Pages::pin_part(uint64_t va, uint64_t length) {
  if (auto pinned = pinned_.lock()) return pinned;
  const uint64_t first = page_floor(va);
  return pin_pages(first, page_ceil(va + length) - first);
}

Result<void> Pages::transfer(uint64_t va, std::span<std::byte> buffer, bool write) {
  if (va < uptr_ || va - uptr_ > length_ || buffer.size() > length_ - (va - uptr_))
    return fail(EFAULT, "[{:#x}, +{:#x}) is outside the mapped [{:#x}, +{:#x})", va, buffer.size(), uptr_, length_);
  if (write && !writable_) return fail(EPERM, "the pages were mapped read-only");
  IOASID_TRY(bind_address_space());
  const ssize_t done = write ? ::pwrite(space_->fd(), buffer.data(), buffer.size(), static_cast<off_t>(va))
                             : ::pread(space_->fd(), buffer.data(), buffer.size(), static_cast<off_t>(va));
  if (done != static_cast<ssize_t>(buffer.size()))
    return fail(EFAULT, "{} of [{:#x}, +{:#x}) in the recorded address space of pid {} failed", write ? "write" : "read",
                va, buffer.size(), pid_);
  return success();
}

Result<std::shared_ptr<PagesPin>> Pages::pin_pages(uint64_t first, uint64_t size) {
  if (!space_) {
    // Recorded by the MAP that pins now (an IOAS with a domain binds here, not before):
    // what the process runs in now is the mm MAP recorded, read once.
    IOASID_TRY(bind_address_space());
  } else {
    // iommufd pins from the mm MAP recorded: a process that exited or execed has none.
    auto now = AddressSpace::of(pid_, access_for(writable_));
    if (!now || *now != space_)
      return fail(EFAULT, "the address space that mapped [{:#x}, +{:#x}) is gone (pid {} exited or execed)", uptr_,
                  length_, pid_);
  }
  auto charge = account_.pins->charge(account_.key, size / kPageSize);
  IOASID_TRY(charge);
  auto backing = backing_for_range(space_, first, size, access_for(writable_));
  if (!backing) {
    if (backing.code() == ESRCH) return fail(EFAULT, "the mapping process {} is gone", pid_);
    return std::move(backing).error();
  }
  return std::make_shared<PagesPin>(PagesPin{std::move(*backing), first, std::move(*charge)});
}

}  // namespace ioasid::dev_iommu
