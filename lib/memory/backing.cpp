// SPDX-License-Identifier: MIT
#include "memory/backing.h"

#include "memory/physical_memory.h"

namespace ioasid {

Result<void> Backing::check_range(uint64_t offset, size_t length, bool for_write) const {
  if (offset > size_ || length > size_ - offset)
    return fail(EFAULT, "bytes [{:#x}, +{:#x}) are outside the {:#x}-byte range of {}", offset,
                length, size_, description_);
  if (for_write && !writable_) return fail(EACCES, "{} is mapped read-only", description_);
  return success();
}

Result<void> Backing::check_word(uint64_t offset, bool for_write) const {
  if (offset % sizeof(uint64_t) != 0)
    return fail(EINVAL, "64-bit access at misaligned offset {:#x} of {}", offset, description_);
  return check_range(offset, sizeof(uint64_t), for_write);
}

Result<void> Backing::read(uint64_t offset, std::span<std::byte> out, size_t* bytes_done) {
  size_t done = 0;
  Result<void> result = check_range(offset, out.size(), false);
  if (result.ok() && !out.empty()) result = do_read(offset, out, done);
  if (result.ok()) done = out.size();
  if (bytes_done != nullptr) *bytes_done = done;
  return result;
}

std::span<std::byte> Backing::mapped(uint64_t offset, size_t length, bool for_write) {
  if (!check_range(offset, length, for_write)) return {};
  return do_mapped(offset, length);
}

Result<void> Backing::write(uint64_t offset, std::span<const std::byte> in, size_t* bytes_done) {
  size_t done = 0;
  Result<void> result = check_range(offset, in.size(), true);
  if (result.ok() && !in.empty()) result = do_write(offset, in, done);
  if (result.ok()) done = in.size();
  if (bytes_done != nullptr) *bytes_done = done;
  return result;
}

Result<uint64_t> Backing::read64(uint64_t offset) {
  IOASID_TRY(check_word(offset, false));
  return do_read64(offset);
}

Result<void> Backing::write64(uint64_t offset, uint64_t value) {
  IOASID_TRY(check_word(offset, true));
  return do_write64(offset, value);
}

Result<bool> Backing::compare_exchange64(uint64_t offset, uint64_t& expected, uint64_t desired) {
  IOASID_TRY(check_word(offset, true));
  return do_compare_exchange64(offset, expected, desired);
}

std::optional<PageLocation> Backing::location(uint64_t offset) const {
  if (offset >= size_) return std::nullopt;
  return do_location(offset & ~(kPageSize - 1));
}

}  // namespace ioasid
