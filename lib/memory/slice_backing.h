// SPDX-License-Identifier: MIT
// A page-aligned part of another backing, as its own backing: iommufd maps parts of
// one pinned user range (an area split by an unmap) without pinning them again.
#pragma once

#include "memory/backing.h"

#include <memory>

namespace ioasid {

// The bytes [offset, offset + length) of `whole`, as a Backing of `length` bytes.
// - offset and length must be multiples of 4 KiB, length non-zero, and the range
//   inside whole->size() (EINVAL otherwise; a null `whole` is EINVAL too).
// - Every access, mapped(), guard_cpu_access(), failed() and location() is the
//   whole's at the shifted offset; zero_copy(), writable() and description() are the
//   whole's.
// - The slice keeps `whole` alive and registers no pins of its own: the whole's pins
//   already count its pages (pinned_pages.h).
// A slice of a slice is a slice of the first one's whole.
Result<std::shared_ptr<Backing>> slice_of(std::shared_ptr<Backing> whole, uint64_t offset, uint64_t length);

}  // namespace ioasid
